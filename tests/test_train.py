"""train.py: kill-and-resume is bit-identical on the CPU, corrupt checkpoints fall back, a NaN loss
stops the run before anything bad is saved, a resumed run keeps its own config, unsafe pickles are
refused. Small networks on a tiny prepared dataset (the behaviour does not depend on size)."""
import dataclasses
import math
import os
import pickle
import re

import pytest
import torch

from faults import AtStep
from paper_alexnet import config
from paper_alexnet.run import checkpoint, metrics
from paper_alexnet.resume import resolve_run_config
from paper_alexnet.train import NonFiniteLoss, main, train

# AlexNet itself (two towers, LRN, dropout) at the smallest input size, 4 classes.
ALEXNET_64 = ["model.input_size=64", "model.num_classes=4", "optim.batch_size=8",
              "data.workers=0", "eval.batch_size=16", "eval.ten_crop=false"]
# The Figure-1 net: a few thousand parameters, for the tests about files rather than numbers.
SMALL_NET = ["model.arch=cifar10_4layer", "model.input_size=64", "model.num_classes=4",
             "optim.lr=1e-4", "optim.batch_size=8", "data.workers=0", "eval.batch_size=16"]


def final_model(run_dir):
    _, state = checkpoint.load_latest(run_dir)
    return state["model"]


class Kill(Exception):
    pass


def test_kill_and_resume_is_bit_identical(data_root, tmp_path):
    """Two epochs of 3 steps; the second run is killed at step 5 (its newest checkpoint is the one
    of step 4, mid-epoch 2), then resumed: its losses and final weights equal the uninterrupted
    run's."""
    cfg = config.load(None, ALEXNET_64 + ["train.steps_per_epoch=3", "train.epochs=2",
                                          "train.log_every=1", "train.checkpoint_every=4"])
    whole = train(cfg, data_root, tmp_path / "whole", quiet=True)

    def kill_at_5(step):
        if step == 5:
            raise Kill

    with pytest.raises(Kill):
        train(cfg, data_root, tmp_path / "killed", callbacks=[AtStep(kill_at_5)], quiet=True)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path / "killed")] == [3, 4]
    resumed = train(cfg, data_root, tmp_path / "killed", quiet=True)
    assert resumed["resumed_from"].endswith("ckpt-000000004.pt")
    assert whole["global_step"] == resumed["global_step"] == 6

    a = metrics.read_metrics(tmp_path / "whole", "train")
    b = metrics.read_metrics(tmp_path / "killed", "train")
    assert [r["step"] for r in a] == list(range(1, 7)) == [r["step"] for r in b]
    assert [(r["loss"], r["error"]) for r in a] == [(r["loss"], r["error"]) for r in b]
    assert all(math.isfinite(r["loss"]) for r in a)
    va, vb = (metrics.read_metrics(d, "val") for d in (tmp_path / "whole", tmp_path / "killed"))
    assert [(r["top1"], r["top5"]) for r in va] == [(r["top1"], r["top5"]) for r in vb]
    wa, wb = final_model(tmp_path / "whole"), final_model(tmp_path / "killed")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in wa)


def test_corrupt_newest_checkpoint_falls_back(data_root, tmp_path):
    cfg = config.load(None, SMALL_NET + ["train.steps_per_epoch=3", "train.epochs=2",
                                         "train.checkpoint_every=2", "train.keep_last=5"])
    run = tmp_path / "run"
    train(cfg, data_root, run, quiet=True)
    steps = [s for s, _ in checkpoint.list_checkpoints(run)]
    assert steps == [2, 3, 4, 6]
    newest = checkpoint.checkpoint_path(run, 6)
    newest.write_bytes(newest.read_bytes()[:1000])                 # a truncated file
    longer = config.load(None, SMALL_NET + ["train.steps_per_epoch=3", "train.epochs=3",
                                            "train.checkpoint_every=2", "train.keep_last=5"])
    with pytest.warns(UserWarning, match="ckpt-000000006.pt"):
        result = train(longer, data_root, run, quiet=True)        # train.epochs may change
    assert result["resumed_from"].endswith("ckpt-000000004.pt")
    assert result["global_step"] == 9
    events = metrics.read_metrics(run, "event")
    assert events[-1]["changes"] == {"train.epochs": [2, 3]}


def test_nan_loss_stops_before_the_bad_update_is_saved(data_root, tmp_path):
    cfg = config.load(None, SMALL_NET + ["optim.lr=1e30", "train.epochs=3",
                                         "train.checkpoint_every=1", "train.keep_last=100"])
    with pytest.raises(NonFiniteLoss, match=r"at step (\d+)") as info:
        train(cfg, data_root, tmp_path / "run", quiet=True)
    bad = int(re.search(r"at step (\d+)", str(info.value)).group(1))
    assert "--allow-change optim.lr optim.lr=1e+29" in str(info.value)      # what works now
    saved = checkpoint.list_checkpoints(tmp_path / "run")
    assert saved and max(s for s, _ in saved) == bad - 1    # every good step saved, no later one
    for _, path in saved:
        state = checkpoint.load(path)
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert all(math.isfinite(r["loss"]) for r in metrics.read_metrics(tmp_path / "run", "train"))


def test_resume_refuses_a_different_config(data_root, tmp_path):
    cfg = config.load(None, SMALL_NET + ["train.steps_per_epoch=2", "train.epochs=1"])
    run = tmp_path / "run"
    train(cfg, data_root, run, quiet=True)
    other = config.load(None, SMALL_NET + ["train.steps_per_epoch=2", "optim.lr=0.02"])
    in_checkpoint = checkpoint.load_latest(run)[1]["config"]
    with pytest.raises(config.ConfigError, match=r"optim\.lr: saved 0\.0001, given 0\.02"):
        resolve_run_config(other, run, in_checkpoint)
    assert resolve_run_config(None, run, in_checkpoint)[0] == cfg
    assert config.load(run / "config.yaml") == cfg


def test_main_resumes_a_finished_run_and_rejects_changes(data_root, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: {arch: cifar10_4layer, input_size: 64, num_classes: 4}\n"
                      "optim: {batch_size: 8, lr: 0.0001}\ndata: {workers: 0}\n"
                      "train: {epochs: 1, steps_per_epoch: 2}\n")
    run = tmp_path / "runs" / "recipe"
    os.environ["ALEXNET_RUNS"] = str(tmp_path / "runs")
    try:
        assert main(["--config", str(recipe), "--data", data_root]) == 0
        assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
        assert main(["--data", data_root, "--run-dir", str(run), "optim.momentum=0.5"]) == 2
    finally:
        del os.environ["ALEXNET_RUNS"]
    assert "optim.momentum" in capsys.readouterr().err


class Evil:
    """Unpickling this would create a file: a stand-in for arbitrary code in a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_weights_only_loading_refuses_a_malicious_pickle(data_root, tmp_path):
    cfg = config.load(None, SMALL_NET + ["train.steps_per_epoch=2", "train.epochs=1"])
    run = tmp_path / "run"
    train(cfg, data_root, run, quiet=True)
    marker = tmp_path / "pwned"
    evil = checkpoint.checkpoint_path(run, 99)
    with open(evil, "wb") as f:
        torch.save({"model": Evil(str(marker))}, f, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(checkpoint.CheckpointError, match="weights_only"):
        checkpoint.load(evil)
    assert not marker.exists()
    # training from that run directory skips it (with a warning) and resumes from step 2
    more = config.load(None, SMALL_NET + ["train.steps_per_epoch=2", "train.epochs=2"])
    with pytest.warns(UserWarning, match="ckpt-000000099.pt"):
        result = train(more, data_root, run, quiet=True)
    assert result["resumed_from"].endswith("ckpt-000000002.pt") and not marker.exists()


@pytest.mark.gpu
def test_gpu_bf16_channels_last_compile(data_root, tmp_path):
    """precision=auto is bf16 autocast on a GPU; channels_last and torch.compile train, and the
    checkpoint holds the raw model's names (no `_orig_mod.`) that load into a fresh CPU model."""
    from paper_alexnet.model import build
    cfg = config.load(None, ALEXNET_64 + ["train.steps_per_epoch=3", "train.epochs=1",
                                          "train.channels_last=true", "train.compile=true",
                                          "model.devices=[cuda:0]"])
    result = train(cfg, data_root, tmp_path / "run", quiet=True)
    assert math.isfinite(result["train_loss"])
    state = final_model(tmp_path / "run")
    cpu = build(dataclasses.replace(cfg.model, devices=("cpu",)))
    cpu.load_state_dict(state)                                  # strict: every name matches
    assert not any("_orig_mod" in k or k.startswith("module.") for k in state)


def test_train_and_eval_name_unprepared_data_without_a_traceback(data_root, tmp_path, capsys):
    """A --data folder that is not a prepared dataset: exit 2 (the command cannot start), one line
    naming the folder and what to run, no traceback (train and eval alike)."""
    from paper_alexnet.evaluate import main as eval_main
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train: {epochs: 1, steps_per_epoch: 1}\n")
    missing, run = tmp_path / "not_prepared", tmp_path / "run"
    assert main(["--config", str(recipe), "--data", str(missing), "--run-dir", str(run),
                 *SMALL_NET]) == 2
    err = capsys.readouterr().err
    assert f"{missing}/train does not exist" in err and "alexnet prep" in err
    assert "Traceback" not in err
    train(config.load(recipe, SMALL_NET), data_root, run, quiet=True)     # a checkpoint to eval
    assert eval_main(["--run-dir", str(run), "--data", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing}/" in err and "does not exist" in err and "Traceback" not in err
