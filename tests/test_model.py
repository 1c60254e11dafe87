"""§3 / Fig. 2: shapes, parameter counts, tower connectivity, a grouped-conv second formulation,
initialisation (§5), dropout (§4.2) and every ablation of docs/paper.md §8."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import course_notes_model
from paper_alexnet import AlexNet
from paper_alexnet.config import ConfigError, ModelConfig
from paper_alexnet.model import architecture, build

torch.set_num_threads(2)

# docs/paper.md §2: parameters per layer, both towers together.
PAPER_PARAMS = {"conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936,
                "conv5": 442_624, "fc6": 37_752_832, "fc7": 16_781_312, "fc8": 4_097_000}
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


@pytest.fixture(scope="module")
def paper():
    torch.manual_seed(0)
    return AlexNet().eval()


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_per_layer_is_the_papers(paper):
    for name in LAYERS:
        both = _count(getattr(paper.tower_a, name)) + _count(getattr(paper.tower_b, name))
        assert both == PAPER_PARAMS[name], name
    assert _count(paper.fc8) == PAPER_PARAMS["fc8"]
    assert _count(paper) == 60_965_224 == sum(PAPER_PARAMS.values())
    assert sum(layer.params * layer.towers for layer in architecture(ModelConfig())) == 60_965_224


def _record(model, names=LAYERS):
    """Outputs of each tower's conv/fc modules (before ReLU), keyed (tower, name)."""
    seen, handles = {}, []
    for tag, tower in (("a", model.tower_a), ("b", model.tower_b)):
        for name in names:
            hook = (lambda key: lambda m, i, o: seen.__setitem__(key, o))((tag, name))
            handles.append(getattr(tower, name).register_forward_hook(hook))
    return seen, handles


@pytest.mark.parametrize("size", [224, 227])
def test_shapes_per_layer(paper, size):
    seen, handles = _record(paper)
    with torch.no_grad():
        logits = paper(torch.randn(2, 3, size, size))
        pool5 = paper.conv_features(torch.randn(2, 3, size, size))
    for h in handles:
        h.remove()
    expect = {"conv1": (48, 55, 55), "conv2": (128, 27, 27), "conv3": (192, 13, 13),
              "conv4": (192, 13, 13), "conv5": (128, 13, 13), "fc6": (2048,), "fc7": (2048,)}
    for (tower, name), out in seen.items():
        assert tuple(out.shape) == (2,) + expect[name], (tower, name, size)
    assert [tuple(t.shape) for t in pool5] == [(2, 128, 6, 6)] * 2
    assert logits.shape == (2, 1000)
    assert paper.fc7_activations(torch.randn(2, 3, size, size)).shape == (2, 4096)


def test_alex_padding_is_three_zero_pixels_right_and_bottom(paper):
    """224 + Alex's padding == a 227 image whose extra 3 rows/columns (right, bottom) are zeros."""
    x = torch.randn(2, 3, 224, 224)
    caffe = AlexNet(ModelConfig(conv1_padding="none", input_size=227)).eval()
    caffe.load_state_dict(paper.state_dict())
    with torch.no_grad():
        assert torch.equal(paper(x), caffe(F.pad(x, (0, 3, 0, 3))))
        assert not torch.allclose(paper(x), caffe(F.pad(x, (3, 0, 3, 0))))


def test_conv1_padding_modes_give_the_documented_sizes():
    def side(padding, size):
        return architecture(ModelConfig(conv1_padding=padding, input_size=size))[0].size
    assert (side("alex", 224), side("alex", 227), side("none", 227), side("none", 224),
            side("1", 224), side("2", 224)) == (55, 55, 55, 54, 54, 55)


def test_towers_cross_only_at_conv3_fc6_fc7_fc8(paper):
    """Gradients: a layer of tower B depends on tower A's previous layer only where it crosses."""
    seen, handles = _record(paper)
    x = torch.randn(1, 3, 224, 224)
    logits = paper(x)
    for h in handles:
        h.remove()

    def depends(output, inputs):
        grad = torch.autograd.grad(output.sum(), inputs, retain_graph=True, allow_unused=True)[0]
        return grad is not None and grad.abs().sum().item() > 0

    previous = dict(zip(LAYERS[1:], LAYERS))
    for name in LAYERS[1:]:
        for me, other in (("a", "b"), ("b", "a")):
            out = seen[(me, name)]
            assert depends(out, seen[(me, previous[name])]), (me, name)
            crosses = name in ("conv3", "fc6", "fc7")
            assert depends(out, seen[(other, previous[name])]) == crosses, (me, name)
    assert depends(logits, seen[("a", "fc7")]) and depends(logits, seen[("b", "fc7")])


class GroupedAlexNet(nn.Module):
    """The same network written the Caffe way: one stream, groups=2 where the towers are apart."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, 4)
        self.conv2 = nn.Conv2d(96, 256, 5, 1, 2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, 1, 1)
        self.conv4 = nn.Conv2d(384, 384, 3, 1, 1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, 1, 1, groups=2)
        self.fc6, self.fc7 = nn.Linear(9216, 4096), nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, 1000)

    @staticmethod
    def lrn(x):   # §3.3 as the author's code reads it (alpha/n on the sum), within each half
        return torch.cat([F.local_response_norm(h, 5, alpha=1e-4, beta=0.75, k=2.0)
                          for h in x.chunk(2, dim=1)], dim=1)

    def forward(self, x):
        x = F.pad(x, (0, 3, 0, 3))
        x = F.max_pool2d(self.lrn(F.relu(self.conv1(x))), 3, 2)
        x = F.max_pool2d(self.lrn(F.relu(self.conv2(x))), 3, 2)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2).flatten(1)
        return self.fc8(F.relu(self.fc7(F.relu(self.fc6(x)))))


def test_two_towers_equal_the_grouped_convolution_formulation(paper):
    grouped = GroupedAlexNet().eval()
    with torch.no_grad():
        for name in LAYERS:
            a, b = getattr(paper.tower_a, name), getattr(paper.tower_b, name)
            getattr(grouped, name).weight.copy_(torch.cat([a.weight, b.weight]))
            getattr(grouped, name).bias.copy_(torch.cat([a.bias, b.bias]))
        grouped.fc8.load_state_dict(paper.fc8.state_dict())
        x = torch.randn(2, 3, 224, 224) * 50
        ours, theirs = paper(x), grouped(x)
    assert theirs.abs().max() > 1e-3           # a non-trivial output
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_paper_initialisation():
    torch.manual_seed(1)
    model = AlexNet()
    for name in LAYERS:
        for tower in model.towers:
            layer = getattr(tower, name)
            assert abs(layer.weight.std().item() - 0.01) < 0.0005, name
            assert abs(layer.weight.mean().item()) < 0.001, name
            expected = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
            assert torch.all(layer.bias == expected), name
    assert torch.all(model.fc8.bias == 0) and abs(model.fc8.weight.std().item() - 0.01) < 0.0005
    caffe = AlexNet(ModelConfig(init="caffe"))
    assert abs(caffe.tower_b.fc6.weight.std().item() - 0.005) < 0.0003
    assert abs(caffe.tower_b.conv2.weight.std().item() - 0.01) < 0.0005
    assert torch.all(caffe.tower_a.fc7.bias == 0.1) and torch.all(caffe.tower_a.conv3.bias == 0)


def _dropout_pass(model, x, training: bool, seed: int = 3):
    """One forward in the given mode: each tower's fc6 and fc7 outputs (before ReLU), each tower's
    fc7 input and fc8's input."""
    seen, hooks = {}, []
    for tag, tower in (("a", model.tower_a), ("b", model.tower_b)):
        hooks.append(tower.fc6.register_forward_hook(
            lambda m, i, o, tag=tag: seen.__setitem__("fc6_" + tag, o)))
        hooks.append(tower.fc7.register_forward_hook(
            lambda m, i, o, tag=tag: seen.update({"fc7_in_" + tag: i[0], "fc7_" + tag: o})))
    hooks.append(model.fc8.register_forward_hook(lambda m, i, o: seen.__setitem__("fc8_in", i[0])))
    was_training = model.training
    try:
        model.train(training)
        torch.manual_seed(seed)
        with torch.no_grad():
            seen["logits"] = model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return seen


def _assert_inverted_dropout(dropped, undropped):
    """Each of the 4096 inputs (tower A's 2048 units, then tower B's) is 0 or exactly 2x its value
    with dropout off, and about half of each tower's units are kept (§4.2, p = 0.5)."""
    kept = dropped != 0
    assert torch.equal(dropped[kept], 2 * undropped[kept])
    for half in (slice(0, 2048), slice(2048, 4096)):               # tower A's units, tower B's
        alive = undropped[:, half] != 0
        assert alive.float().mean() > 0.5          # most ReLU outputs are not 0 (bias 1, §5)
        assert 0.45 < kept[:, half][alive].float().mean() < 0.55


def test_dropout_halves_the_inputs_of_fc7_and_fc8_in_both_towers(paper):
    """§4.2, inverted: in training mode every input of fc7 and of fc8 is 0 or exactly twice its
    value with dropout off, about half kept, in both towers; in eval mode the inputs are the ReLU
    outputs as they are, and two passes are identical."""
    x = torch.randn(2, 3, 224, 224) * 50
    test, again = _dropout_pass(paper, x, training=False), _dropout_pass(paper, x, False, seed=4)
    assert all(torch.equal(test[k], again[k]) for k in test)              # eval: deterministic
    fc6 = torch.cat([test["fc6_a"], test["fc6_b"]], dim=1).relu()       # (2, 4096) both towers
    assert torch.equal(test["fc7_in_a"], fc6) and torch.equal(test["fc7_in_b"], fc6)
    assert torch.equal(test["fc8_in"], torch.cat([test["fc7_a"], test["fc7_b"]], dim=1).relu())

    train = _dropout_pass(paper, x, training=True)
    assert torch.equal(train["fc6_a"], test["fc6_a"]) and torch.equal(train["fc6_b"], test["fc6_b"])
    # both towers' fc7 see the same dropped fc6 units (one mask per unit, §4.2)
    assert torch.equal(train["fc7_in_a"], train["fc7_in_b"])
    _assert_inverted_dropout(train["fc7_in_a"], fc6)
    # fc8's input against fc7's ReLU output of the same training pass (fc7 saw dropped inputs)
    _assert_inverted_dropout(train["fc8_in"],
                             torch.cat([train["fc7_a"], train["fc7_b"]], dim=1).relu())
    assert not torch.equal(train["logits"], test["logits"])


ABLATIONS = {
    "conv1": ModelConfig(removed_layer="conv1"), "conv2": ModelConfig(removed_layer="conv2"),
    "conv3": ModelConfig(removed_layer="conv3"), "conv4": ModelConfig(removed_layer="conv4"),
    "conv5": ModelConfig(removed_layer="conv5"), "lrn_off": ModelConfig(lrn="off"),
    "pool_2_2": ModelConfig(pooling="non_overlapping"),
    "one_tower_half": ModelConfig(layout="one_tower_half"),
    "tanh": ModelConfig(activation="tanh"), "no_dropout": ModelConfig(dropout=0.0),
    "gray_10": ModelConfig(in_channels=1, num_classes=10), "course_notes": course_notes_model(),
    "caffe_227": ModelConfig(input_size=227, conv1_padding="none", lrn="caffe", init="caffe"),
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_every_ablation_builds_and_trains_one_step(name):
    cfg = ABLATIONS[name]
    torch.manual_seed(0)
    model = build(cfg, ("cpu",)).train()
    assert _count(model) == sum(layer.params * layer.towers for layer in architecture(cfg))
    pool5 = architecture(cfg)[4].pooled
    assert pool5 == (5 if name == "course_notes" else 6)
    x = torch.randn(1, cfg.in_channels, cfg.input_size, cfg.input_size) * 50
    y = torch.tensor([1])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = model.fc8.weight.detach().clone()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    assert not torch.equal(before, model.fc8.weight)
    assert model.fc8.out_features == cfg.num_classes


def test_conv3_removed_rewires_conv4_to_both_towers():
    model = AlexNet(ModelConfig(removed_layer="conv3"))
    assert not hasattr(model.tower_a.conv3, "weight")
    assert model.tower_a.conv4.in_channels == 256 and model.tower_b.conv4.in_channels == 256
    model2 = AlexNet(ModelConfig(removed_layer="conv1"))
    assert model2.tower_a.conv2.in_channels == 3
    assert model2.tower_a.fc6.in_features == 9216


def test_removing_conv5_enlarges_fc6_by_half():
    """docs/model.md and the remove_conv5 recipe: fc6 sees 2 × 192×6×6 = 13,824 inputs, not 9,216,
    so it gains 4,608 × 2,048 = 9,437,184 parameters per tower (+50%); the net has 79,396,968.
    (The built net has architecture()'s count: test_every_ablation_builds_and_trains_one_step.)"""
    paper, cut = (dict((layer.name, layer) for layer in architecture(cfg))
                  for cfg in (ModelConfig(), ModelConfig(removed_layer="conv5")))
    assert (paper["fc6"].in_features, cut["fc6"].in_features) == (9216, 13824)
    assert cut["fc6"].params - paper["fc6"].params == 9_437_184
    assert (PAPER_PARAMS["fc6"], 2 * cut["fc6"].params) == (37_752_832, 56_627_200)   # +50.0%
    assert sum(layer.params * layer.towers for layer in cut.values()) == 79_396_968


def test_one_tower_half_is_the_papers_one_gpu_control():
    model = AlexNet(ModelConfig(layout="one_tower_half"))
    assert model.tower_b is None
    widths = [getattr(model.tower_a, n).weight.shape[0] for n in LAYERS]
    assert widths == [48, 128, 192, 192, 256, 4096, 4096]


def test_bad_model_values_are_rejected_by_name():
    with pytest.raises(ConfigError, match="model.layout"):
        AlexNet(ModelConfig(layout="three_towers"))
    with pytest.raises(ConfigError, match="model.arch"):
        AlexNet(ModelConfig(arch="cifar10_4layer"))
    with pytest.raises(ConfigError, match="model.input_size"):
        AlexNet(ModelConfig(input_size=32))


def test_build_gives_the_figure1_net_for_cifar10_4layer():
    from paper_alexnet.cifar_net import Figure1Net
    net = build(ModelConfig(arch="cifar10_4layer", input_size=32, num_classes=10), ("cpu",))
    assert isinstance(net, Figure1Net)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
