"""Checkpoints: atomic writes, pruning, corruption detection, safe loading, RNG round trips."""
import os
import pickle
import random
import re
import subprocess

import numpy as np
import pytest
import torch

from paper_alexnet.run import checkpoint
from paper_alexnet.run.checkpoint import CheckpointError

torch.set_num_threads(1)


def state(step):
    return {"step": step, "model": {"fc6.weight": torch.full((4, 4), float(step))},
            "schedule": {"best": float("inf"), "history": [[1, 0.001]]}, "note": "x"}


def steps_on_disk(run):
    return [s for s, _ in checkpoint.list_checkpoints(run)]


def test_save_load_round_trip_and_names(tmp_path):
    path = checkpoint.save(tmp_path, state(7), step=7, keep_last=3)
    assert path == tmp_path / "checkpoints" / "ckpt-000000007.pt"
    sidecar = (tmp_path / "checkpoints" / "ckpt-000000007.pt.sha256").read_text().split()
    assert sidecar[1] == "ckpt-000000007.pt" and len(sidecar[0]) == 64
    got_path, got = checkpoint.load_latest(tmp_path)
    assert got_path == path and got["step"] == 7 and got["schedule"]["best"] == float("inf")
    torch.testing.assert_close(got["model"]["fc6.weight"], torch.full((4, 4), 7.0))
    assert checkpoint.load_latest(tmp_path / "empty_run") is None


def test_exception_mid_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, state(1), step=1, keep_last=3)
    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        buf = __import__("io").BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="simulated"):
        checkpoint.save(tmp_path, state(2), step=2, keep_last=3)
    monkeypatch.undo()
    assert steps_on_disk(tmp_path) == [1]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["ckpt-000000001.pt",
                                                            "ckpt-000000001.pt.sha256"]
    path, got = checkpoint.load_latest(tmp_path)
    assert got["step"] == 1


def test_state_that_would_not_load_is_refused_at_save_time(tmp_path):
    with pytest.raises(TypeError, match=r"state\['rng'\]\['numpy'\] is a numpy.ndarray"):
        checkpoint.save(tmp_path, {"step": 1, "rng": {"numpy": np.zeros(3)}}, step=1, keep_last=1)
    assert checkpoint.list_checkpoints(tmp_path) == []


def test_leftover_temporary_file_is_never_picked_up(tmp_path):
    checkpoint.save(tmp_path, state(1), step=1, keep_last=3)
    # what a process killed mid-write leaves behind
    (tmp_path / "checkpoints" / ".ckpt-000000002.pt.4242.tmp").write_bytes(b"PK\x03\x04garbage")
    assert checkpoint.load_latest(tmp_path)[1]["step"] == 1


def test_keep_last_with_milestones(tmp_path):
    for step in range(1, 11):
        checkpoint.save(tmp_path, state(step), step=step, keep_last=2, milestone=step in (3, 6))
    assert steps_on_disk(tmp_path) == [3, 6, 9, 10]
    names = set(os.listdir(tmp_path / "checkpoints"))
    assert "ckpt-000000001.pt.sha256" not in names   # sidecars go with their checkpoint
    assert {"ckpt-000000003.pt.milestone", "ckpt-000000006.pt.milestone"} < names
    for step in (3, 6):
        assert checkpoint.load(checkpoint.checkpoint_path(tmp_path, step))["step"] == step


def test_newer_checkpoints_from_an_abandoned_future_are_set_aside(tmp_path):
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, state(step), step=step, keep_last=5)
    with pytest.warns(UserWarning, match="ckpt-000000003.pt.stale"):
        checkpoint.save(tmp_path, state(2), step=2, keep_last=5)
    assert steps_on_disk(tmp_path) == [1, 2]
    assert (tmp_path / "checkpoints" / "ckpt-000000003.pt.stale").exists()


@pytest.mark.parametrize("with_digest", [True, False])
def test_truncated_newest_falls_back_with_warning(tmp_path, with_digest):
    checkpoint.save(tmp_path, state(1), step=1, keep_last=3)
    newest = checkpoint.save(tmp_path, state(2), step=2, keep_last=3)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 3])
    if not with_digest:   # then it is torch.load that refuses the file
        os.remove(f"{newest}.sha256")
    with pytest.warns(UserWarning) as caught:
        path, got = checkpoint.load_latest(tmp_path)
    assert got["step"] == 1 and path.name == "ckpt-000000001.pt"
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"ckpt-000000002\.pt.*using .*ckpt-000000001\.pt", m) for m in messages)
    assert any("integrity is not checked" in m for m in messages) == (not with_digest)


def test_flipped_byte_that_still_unpickles_is_detected(tmp_path):
    checkpoint.save(tmp_path, state(1), step=1, keep_last=3)
    payload = torch.arange(1000, dtype=torch.float32)
    newest = checkpoint.save(tmp_path, {"w": payload}, step=2, keep_last=3)
    data = bytearray(newest.read_bytes())
    at = bytes(data).find(payload.numpy().tobytes()[400:432])
    assert at > 0
    data[at + 1] ^= 0xFF
    newest.write_bytes(bytes(data))
    # torch.load alone accepts the damaged file (the tensor bytes are not checked) ...
    damaged = torch.load(newest, weights_only=True)["w"]
    assert not torch.equal(damaged, payload)
    # ... the digest does not.
    with pytest.raises(CheckpointError, match=r"ckpt-000000002\.pt is corrupt"):
        checkpoint.load(newest)
    with pytest.warns(UserWarning, match="ckpt-000000002"):
        assert checkpoint.load_latest(tmp_path)[1]["step"] == 1


def test_all_unreadable_is_an_error_naming_the_folder(tmp_path):
    path = checkpoint.save(tmp_path, state(1), step=1, keep_last=3)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="none of the 1 checkpoints"):
        checkpoint.load_latest(tmp_path)


class Payload:
    """Runs a shell command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("fmt", ["pickle", "torch_zip"])
def test_malicious_pickle_is_refused_without_running_code(tmp_path, fmt):
    marker = tmp_path / "pwned"
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    bad = folder / "ckpt-000000005.pt"
    with open(bad, "wb") as f:
        if fmt == "pickle":
            pickle.dump({"model": Payload(marker)}, f)
        else:
            torch.save({"model": Payload(marker)}, f)
    # An attacker who can write the file can write its digest too: the digest matches.
    digest = checkpoint.sha256_file(bad)
    (folder / "ckpt-000000005.pt.sha256").write_text(f"{digest}  {bad.name}\n")
    with pytest.raises(CheckpointError, match=r"ckpt-000000005\.pt was refused"):
        checkpoint.load(bad)
    assert not marker.exists()
    # Positive control: the payload does run when unpickled unsafely.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control)))
    assert control.exists()


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(CheckpointError, match="ckpt-000000009.pt does not exist"):
        checkpoint.load(tmp_path / "ckpt-000000009.pt")


def test_rng_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()   # leaves a cached gaussian in numpy's state
    checkpoint.save(tmp_path, {"rng": checkpoint.rng_state()}, step=1, keep_last=1)

    def draws():
        return (random.random(), np.random.standard_normal(3).tolist(),
                np.random.randint(0, 1 << 30), torch.rand(3).tolist())

    first = draws()
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    assert draws() != first
    checkpoint.set_rng_state(checkpoint.load_latest(tmp_path)[1]["rng"])
    assert draws() == first


def test_code_version(monkeypatch):
    assert checkpoint.code_version()

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")
    monkeypatch.setattr(subprocess, "run", no_git)
    assert not checkpoint.code_version().startswith("git:")


@pytest.mark.gpu
def test_cuda_rng_round_trip(tmp_path):
    torch.cuda.manual_seed_all(5)
    checkpoint.save(tmp_path, {"rng": checkpoint.rng_state()}, step=1, keep_last=1)
    first = torch.rand(4, device="cuda").tolist()
    torch.cuda.manual_seed_all(6)
    checkpoint.set_rng_state(checkpoint.load_latest(tmp_path)[1]["rng"])
    assert torch.rand(4, device="cuda").tolist() == first


def test_load_model_builds_the_checkpoints_own_network_with_its_weights(tmp_path):
    from paper_alexnet import config, model as model_lib
    cfg = config.load(None, ["model.arch=cifar10_4layer", "model.input_size=32",
                             "model.num_classes=3", "model.devices=[cpu]"])
    torch.manual_seed(0)
    net = model_lib.build(cfg.model)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)                  # weights no fresh build of this config has
    path = checkpoint.save(tmp_path, {"config": config.to_dict(cfg), "model": net.state_dict()},
                           step=1, keep_last=1)
    got_cfg, got, state = checkpoint.load_model(path)
    assert got_cfg == cfg and not got.training and state["config"] == config.to_dict(cfg)
    assert got.state_dict().keys() == net.state_dict().keys()
    for name, value in net.state_dict().items():
        torch.testing.assert_close(got.state_dict()[name], value)
    assert {p.device.type for p in got.parameters()} == {"cpu"}
