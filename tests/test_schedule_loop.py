"""§5's schedule wired into the training loop: the rate is divided by 10 exactly where the error on
`schedule.signal_split` plateaus (validation, or the held-out part of train), while the training
error keeps falling; a run killed right after a drop and resumed is bit-identical.

The real loop, optimiser and checkpoints run on the tiny prepared set; only the per-epoch error the
loop reads is designed: `evaluate.error_rates` is wrapped so that it still counts (nets in eval
mode, every image once) but reports the designed top-1 error of the split it was handed."""
import math

import numpy as np
import pytest
import torch

from paper_alexnet import config, data, evaluate, optim
from paper_alexnet.run import checkpoint, metrics
from paper_alexnet import train as train_module
from paper_alexnet.train import train
from faults import AtStep, assert_same_run, same_weights
from test_train import SMALL_NET

LR = 3e-4
# 4 steps of 8 images per epoch: at this rate the Figure-1 net's training error keeps falling
# (per epoch 0.69, 0.50, 0.25, 0.16, 0.03, 0.00, then 0.09; torch 2.14.1 on an x86-64 CPU), so a
# loop that watched it would not drop where the validation error says (checked below).
SETTINGS = SMALL_NET + [f"optim.lr={LR}", "train.steps_per_epoch=4", "train.log_every=4",
                        "train.epochs=7", "data.holdout=16"]
# Designed top-1 errors after epochs 1, 2, …; default schedule: patience 2, threshold 0.001.
VAL = [0.70, 0.50, 0.50, 0.50, 0.55, 0.55, 0.30]
# 1: 0.70 best; 2: 0.50 best; 3, 4: no gain -> DROP after epoch 4 (÷10); 5 and 6: 0.55, no gain
# over the kept best 0.50 -> DROP after epoch 6 (÷100); 7: 0.30 best.
HOLDOUT = [0.60, 0.55, 0.40, 0.41, 0.42, 0.35]
# 1–3 improve; 4, 5: no gain -> DROP after epoch 5; 6: 0.35 best. (VAL would drop after epoch 4.)


class DesignedErrors:
    """Stands in for evaluate.error_rates in the loop's per-epoch evaluation: counts for real, then
    reports the next designed top-1 error of the split it was handed (told apart by its indices).
    One instance is one run, across a kill and its resume."""

    def __init__(self, root):
        held = config.load(None, SETTINGS + ["schedule.signal_split=train_holdout"])
        self.indices = {split: data.split_indices(root, split, held)[1]
                        for split in ("val", "train_holdout")}
        self.designed = dict(val=VAL, train_holdout=HOLDOUT)
        self.seen = []                               # the splits handed over, in order

    def __call__(self, models, batches, **kwargs):
        counted = REAL_COUNT(models, batches, **kwargs)
        split, = [s for s, idx in self.indices.items()
                  if np.array_equal(idx, kwargs["index_space"])]
        epoch = sum(s == split for s in self.seen)
        self.seen.append(split)
        return dict(counted, top1=self.designed[split][epoch])


REAL_COUNT = evaluate.error_rates


def run(cfg, root, run_dir, errors, after_step=None):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate, "error_rates", errors)
        patch.setattr(train_module, "error_rates", errors)   # where the loop looks it up
        return train(cfg, root, run_dir, quiet=True,
                     callbacks=[AtStep(after_step)] if after_step else [])


def lr_by_epoch(run_dir):
    """{epoch: rate} from the train records (one per epoch), and the drops [(epoch, rate)]."""
    rates = {r["epoch"]: r["lr"] for r in metrics.read_metrics(run_dir, "train")}
    drops = [(r["epoch"], r["lr"]) for r in metrics.read_metrics(run_dir, "lr")]
    return rates, drops


@pytest.fixture(scope="module")
def whole(data_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    errors = DesignedErrors(data_root)
    run(config.load(None, SETTINGS), data_root, run_dir, errors)
    assert errors.seen == ["val"] * 7
    return run_dir


def test_the_rate_drops_where_the_validation_error_plateaus(whole):
    rates, drops = lr_by_epoch(whole)
    assert drops == [(4, pytest.approx(LR / 10)), (6, pytest.approx(LR / 100))]
    assert [rates[e] for e in range(1, 8)] == pytest.approx([LR] * 4 + [LR / 10] * 2 + [LR / 100])
    assert [r["top1"] for r in metrics.read_metrics(whole, "val")] == VAL
    _, state = checkpoint.load_latest(whole)
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == pytest.approx([LR / 100] * 2)
    assert state["schedule"]["history"] == [[4, pytest.approx(LR / 10)],
                                            [6, pytest.approx(LR / 100)]]
    # the training error fell meanwhile: a schedule watching it would have dropped elsewhere
    train_error = [r["error"] for r in metrics.read_metrics(whole, "train")]
    assert train_error[5] < train_error[0]
    watching_train = optim.make_schedule(config.load(None, SETTINGS).schedule,
                                         torch.optim.SGD([torch.zeros(1)], lr=LR))
    assert [e for e in range(1, 8) if watching_train.observe(e, train_error[e - 1])] != [4, 6]


class Kill(Exception):
    pass


def test_kill_right_after_a_drop_and_resume_is_bit_identical(whole, data_root, tmp_path):
    """Killed at the first step after the drop (its newest checkpoint: the end of epoch 4, the
    rate just divided, best error 0.50 kept), then resumed: the second drop after epoch 6 needs
    the saved schedule state (without it, 0.55 would count as a gain), and every parameter and
    record equals the uninterrupted run's."""
    def kill_after_epoch_4(step):
        if step == 4 * 4 + 1:
            raise Kill

    cfg, errors, run_dir = config.load(None, SETTINGS), DesignedErrors(data_root), tmp_path / "run"
    with pytest.raises(Kill):
        run(cfg, data_root, run_dir, errors, after_step=kill_after_epoch_4)
    resumed = run(cfg, data_root, run_dir, errors)
    assert resumed["resumed_from"].endswith("ckpt-000000016.pt")
    assert errors.seen == ["val"] * 7               # no epoch evaluated twice
    assert same_weights(checkpoint.load_latest(run_dir)[1]["model"],
                        checkpoint.load_latest(whole)[1]["model"])     # bit-identical parameters
    assert_same_run(run_dir, whole)                 # and records
    assert lr_by_epoch(run_dir) == lr_by_epoch(whole)


def test_with_train_holdout_the_rate_drops_where_the_holdout_error_says(data_root, tmp_path):
    cfg = config.load(None, SETTINGS + ["schedule.signal_split=train_holdout", "train.epochs=6"])
    errors = DesignedErrors(data_root)
    run(cfg, data_root, tmp_path / "run", errors)
    assert errors.seen == ["train_holdout"] * 6      # the loop evaluated the held-out images
    rates, drops = lr_by_epoch(tmp_path / "run")
    assert drops == [(5, pytest.approx(LR / 10))]
    assert [rates[e] for e in range(1, 7)] == pytest.approx([LR] * 5 + [LR / 10])
    val = metrics.read_metrics(tmp_path / "run", "val")
    assert [r["split"] for r in val] == ["train_holdout"] * 6
    assert [r["top1"] for r in val] == HOLDOUT and all(math.isfinite(r["top5"]) for r in val)
