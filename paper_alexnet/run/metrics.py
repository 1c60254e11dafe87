"""Metrics of a run (§6 top-1/top-5 error; docs/ARCHITECTURE.md decisions 5 and 6): log file,
running means, durations.

RUN/metrics.jsonl holds one JSON object per line: {"kind": "train"|"val"|"lr"|"event", "step",
"epoch", "time", ...values}. `step` is the number of optimiser steps done when the record was made.

Resume without duplicates: `MetricsLog(run_dir, resume_step=S)` keeps only the records with
step ≤ S (S = the step of the checkpoint resumed from) and moves the others to
RUN/metrics.dropped.jsonl (kept, not lost); `resume_step=None` (a fresh run, no checkpoint) moves
every existing record there. A torn last line (a crash in mid-write) is dropped the same way. So the
loop must log every record of step S BEFORE it writes the checkpoint of step S, and call `.sync()`
just before saving, so the log on disk is at least as new as the checkpoint.

`RunningMeans` keeps on-device sums (no host sync in the training step); `.flush()` is the one
sync point, at log steps. `topk_errors` counts errors as device tensors. `format_duration` writes
the ETA of the training and evaluation progress lines.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path

import torch

from data_prep.files import write_atomic


def metrics_path(run_dir) -> Path:
    return Path(run_dir) / "metrics.jsonl"


def _read_lines(path: Path) -> tuple[list[dict], list[str]]:
    """Parsed records and the raw text of a torn last line (if any). Bad middle lines raise."""
    if not path.is_file():
        return [], []
    text = path.read_text()
    lines = text.split("\n")
    records, torn = [], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:   # last, unterminated line: a write cut short by a crash
                torn.append(line)
                continue
            raise ValueError(f"{path} line {i + 1} is not valid JSON ({err}); fix or remove "
                             "that line") from None
    return records, torn


def read_metrics(run_dir, kind: str | None = None) -> list[dict]:
    """All records of RUN/metrics.jsonl (optionally only one kind); a torn last line is ignored."""
    path = metrics_path(run_dir)
    records, torn = _read_lines(path)
    if torn:
        warnings.warn(f"{path}: ignored an incomplete last line ({len(torn[0])} characters)")
    return [r for r in records if kind is None or r.get("kind") == kind]


class MetricsLog:
    """Appends records to RUN/metrics.jsonl, one flushed line each; see the module docstring."""

    def __init__(self, run_dir, resume_step: int | None = None):
        self.path = metrics_path(run_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records, torn = _read_lines(self.path)
        keep = [r for r in records if resume_step is not None and r.get("step", 0) <= resume_step]
        dropped = [json.dumps(r) for r in records
                   if not (resume_step is not None and r.get("step", 0) <= resume_step)] + torn
        self.dropped = len(dropped)
        if dropped:
            with open(self.path.with_name("metrics.dropped.jsonl"), "a") as f:
                f.write("".join(line + "\n" for line in dropped))
        if dropped or (records and not self.path.read_text().endswith("\n")):
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in keep).encode())
        self._file = open(self.path, "a")

    def log(self, kind: str, step: int, epoch: int | None = None, **values) -> dict:
        """Append one record; tensor values are converted with .item() (a host sync: pass floats
        from `RunningMeans.flush()` in the training loop)."""
        record = {"kind": kind, "step": int(step)}
        if epoch is not None:
            record["epoch"] = epoch
        record["time"] = time.time()
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.item() if value.numel() == 1 else value.tolist()
            record[key] = value
        # NaN and inf are written as NaN/Infinity (Python's json reads them back): a diverging loss
        # is worth recording.
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        return record

    def sync(self):
        """fsync the log: call before saving a checkpoint so the log is at least that new."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self):
        if not self._file.closed:
            self.sync()
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RunningMeans:
    """On-device sums of per-example quantities between log steps.

    `update(n, loss=loss.detach() * n, top1=err1, top5=err5)`: every keyword is a SUM over the n
    examples of the batch (a 0-d tensor on the device, or a number); nothing leaves the device.
    `flush(distributed=False) -> {"loss": mean, "top1": mean, ..., "count": n}` (floats); resets.
    """

    def __init__(self, device="cpu"):
        self.device = torch.device(device)
        # float64 where the device has it: sums of 10^5 examples stay exact to ~1e-12.
        self.dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self.reset()

    def reset(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def update(self, n: int, **sums):
        for name, value in sums.items():
            value = torch.as_tensor(value).detach().to(self.device, self.dtype, non_blocking=True)
            if name in self.sums:
                self.sums[name] += value
            else:
                self.sums[name] = value.clone()
        self.count += int(n)

    def flush(self, distributed: bool = False) -> dict:
        """Means since the last flush. SYNC POINT: the one device-to-host copy (call at log steps).
        With distributed=True the sums and counts are all-reduced over the process group first."""
        names = sorted(self.sums)
        packed = torch.stack([self.sums[k] for k in names]
                             + [torch.tensor(float(self.count), device=self.device,
                                             dtype=self.dtype)])
        if distributed:
            torch.distributed.all_reduce(packed)
        values = packed.tolist()   # the sync
        count = values[-1]
        out = {k: (v / count if count else math.nan) for k, v in zip(names, values)}
        out["count"] = int(count)
        self.reset()
        return out


def topk_errors(logits_or_probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5)):
    """§6 top-k errors: a tuple with, for each k in ks, the number of examples (0-d int64 tensor
    on the input's device) whose label is not among the k highest scores. k larger than the
    number of classes counts as all of them (0 errors). Works on logits or probabilities alike."""
    if logits_or_probs.ndim != 2 or labels.shape != logits_or_probs.shape[:1]:
        raise ValueError(f"topk_errors: expected scores (N, C) and labels (N,), got "
                         f"{tuple(logits_or_probs.shape)} and {tuple(labels.shape)}")
    classes = logits_or_probs.shape[1]
    maxk = min(max(ks), classes)
    top = logits_or_probs.topk(maxk, dim=1).indices                      # (N, maxk)
    hit = top.eq(labels.to(top.device).view(-1, 1))                      # (N, maxk)
    n = labels.shape[0]
    return tuple(n - hit[:, :min(k, classes)].any(dim=1).sum() for k in ks)


def format_duration(seconds: float) -> str:
    """12s, 5m03s, 2h05m, 3d04h."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
