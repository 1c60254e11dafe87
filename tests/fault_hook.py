"""Fault injection into the §5 loop, for the tests (tests/test_faults_*.py, RELIABILITY.md).

A fault is a training-loop callback (`Inject`, its `on_backward` hook): in the test process pass
it to `train(..., callbacks=[Inject("nan_loss:5")])`, or `install(monkeypatch, spec)` to add it to
every `train()` of a command run in-process; in a child process run `python tests/faulty.py ARGS`
(= `python -m paper_alexnet ARGS`) with the spec in the environment variable ALEXNET_FAULT.

    ALEXNET_FAULT="KIND:STEP[,rank:R][,attempts:A]"

KIND      what happens right after the backward pass of step STEP (1-based: the STEP-th optimiser
          step), before that step's finiteness check and optimiser step:
          nan_loss  the loss and every gradient become NaN (what a NaN loss does)
          inf_grad  one gradient element becomes +inf (the loss stays finite)
          crash     RuntimeError (an uncaught Python error: the process exits with status 1)
          kill      SIGKILL to this process (a hard death: OOM killer, segfault)
          sigterm   SIGTERM to this process (a preemption at a known step)
          busy      one long torch call (a 4096x4096 matrix product: a second or more on one
                    core) announced by "ALEXNET_FAULT: busy" on stderr: signals that come during
                    it wait for its end, as they do during the backward pass of a big network
rank:R    only on rank R (default: every rank)
attempts:A only while torchrun's restart count (TORCHELASTIC_RESTART_COUNT, 0 on the first
          attempt) is below A, so `crash:5,attempts:1` crashes once and the restarted job runs
          through (default: on every attempt).
"""
from __future__ import annotations

import math
import os
import signal
import sys
import functools
from dataclasses import dataclass

import torch

from paper_alexnet.run.callbacks import Callback

ENV = "ALEXNET_FAULT"
KINDS = ("nan_loss", "inf_grad", "crash", "kill", "sigterm", "busy")


class InjectedCrash(RuntimeError):
    """The `crash` fault."""


@dataclass(frozen=True)
class Fault:
    kind: str
    step: int
    rank: int | None = None
    attempts: int | None = None


def parse(text: str) -> Fault:
    """'inf_grad:3,rank:1' -> Fault; ValueError naming the spec when it is malformed."""
    try:
        head, *options = [part.strip() for part in text.split(",")]
        kind, step = head.split(":")
        extra = {key: int(value) for key, value in (o.split(":") for o in options)}
        fault = Fault(kind, int(step), extra.pop("rank", None), extra.pop("attempts", None))
    except ValueError:
        fault, extra = None, {}
    if fault is None or extra or fault.kind not in KINDS or fault.step < 1:
        raise ValueError(f"{ENV}={text!r} is not KIND:STEP[,rank:R][,attempts:A] with KIND one "
                         f"of {', '.join(KINDS)} and STEP >= 1 (see tests/fault_hook.py)")
    return fault


def from_env(rank: int) -> Fault | None:
    """The fault this process must inject (ALEXNET_FAULT), or None."""
    text = os.environ.get(ENV)
    if not text:
        return None
    fault = parse(text)
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if (fault.rank is not None and fault.rank != rank) or \
            (fault.attempts is not None and attempt >= fault.attempts):
        return None
    print(f"WARNING: {ENV}={text!r}: TEST-ONLY fault injection is active on rank {rank} "
          f"(attempt {attempt})", file=sys.stderr, flush=True)
    return fault


def inject(fault: Fault | None, steps_done: int, loss: torch.Tensor, model: torch.nn.Module):
    """Call after loss.backward() of the step that follows `steps_done` steps."""
    if fault is None or steps_done + 1 != fault.step:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if fault.kind == "nan_loss":
        loss.detach().fill_(math.nan)
        for g in grads:
            g.fill_(math.nan)
    elif fault.kind == "inf_grad":
        grads[0][(0,) * grads[0].dim()] = math.inf    # any memory format
    elif fault.kind == "crash":
        raise InjectedCrash(f"{ENV}: injected crash at step {fault.step}")
    elif fault.kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault.kind == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
    elif fault.kind == "busy":
        square = torch.ones(4096, 4096)
        os.write(2, b"ALEXNET_FAULT: busy\n")
        square @ square


class Inject(Callback):
    """The callback that injects `spec` (a Fault or its text) right after the backward pass."""

    def __init__(self, spec):
        self.fault = parse(spec) if isinstance(spec, str) else spec

    def on_backward(self, progress, loss, model):
        inject(self.fault, progress.global_step, loss, model)


def install(monkeypatch, spec: str):
    """Every `paper_alexnet.train.train` call of this test injects `spec` (commands run
    in-process: `alexnet experiment`, `train.main`)."""
    from paper_alexnet import train
    monkeypatch.setattr(train, "train", with_fault(train.train, Inject(spec)))


def with_fault(train_fn, callback):
    @functools.wraps(train_fn)
    def train(*args, callbacks=(), **kwargs):
        return train_fn(*args, callbacks=[*callbacks, callback], **kwargs)
    return train
