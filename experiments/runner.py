"""Running one experiment's runs: train (resuming what exists), evaluate the final checkpoint into
RUN/result.json (docs/ARCHITECTURE.md), and record what an experiment did in its experiment.json
so that `alexnet report` can regenerate its report later.

Honest checkpoint choice (§6): the newest checkpoint of a finished run is evaluated, never the best
one on the reported split. A run whose loss became NaN (train.NonFiniteLoss) is marked with an
empty RUN/DIVERGED file and not retried (a learning-rate search expects some to diverge).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from paper_alexnet import checkpoint, config

DIVERGED = "DIVERGED"


def write_manifest(exp_dir: Path, manifest: dict) -> None:
    """EXP/experiment.json: the experiment's kind and parameters (atomic write)."""
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    tmp = exp_dir / ".experiment.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, exp_dir / "experiment.json")


def dataset_shape(data_root) -> tuple[int, int]:
    """(number of classes, image channels) of the prepared train split."""
    from data_prep.shards import PreparedSplit
    split = PreparedSplit(Path(data_root) / "train")
    return len(split.classes), int(split.image_shape[2])


def train_run(cfg: config.RunConfig, data_root, run_dir, quiet: bool = False) -> bool:
    """Train (or resume, or skip if finished) one run; False if it diverged (NaN loss)."""
    from paper_alexnet import train
    run_dir = Path(run_dir)
    if (run_dir / DIVERGED).is_file():
        return False
    try:
        train.train(cfg, data_root, run_dir, quiet=quiet)
    except train.NonFiniteLoss as err:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / DIVERGED).write_text(f"{err}\n")
        return False
    return True


def final_checkpoint(run_dir) -> Path:
    found = checkpoint.load_latest(run_dir)
    if found is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint: train it first")
    return Path(found[0])


def evaluate_into(checkpoints: list[Path], data_root, split: str, ten_crop: bool,
                  out: Path) -> dict:
    """§6 errors of one checkpoint or of an ensemble, written to `out` (result.json format)."""
    from paper_alexnet.evaluate import evaluate
    result = evaluate([str(p) for p in checkpoints], data_root, split, ten_crop=ten_crop)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    return result


def is_evaluated(run_dir: Path, split: str) -> bool:
    """result.json exists, is of this split, and is of the newest checkpoint."""
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        return False
    result = json.loads(path.read_text())
    newest = checkpoint.list_checkpoints(run_dir)
    return (result.get("split") == split and bool(newest)
            and Path(result.get("checkpoints", [""])[0]).name == newest[-1][1].name)


def train_and_evaluate(cfg: config.RunConfig, data_root, run_dir, split: str = "val",
                       quiet: bool = False) -> dict | None:
    """Train (resuming), then evaluate the final checkpoint into RUN/result.json unless that is
    already done. None if the run diverged."""
    run_dir = Path(run_dir)
    if not train_run(cfg, data_root, run_dir, quiet=quiet):
        return None
    if is_evaluated(run_dir, split):
        return json.loads((run_dir / "result.json").read_text())
    return evaluate_into([final_checkpoint(run_dir)], data_root, split, cfg.eval.ten_crop,
                         run_dir / "result.json")
