"""Hooks of the training loop: `train.train(cfg, root, run, callbacks=[...])`.

A callback is an object with any of the methods below (subclass `Callback` to get the others as
no-ops). Each is given a `Progress` (where the run stands) and returns None to go on, or a short
reason (a string) to stop the run there. A stop is a normal end, not a failure: the loop writes
the checkpoint of that point (unless it has just written one), logs an "event" record
`{"event": "stopped", "reason": …}` in metrics.jsonl, and `train()` returns its summary with
`stopped` = the reason. The run stays resumable: run again, it resumes from that checkpoint and
asks `on_start` first, so a criterion that still holds (a target reached) stops it again before
any step, and a run without that callback simply continues.

- `on_start`: once, before the first step, also when resuming (and when nothing is left to train);
- `on_step_end`: after every step, after any checkpoint of that step (a stop in the middle of an
  epoch is checkpointed there; at the last step of an epoch, the epoch ends first);
- `on_epoch_end`: after the epoch's evaluation, its log records and its checkpoint;
- `on_backward(progress, loss, model)` (optional, returns nothing): after each step's backward
  pass, before its NaN guard and update (the tests inject faults here: tests/fault_hook.py).

The loop's own callbacks (paper_alexnet/loop.py: log, checkpoints, preemption) come first.

Under DDP every rank calls the hooks and must return the same answer: the loop does not
all-reduce it. The per-step hook runs on the host: it must not read device values (that is a
host synchronisation, docs/ARCHITECTURE.md decision 5).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Progress:
    """Where a run stands at a hook: `epoch` epochs complete, `step_in_epoch` steps of the next,
    `global_step` steps in all, `epochs` = train.epochs; `val` = the epoch's evaluation (top1,
    top5, images: fractions) at `on_epoch_end`, else empty."""

    run_dir: Path
    epoch: int
    step_in_epoch: int
    global_step: int
    epochs: int
    val: dict = field(default_factory=dict)


class Callback:
    """Every hook goes on (returns None); override the ones you need."""

    def on_start(self, progress: Progress) -> str | None:
        return None

    def on_step_end(self, progress: Progress) -> str | None:
        return None

    def on_epoch_end(self, progress: Progress) -> str | None:
        return None


def first_stop(callbacks, hook: str, progress: Progress) -> str | None:
    """Call `hook` of every callback (all of them: each sees every point); the first reason to
    stop, or None."""
    reasons = [getattr(c, hook, lambda p: None)(progress) for c in callbacks]
    return next((r for r in reasons if r), None)
