"""§5 update rule and schedule, pinned against the equation written out by hand."""
import copy
import math

import pytest
import torch

from paper_alexnet.config import OptimConfig, ScheduleConfig
from paper_alexnet.optim import PaperSGD, make_optimizer, make_schedule, param_groups

torch.set_num_threads(1)


class Tiny(torch.nn.Module):
    """A conv (4-d weight), a linear (2-d) and their biases (1-d)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, 3, 3)
        self.fc6 = torch.nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        return self.fc6(torch.relu(self.conv1(x)).flatten(1))


def batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 2, 6, 6, generator=g), torch.randint(0, 5, (4,), generator=g))
            for _ in range(n)]


def grads_of(model, x, y):
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()   # batch MEAN (§5)
    return [p.grad.clone() for p in model.parameters()]


def hand_rule(model, data, lrs, m, wd, decay_biases, bias_scale=1.0):
    """The §5 equation, one tensor at a time, in float64 on a copy of the model; biases at
    bias_scale times the rate (the author's epsB = 2 epsW)."""
    model = copy.deepcopy(model).double()
    vs = [torch.zeros_like(p) for p in model.parameters()]
    for (x, y), lr in zip(data, lrs):
        gs = grads_of(model, x.double(), y)
        with torch.no_grad():
            for p, g, v in zip(model.parameters(), gs, vs):
                d = wd if (p.ndim >= 2 or decay_biases) else 0.0
                eps = lr if p.ndim >= 2 else lr * bias_scale
                v.copy_(m * v - d * eps * p - eps * g)   # v <- m v - wd eps w - eps grad
                p.copy_(p + v)                         # w <- w + v
    return [p.detach() for p in model.parameters()], vs


def run_optimizer(model, data, lrs, cfg):
    model = copy.deepcopy(model).double()
    opt = make_optimizer(model, cfg)
    for (x, y), lr in zip(data, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        grads_of(model, x.double(), y)
        opt.step()
    return model, opt


# Large rate and decay so that decay and momentum terms are far above rounding.
CFG = OptimConfig(lr=0.1, momentum=0.9, weight_decay=0.01)
LR_DROP = [0.1] * 6 + [0.01] * 6


@pytest.mark.parametrize("decay_biases", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_paper_rule_matches_hand_equation_across_lr_drop(decay_biases, fused):
    torch.manual_seed(0)
    model, data = Tiny(), batches(len(LR_DROP))
    cfg = OptimConfig(lr=0.1, momentum=0.9, weight_decay=0.01, decay_biases=decay_biases)
    ref_w, ref_v = hand_rule(model, data, LR_DROP, 0.9, 0.01, decay_biases)
    trained = copy.deepcopy(model).double()
    opt = PaperSGD(param_groups(trained, cfg), lr=0.1, momentum=0.9, weight_decay=0.01,
                   fused=fused)
    for (x, y), lr in zip(data, LR_DROP):
        for group in opt.param_groups:
            group["lr"] = lr
        grads_of(trained, x.double(), y)
        opt.step()
    for p, w, v in zip(trained.parameters(), ref_w, ref_v):
        torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(opt.velocity(p), v, rtol=1e-10, atol=1e-14)


def test_bias_lr_scale_hand_rule_across_a_drop():
    """optim.bias_lr_scale=2 (the author's epsB = 2 epsW): the paper rule with biases at twice the
    weights' rate, through a drop made by the schedule (both rates divided by 10, factor kept)."""
    torch.manual_seed(0)
    model, data = Tiny(), batches(8)
    cfg = OptimConfig(lr=0.1, momentum=0.9, weight_decay=0.01, bias_lr_scale=2.0)
    trained = copy.deepcopy(model).double()
    opt = make_optimizer(trained, cfg)
    schedule = make_schedule(ScheduleConfig(kind="milestones", milestones=(2,)), opt)
    lrs = []
    for step, (x, y) in enumerate(data, 1):
        lrs.append(schedule.lr)
        grads_of(trained, x.double(), y)
        opt.step()
        if step % 2 == 0:
            schedule.observe(step // 2, None)
    assert lrs == pytest.approx([0.1] * 4 + [0.01] * 4)
    assert {g["group"]: g["lr"] for g in opt.param_groups} == pytest.approx(
        {"weights": 0.01, "biases": 0.02})
    ref_w, ref_v = hand_rule(model, data, lrs, 0.9, 0.01, False, bias_scale=2.0)
    for p, w, v in zip(trained.parameters(), ref_w, ref_v):
        torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(opt.velocity(p), v, rtol=1e-10, atol=1e-14)
    single, _ = hand_rule(model, data, lrs, 0.9, 0.01, False, bias_scale=1.0)
    for p, w in zip(trained.parameters(), single):   # the scale is not a no-op on biases
        if p.ndim == 1:
            assert not torch.allclose(p.detach(), w, rtol=0, atol=1e-6)


def test_bias_decay_switch_changes_only_biases():
    torch.manual_seed(0)
    model, data = Tiny(), batches(4)
    off, _ = run_optimizer(model, data, [0.1] * 4, CFG)
    on, _ = run_optimizer(model, data, [0.1] * 4, OptimConfig(lr=0.1, momentum=0.9,
                                                               weight_decay=0.01,
                                                               decay_biases=True))
    # Biases move differently once their decay is on.
    for (name, a), b in zip(off.named_parameters(), on.parameters()):
        if a.ndim == 1:
            assert not torch.allclose(a, b, rtol=0, atol=1e-9), name
    groups = {g["group"]: g for g in make_optimizer(model, CFG).param_groups}
    assert groups["biases"]["weight_decay"] == 0.0 and groups["weights"]["weight_decay"] == 0.01
    assert {p.ndim for p in groups["weights"]["params"]} == {2, 4}
    assert {p.ndim for p in groups["biases"]["params"]} == {1}


def test_groups_by_rank_not_name():
    class Odd(torch.nn.Module):   # names that would fool a substring rule
        def __init__(self):
            super().__init__()
            self.bias_matrix = torch.nn.Parameter(torch.ones(3, 3))
            self.weight_vector = torch.nn.Parameter(torch.ones(3))
            self.frozen = torch.nn.Parameter(torch.ones(3, 3), requires_grad=False)
    odd = Odd()
    groups = {g["group"]: g["params"] for g in param_groups(odd, OptimConfig())}
    assert groups["weights"] == [odd.bias_matrix] and groups["biases"] == [odd.weight_vector]


def test_equals_torch_sgd_at_constant_lr_with_v_paper_equal_minus_eps_v_torch():
    torch.manual_seed(0)
    model, data = Tiny(), batches(10)
    paper, paper_opt = run_optimizer(model, data, [0.1] * 10, CFG)
    ours_torch, torch_opt = run_optimizer(model, data, [0.1] * 10,
                                          OptimConfig(rule="torch_sgd", lr=0.1, momentum=0.9,
                                                      weight_decay=0.01))
    assert isinstance(torch_opt, torch.optim.SGD)
    for p, q in zip(paper.parameters(), ours_torch.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
        v_paper = paper_opt.velocity(p)
        b_torch = torch_opt.state[q]["momentum_buffer"]
        torch.testing.assert_close(v_paper, -0.1 * b_torch, rtol=1e-10, atol=1e-14)


def test_differs_from_torch_sgd_after_lr_drop():
    torch.manual_seed(0)
    model, data = Tiny(), batches(len(LR_DROP))
    paper, _ = run_optimizer(model, data, LR_DROP, CFG)
    other, _ = run_optimizer(model, data, LR_DROP, OptimConfig(rule="torch_sgd", lr=0.1,
                                                               momentum=0.9, weight_decay=0.01,
                                                               decay_biases=False))
    gap = max((p - q).abs().max().item() for p, q in zip(paper.parameters(), other.parameters()))
    assert gap > 1e-4   # the paper's v still carries the steps taken at eps=0.1


def test_none_grads_are_skipped():
    a, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    opt = PaperSGD([a, b], lr=0.1, momentum=0.9, weight_decay=0.0)
    a.grad = torch.ones(2, 2)
    opt.step()
    torch.testing.assert_close(a.detach(), torch.full((2, 2), 0.9))
    torch.testing.assert_close(b.detach(), torch.ones(2))
    assert b not in opt.state and opt.velocity(b) is None


def test_zero_learning_rate_is_refused():
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="lr=0"):
        PaperSGD([p], lr=0.0)
    opt = PaperSGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = 0.0
    p.grad = torch.ones(2)
    with pytest.raises(ValueError, match="learning rate 0.0"):
        opt.step()


def test_state_dict_round_trip_continues_identically_across_a_drop():
    torch.manual_seed(0)
    model, data = Tiny(), batches(8)
    straight, _ = run_optimizer(model, data, [0.1] * 4 + [0.01] * 4, CFG)
    half, opt = run_optimizer(model, data[:4], [0.1] * 4, CFG)
    saved_model, saved_opt = copy.deepcopy(half.state_dict()), copy.deepcopy(opt.state_dict())
    resumed = copy.deepcopy(model).double()
    resumed.load_state_dict(saved_model)
    opt2 = make_optimizer(resumed, CFG)
    opt2.load_state_dict(saved_opt)
    for group in opt2.param_groups:
        group["lr"] = 0.01   # the drop happens after the resume: needs the saved buffer_lr
    for x, y in data[4:]:
        grads_of(resumed, x.double(), y)
        opt2.step()
    for p, q in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.gpu
def test_params_on_two_devices():
    devices = ["cuda:0", f"cuda:{min(1, torch.cuda.device_count() - 1)}", "cpu"]
    params = [torch.nn.Parameter(torch.ones(3, 3, device=d)) for d in devices]
    opt = PaperSGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(2):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    # by hand: v1 = -0.001 - 0.1 = -0.101, w1 = 0.899; v2 = 0.9 v1 - 0.001*0.899 - 0.1
    v2 = 0.9 * -0.101 - 0.001 * 0.899 - 0.1
    for p in params:
        torch.testing.assert_close(p.detach().cpu(), torch.full((3, 3), 0.899 + v2))


# --------------------------------------------------------------------------- schedule

def schedule(**kw):
    p = torch.nn.Parameter(torch.ones(1))
    opt = PaperSGD([p], lr=0.01)
    return make_schedule(ScheduleConfig(**kw), opt, base_lr=0.01), opt


def test_plateau_drops_at_the_right_epochs_at_most_three_times():
    sched, opt = schedule(patience=2, threshold=0.001)
    errors = [0.9, 0.8, 0.7, 0.7, 0.7005,   # epochs 4, 5 do not improve -> drop at 5
              0.6, 0.5995, 0.61,            # 7: gain 0.0005 < threshold; 8: worse -> drop at 8
              0.5, 0.5, 0.5,                # 10, 11 -> drop at 11 (third)
              0.5, 0.5, 0.5, 0.5, 0.5, 0.5]  # never again
    dropped = [e for e, err in enumerate(errors, start=1) if sched.observe(e, err)]
    assert dropped == [5, 8, 11]
    assert sched.drops == 3 and sched.lr == pytest.approx(1e-5, rel=1e-12)
    assert opt.param_groups[0]["lr"] == sched.lr
    assert [e for e, _ in sched.history] == [5, 8, 11]


def test_plateau_nan_is_not_an_improvement():
    sched, _ = schedule(patience=1)
    assert not sched.observe(1, 0.5)
    assert sched.observe(2, math.nan)


def test_milestones():
    sched, opt = schedule(kind="milestones", milestones=(3, 5))
    dropped = [e for e in range(1, 9) if sched.observe(e, None)]
    assert dropped == [3, 5] and sched.lr == pytest.approx(1e-4)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_observe_twice_is_an_error():
    sched, _ = schedule()
    sched.observe(1, 0.5)
    with pytest.raises(ValueError, match="epoch 1"):
        sched.observe(1, 0.5)


def test_schedule_state_round_trip_mid_sequence():
    errors = [0.9, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    straight, _ = schedule(patience=2)
    expected = [straight.observe(e, err) for e, err in enumerate(errors, start=1)]
    first, _ = schedule(patience=2)
    got = [first.observe(e, err) for e, err in enumerate(errors[:3], start=1)]
    state = copy.deepcopy(first.state_dict())
    resumed, opt = schedule(patience=2)
    resumed.load_state_dict(state)
    got += [resumed.observe(e, err) for e, err in enumerate(errors[3:], start=4)]
    assert got == expected and resumed.lr == straight.lr == opt.param_groups[0]["lr"]
    assert resumed.state_dict() == straight.state_dict()
