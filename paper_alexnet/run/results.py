"""§6 results of a run: which checkpoint stands for it, and RUN/result.json (or `alexnet eval --out
FILE`) written so that no result is ever lost (docs/training.md, "Evaluation").

- `run_checkpoint(run_dir)`: the newest checkpoint that loads, with the run's own network (the one
  RUN/config.yaml describes); when the newest is damaged, a warning that the one used instead is
  not the run's final state (`alexnet eval` prints it and records it in result.json).
- `write_result(out, result)`: atomic (temporary file, rename). When `out` already holds a result of
  the same checkpoints, split and data, the views not evaluated now are kept from it (an
  `eval --no-ten-crop` keeps the ten-crop numbers) and listed under "kept_from_earlier"; a result
  of other checkpoints, another split or other data is first appended to `<out stem>.history.jsonl`
  next to it.
- `data_id(root, split)`: the SHA-256 of the split's manifest.json: what "the same data" means.
  `data_identity(root)`: those of every split of ROOT, saved in each checkpoint ("data");
  `data_change(recorded, root)`: the warning `train` (on resume) and `eval` print when ROOT's
  splits are not the ones a checkpoint recorded.
- `format_result(result)`: the lines `alexnet eval` prints.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from data_prep.files import sha256_file, write_atomic
from paper_alexnet import config
from paper_alexnet.run import checkpoint, preflight

VIEWS = ("center", "ten_crop")
SAME = ("checkpoints", "split", "images", "data_manifest_sha256")   # what makes two results mergeable


def data_id(root, split: str) -> str:
    """SHA-256 of ROOT/<split>/manifest.json ("train_holdout" is part of "train")."""
    folder = "train" if split == "train_holdout" else split
    return sha256_file(Path(root) / folder / "manifest.json")


def data_identity(root) -> dict:
    """{split: SHA-256 of its manifest.json} of each prepared split of ROOT (train, val, test)."""
    return {split: data_id(root, split) for split in ("train", "val", "test")
            if (Path(root) / split / "manifest.json").is_file()}


def data_change(recorded: dict | None, root, source: str) -> str | None:
    """The warning when a split of ROOT differs from the one `source` (a checkpoint) recorded;
    None when they agree, or nothing was recorded (a checkpoint older than this record)."""
    now = data_identity(root)
    changed = sorted(s for s in (recorded or {}) if s in now and now[s] != recorded[s])
    if not changed:
        return None
    listed = ", ".join(f"{s} (manifest sha256 {recorded[s][:12]}… then, {now[s][:12]}… now)"
                       for s in changed)
    return (f"the data in {root} is not the data {source} was trained on: {listed}. It was "
            f"prepared again from other inputs or options, or is another dataset")


def history_path(out) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.history.jsonl")


def _read(out: Path) -> dict | None:
    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError):
        return None
    return old if isinstance(old, dict) else None


def write_result(out, result: dict) -> dict:
    """Write `result` to `out` without losing what `out` held (see the module docstring); returns
    what was written."""
    out = Path(out)
    old = _read(out) if out.is_file() else None
    result = dict(result)
    if old is not None and all(old.get(k) == result.get(k) for k in SAME):
        kept = [v for v in VIEWS if v not in result and v in old]
        for view in kept:
            result[view] = old[view]
        if kept:
            result["kept_from_earlier"] = kept
    elif out.is_file():
        with open(history_path(out), "a") as f:
            f.write((json.dumps(old) if old is not None else json.dumps(
                {"unreadable_previous_result": out.read_text(errors="replace")})) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, (json.dumps(result, indent=2) + "\n").encode())
    return result


def run_checkpoint(run_dir) -> tuple[Path, str | None, str]:
    """(the checkpoint `--run-dir` evaluates, a warning when it is not the run's newest, a line
    saying which checkpoint and network are evaluated). The network is the run's own: the
    checkpoint must hold the one RUN/config.yaml describes."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise preflight.StartError(f"--run-dir {run_dir} does not exist: name the run directory "
                                   f"that `alexnet train --run-dir` wrote")
    listed = checkpoint.list_checkpoints(run_dir)
    if not listed:
        raise preflight.StartError(f"{run_dir} holds no checkpoint: train it first (alexnet "
                                   f"train --run-dir {run_dir} --config FILE --data ROOT)")
    with warnings.catch_warnings():       # said below, louder, with what it means
        warnings.simplefilter("ignore")
        path, state = checkpoint.load_latest(run_dir)
    cfg = config.build(config.RunConfig, state["config"])
    if (run_dir / "config.yaml").is_file():
        differ = [f"{k}={held!r} (config.yaml: {own!r})" for k, (own, held)
                  in config.differences(cfg, config.load(run_dir / "config.yaml")).items()
                  if k.startswith("model.") and k != "model.devices"]
        if differ:
            raise preflight.StartError(f"{path} holds another network than {run_dir}/config.yaml "
                                       f"describes ({'; '.join(differ)}): evaluate it by name "
                                       f"(--checkpoint {path} --out FILE) if that is meant")
    epoch, planned, step = state.get("epoch", 0), cfg.train.epochs, state.get("global_step")
    where = (f"step {step}, in epoch {epoch + 1} of {planned}" if state.get("step")
             else f"step {step}, end of epoch {epoch} of {planned}")
    m = cfg.model
    layout = "one tower" if m.arch == "cifar10_4layer" else m.layout   # layout: AlexNet's only
    line = (f"evaluating {path} ({where}) with the run's own network: {m.arch}, {layout}, "
            f"{m.input_size} px, {m.num_classes} classes")
    warning = None
    if path != listed[-1][1]:
        warning = (f"the newest checkpoint {listed[-1][1].name} is unreadable: evaluated "
                   f"{path.name} ({where}) instead, which is NOT the run's final state")
    return path, warning, line


def format_result(result: dict) -> str:
    nets = len(result["checkpoints"])
    lines = [f"{result['split']}: {result['images']} images, {nets} net(s)"
             f"{' (softmax average)' if nets > 1 else ''}"]
    for view in VIEWS:
        if view in result:
            r = result[view]
            kept = " (kept from the earlier evaluation)" if view in result.get(
                "kept_from_earlier", ()) else ""
            lines.append(f"  {view:<9} top-1 error {100 * r['top1']:6.2f}%   top-5 error "
                         f"{100 * r['top5']:6.2f}%{kept}")
    return "\n".join(lines)
