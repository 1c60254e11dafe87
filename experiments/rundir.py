"""Reading a run directory (docs/ARCHITECTURE.md) back into the numbers a report shows: §6 errors,
§5 curves (training error, validation error, learning rate per epoch), time and throughput.

Reads only what train.py and evaluate.py write: RUN/config.yaml, RUN/metrics.jsonl (records of kind
"train": step, loss, error (top-1, a fraction, over the steps since the previous record), lr,
train_time_s (training time since the session started); "val": step, top1, top5 after each epoch;
"lr": a drop) and RUN/result.json. Training records are given to epochs by their step (the
validation records mark the ends of epochs), whatever the "epoch" field's convention. Errors stay
fractions here; reports print percent.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from data_prep.files import write_atomic
from paper_alexnet import config
from paper_alexnet.run import metrics

# A run's record: what a report reads, without checkpoints (kilobytes, not gigabytes).
RECORD = ("experiment.json", "config.yaml", "metrics.jsonl", "result.json")


def read_config(run_dir) -> config.RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no config.yaml: is it a run directory? (train "
                                "one with 'alexnet train' or an 'alexnet experiment' command)")
    return config.load(path)


def read_result(run_dir) -> dict | None:
    """RUN/result.json (evaluate.py), or None when the run was not evaluated."""
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _epoch_of(step: int, val_steps: list[int]) -> int:
    """1-based epoch of a training record: the first epoch whose validation came at or after its
    step (records are assigned by step, so the "epoch" field's convention does not matter)."""
    for e, s in enumerate(val_steps, 1):
        if step <= s:
            return e
    return len(val_steps) + 1


def _train_by_epoch(records: list[dict], val_steps: list[int]):
    """From the "train" records: per epoch, [sum of steps × error, sum of steps × loss, steps],
    the last lr logged and the cumulative training time (summed over sessions)."""
    sums: dict[int, list[float]] = {}
    lr_by_epoch: dict[int, float] = {}
    time_by_epoch: dict[int, float] = {}
    session_base, previous_time, previous_step = 0.0, 0.0, 0
    for r in records:
        if r.get("kind") != "train":
            continue
        step = int(r["step"])
        # no validation records at all (none logged yet): fall back on the 1-based "epoch" field
        e = _epoch_of(step, val_steps) if val_steps else max(int(r.get("epoch", 1)), 1)
        n = float(max(step - previous_step, 0))
        previous_step = step
        s = sums.setdefault(e, [0.0, 0.0, 0.0])
        s[0] += n * float(r["error"])
        s[1] += n * float(r["loss"])
        s[2] += n
        lr_by_epoch[e] = float(r.get("lr", math.nan))
        t = float(r.get("train_time_s", math.nan))
        if t < previous_time:       # a resumed session starts its clock at 0
            session_base += previous_time
        previous_time = t
        time_by_epoch[e] = session_base + t
    return sums, lr_by_epoch, time_by_epoch


def epoch_curves(records: list[dict]) -> dict:
    """Per-epoch curves from metrics records.

    train_error[e] is the RUNNING training error of epoch e+1: the mean top-1 error of the batches
    seen during that epoch (each record weighted by the steps it covers), as cuda-convnet reported
    it and as Figure 1 plots it; the weights move during the epoch, so it lags a pass over the
    training set made at the end of the epoch. Returns lists indexed by epoch number (1-based), NaN
    where nothing was logged: {"epoch", "train_error", "train_loss", "val_top1", "val_top5", "lr",
    "train_time_s", "val_split"} (train_time_s = cumulative training time at the end of each
    epoch, summed over sessions; val_split = the split the per-epoch records were measured on,
    schedule.signal_split: "val", or "train_holdout")."""
    val = dict(enumerate((r for r in records if r.get("kind") == "val"), start=1))
    sums, lr_by_epoch, time_by_epoch = _train_by_epoch(records, [int(r["step"])
                                                                 for r in val.values()])
    epochs = list(range(1, max([0, *sums, *val]) + 1))
    nan = math.nan

    def mean(e, i):
        return sums[e][i] / sums[e][2] if e in sums and sums[e][2] else nan
    return {
        "epoch": epochs,
        "train_error": [mean(e, 0) for e in epochs],
        "train_loss": [mean(e, 1) for e in epochs],
        "val_top1": [float(val[e]["top1"]) if e in val else nan for e in epochs],
        "val_top5": [float(val[e]["top5"]) if e in val else nan for e in epochs],
        "lr": [lr_by_epoch.get(e, nan) for e in epochs],
        "train_time_s": [time_by_epoch.get(e, nan) for e in epochs],
        "val_split": next((r.get("split", "val") for r in val.values()), "val"),
    }


def timing(records: list[dict], batch_size: int) -> dict:
    """Training time (summed over sessions), images trained on (steps x global batch), images/s,
    and wall time from the first to the last record (includes validation and checkpoints)."""
    train = [r for r in records if r.get("kind") == "train"]
    images = float(max([0] + [int(r["step"]) for r in train]) * batch_size)
    total, previous = 0.0, 0.0
    for r in train:
        t = float(r.get("train_time_s", 0.0))
        if t < previous:
            total += previous
        previous = t
    total += previous
    times = [float(r["time"]) for r in records if "time" in r]
    # the first record comes after its own stretch of training: count that stretch too
    first = float(train[0].get("train_time_s", 0.0)) if train else 0.0
    wall = max(times) - min(times) + first if times else math.nan
    return {"train_time_s": total, "images": images,
            "images_per_s": images / total if total > 0 else math.nan, "wall_s": wall}


def summarise(run_dir) -> dict:
    """Everything a report needs about one run directory."""
    run_dir = Path(run_dir)
    records = metrics.read_metrics(run_dir)
    cfg = read_config(run_dir)
    return {"run_dir": run_dir, "config": cfg, "result": read_result(run_dir),
            "curves": epoch_curves(records), "timing": timing(records, cfg.optim.batch_size)}


def _no_local_paths(value, folder: Path):
    """`value` with every absolute path made relative to `folder` when it lies inside, else cut to
    its last component: a record names no folder of the machine that made it."""
    if isinstance(value, dict):
        return {k: _no_local_paths(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_local_paths(v, folder) for v in value]
    if isinstance(value, str) and Path(value).is_absolute():
        path = Path(value)
        return str(path.relative_to(folder)) if path.is_relative_to(folder) else path.name
    return value


def _record_text(path: Path, folder: Path) -> str:
    text = path.read_text()
    if path.suffix == ".json":
        return json.dumps(_no_local_paths(json.loads(text), folder), indent=2) + "\n"
    if path.suffix == ".jsonl":       # read as reports read it: a torn last line is left out
        return "".join(json.dumps(_no_local_paths(r, folder)) + "\n"
                       for r in metrics.read_metrics(folder))
    return text


def copy_record(source: Path, dest: Path) -> list[Path]:
    """Copy the record (RECORD) of a run directory or an experiment folder `source` into `dest`,
    keeping the folder layout and leaving out checkpoints, reports and earlier records; absolute
    paths in the JSON files are made relative (they name the machine that ran it). An experiment
    can then be reported again from the copy, or finished elsewhere (docs/experiments.md)."""
    source, dest = Path(source).resolve(), Path(dest)
    written = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if (path.name not in RECORD or not path.is_file()
                or {"report", "record", "checkpoints"} & set(relative.parts[:-1])):
            continue
        target = dest / relative
        if target.resolve() == path:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        folder = source / relative.parent
        write_atomic(target, _record_text(path, folder).encode())
        written.append(target)
    return written
