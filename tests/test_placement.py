"""§3.2 placement: resolve_devices, one state_dict whatever the placement, equal outputs on one or
two devices, and activations that change device only at the four crossing points."""
import logging

import pytest
import torch

import paper_alexnet.model as model_module
from paper_alexnet import AlexNet
from paper_alexnet.config import ModelConfig
from paper_alexnet.model import build
from paper_alexnet.placement import PlacementError, resolve_devices

torch.set_num_threads(2)
CPU, CUDA0, CUDA1 = torch.device("cpu"), torch.device("cuda", 0), torch.device("cuda", 1)


def _fake_gpus(monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize("count, expected", [(0, (CPU, CPU)), (1, (CUDA0, CUDA0)),
                                             (2, (CUDA0, CUDA1)), (4, (CUDA0, CUDA1))])
def test_auto_uses_two_gpus_then_one_then_the_cpu(monkeypatch, caplog, count, expected):
    _fake_gpus(monkeypatch, count)
    with caplog.at_level(logging.INFO, logger="paper_alexnet.placement"):
        assert resolve_devices(("auto",)) == expected
        assert resolve_devices("auto") == expected
    assert (len(caplog.records) > 0) == (count < 2)      # every fallback is logged


def test_explicit_devices(monkeypatch):
    _fake_gpus(monkeypatch, 2)
    assert resolve_devices(("cuda:0", "cuda:1")) == (CUDA0, CUDA1)
    assert resolve_devices(("cuda:1",)) == (CUDA1, CUDA1)
    assert resolve_devices(("cuda",)) == (CUDA0, CUDA0)
    assert resolve_devices(("cuda:0", "cpu")) == (CUDA0, CPU)
    assert resolve_devices(("cpu",)) == (CPU, CPU)
    assert resolve_devices(["cpu", "cpu"]) == (CPU, CPU)


@pytest.mark.parametrize("spec, named", [(("cuda:1",), "'cuda:1'"), (("cuda:0", "cuda:3"), "'cuda:3'"),
                                         (("gpu0",), "'gpu0'"), (("cpu", "cpu", "cpu"), "one or two"),
                                         (("auto", "cpu"), "auto"), ((), "one or two")])
def test_devices_that_do_not_exist_are_named(monkeypatch, spec, named):
    _fake_gpus(monkeypatch, 1)
    with pytest.raises(PlacementError, match=named):
        resolve_devices(spec)


def test_a_missing_device_fails_at_construction_not_in_forward():
    missing = f"cuda:{torch.cuda.device_count() + 3}"
    with pytest.raises(PlacementError, match=missing):
        AlexNet(devices=(missing,))
    with pytest.raises(PlacementError, match=missing):
        build(ModelConfig(devices=("cpu", missing)))


@pytest.fixture(scope="module")
def pair():
    """The paper's net on ("cpu",) and a copy of its weights on ("cpu", "cpu"), in eval mode."""
    torch.manual_seed(0)
    one = AlexNet(devices=("cpu",)).eval()
    two = build(ModelConfig(devices=("cpu", "cpu"))).eval()
    two.load_state_dict(one.state_dict())
    return one, two


def test_two_placements_give_equal_outputs(pair):
    one, two = pair
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(one(x), two(x))
    assert one.input_device == one.output_device == CPU


def test_state_dict_round_trip_across_placements(pair, tmp_path):
    one, two = pair
    assert list(one.state_dict()) == list(two.state_dict())
    assert not any("cuda" in k or "module." in k for k in one.state_dict())
    torch.save(two.state_dict(), tmp_path / "model.pt")
    fresh = AlexNet(devices=("cpu",)).eval()
    fresh.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(fresh(x), one(x))


def test_place_moves_towers_and_returns_the_model(pair):
    one, _ = pair
    assert one.place(("cpu", "cpu")) is one
    assert one.tower_a.device == one.tower_b.device == CPU


def test_alexnet_is_built_on_the_cpu_and_build_follows_the_config(monkeypatch):
    _fake_gpus(monkeypatch, 0)          # "auto" on a machine without a GPU
    assert AlexNet(ModelConfig(layout="one_tower_half")).input_device == CPU
    assert build(ModelConfig(layout="one_tower_half")).input_device == CPU
    _fake_gpus(monkeypatch, 1)          # the config asks for a GPU: build honours it...
    with pytest.raises(PlacementError, match="cuda:3"):
        build(ModelConfig(layout="one_tower_half", devices=("cuda:3",)))
    # ...AlexNet() itself, like any module, is built on the CPU whatever the config says
    assert AlexNet(ModelConfig(layout="one_tower_half", devices=("cuda:3",))).input_device == CPU


# ------------------------------------------------------------------ on a GPU

def _count_moves(monkeypatch):
    moves = []
    real = model_module._move

    def counting(x, device):
        if x.device != device:
            moves.append((x.device.type, device.type, tuple(x.shape)))
        return real(x, device)
    monkeypatch.setattr(model_module, "_move", counting)
    return moves


@pytest.mark.gpu
def test_gpu_and_cpu_towers_equal_one_gpu(monkeypatch, tmp_path):
    torch.manual_seed(0)
    one = AlexNet(devices=("cuda:0",)).eval()
    mixed = AlexNet(devices=("cuda:0", "cpu")).eval()
    mixed.load_state_dict(one.state_dict())
    assert mixed.tower_a.device.type == "cuda" and mixed.tower_b.device == CPU
    assert mixed.output_device.type == "cuda"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    x = torch.randn(2, 3, 224, 224, device="cuda:0") * 50
    moves = _count_moves(monkeypatch)
    out_mixed = mixed(x)
    # image → tower B; conv3, fc6, fc7: one copy each way; fc8: tower B's fc7 → tower A.
    assert len(moves) == 1 + 2 + 2 + 2 + 1, moves
    with torch.no_grad():
        reference = one(x)
        _close(out_mixed.detach(), reference)
    out_mixed.sum().backward()                     # gradients flow back across the devices
    assert mixed.tower_b.conv1.weight.grad.abs().sum() > 0
    torch.save(mixed.state_dict(), tmp_path / "m.pt")
    cpu = AlexNet(devices=("cpu",)).eval()
    cpu.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    with torch.no_grad():
        _close(cpu(x.cpu()), reference.cpu())


def _close(a, b):
    """Equal up to the float32 differences between CPU and GPU kernels."""
    assert a.device == b.device and a.shape == b.shape
    assert (a - b).abs().max() <= 1e-3 * b.abs().max() + 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_equal_one_gpu():
    torch.manual_seed(0)
    one = AlexNet(devices=("cuda:0",)).eval()
    two = AlexNet(devices=("cuda:0", "cuda:1")).eval()
    two.load_state_dict(one.state_dict())
    x = torch.randn(4, 3, 224, 224, device="cuda:0") * 50
    with torch.no_grad():
        _close(two(x), one(x))
