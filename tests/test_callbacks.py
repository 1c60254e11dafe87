"""The training loop's callbacks (paper_alexnet/run/callbacks.py): a stop at an epoch's end or
in the middle of one is checkpointed and logged, the run is exactly the one that would have been
trained to that point, a rerun with the same callback trains nothing more, and a rerun without it
continues. The Figure-1 net on the tiny prepared dataset."""
import torch

from paper_alexnet import config
from paper_alexnet.run import checkpoint, metrics
from paper_alexnet.run.callbacks import Callback, Progress, first_stop
from paper_alexnet.train import train

SMALL_NET = ["model.arch=cifar10_4layer", "model.input_size=64", "model.num_classes=4",
             "optim.lr=1e-4", "optim.batch_size=8", "data.workers=0", "eval.batch_size=16",
             "train.steps_per_epoch=3", "train.log_every=1", "train.checkpoint_every=100"]


def small(epochs: int):
    return config.load(None, SMALL_NET + [f"train.epochs={epochs}"])


class StopAfterEpochs(Callback):
    """A target the test can predict: `epochs` epochs complete (at the start, too)."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.seen = []

    def reached(self, progress: Progress):
        self.seen.append(progress)
        return f"{progress.epoch} epochs done" if progress.epoch >= self.epochs else None

    on_start = on_epoch_end = reached


class StopAtStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, progress: Progress):
        return "asked" if progress.global_step == self.step else None


def weights(run_dir):
    return checkpoint.load_latest(run_dir)[1]["model"]


def events(run_dir, name):
    return [r for r in metrics.read_metrics(run_dir, "event") if r.get("event") == name]


def test_first_stop_asks_every_callback_and_returns_the_first_reason():
    a, b = StopAfterEpochs(1), StopAfterEpochs(5)
    p = Progress(run_dir=None, epoch=2, step_in_epoch=0, global_step=6, epochs=9)
    assert first_stop([Callback(), b, a], "on_epoch_end", p) == "2 epochs done"
    assert len(a.seen) == len(b.seen) == 1
    assert first_stop([Callback(), b], "on_epoch_end", p) is None
    assert first_stop([], "on_step_end", p) is None


def test_stop_at_an_epoch_end_is_checkpointed_and_a_rerun_trains_no_further(data_root, tmp_path):
    run = tmp_path / "run"
    target = StopAfterEpochs(2)
    result = train(small(4), data_root, run, quiet=True, callbacks=[target])
    assert result["stopped"] == "2 epochs done" and result["global_step"] == 6
    assert [(p.epoch, p.global_step) for p in target.seen] == [(0, 0), (1, 3), (2, 6)]
    assert target.seen[-1].val["images"] == 16 and 0.0 <= target.seen[-1].val["top1"] <= 1.0
    _, state = checkpoint.load_latest(run)
    assert (state["epoch"], state["step"], state["global_step"]) == (2, 0, 6)
    assert len(metrics.read_metrics(run, "val")) == 2
    assert [e["reason"] for e in events(run, "stopped")] == ["2 epochs done"]

    # exactly the run that trains for 2 epochs and ends
    train(small(2), data_root, tmp_path / "two", quiet=True)
    a, b = weights(run), weights(tmp_path / "two")
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the same command again: resumes, asks on_start, trains nothing
    files = sorted(p.name for p in (run / "checkpoints").iterdir())
    again = train(small(4), data_root, run, quiet=True, callbacks=[StopAfterEpochs(2)])
    assert again["stopped"] == "2 epochs done" and again["global_step"] == 6
    assert again["resumed_from"].endswith("ckpt-000000006.pt")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == files
    assert len(metrics.read_metrics(run, "train")) == 6

    # without the callback the run is an ordinary resumable run: it continues to train.epochs
    rest = train(small(4), data_root, run, quiet=True)
    assert rest["stopped"] is None and rest["global_step"] == 12


def test_stop_in_the_middle_of_an_epoch_resumes_bit_identically(data_root, tmp_path):
    run = tmp_path / "run"
    result = train(small(2), data_root, run, quiet=True, callbacks=[StopAtStep(4)])
    assert result["stopped"] == "asked" and result["global_step"] == 4
    assert [s for s, _ in checkpoint.list_checkpoints(run)] == [3, 4]
    assert len(metrics.read_metrics(run, "val")) == 1           # epoch 2 was not evaluated
    assert events(run, "stopped")[0]["step"] == 4
    resumed = train(small(2), data_root, run, quiet=True)
    assert resumed["resumed_from"].endswith("ckpt-000000004.pt")
    train(small(2), data_root, tmp_path / "whole", quiet=True)
    a, b = weights(run), weights(tmp_path / "whole")
    assert all(torch.equal(a[k], b[k]) for k in a)
