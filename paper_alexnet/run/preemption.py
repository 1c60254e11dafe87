"""§5 training runs for days (docs/ARCHITECTURE.md decision 6: a run directory is the unit of work):
a preempted run stops at a step boundary with a checkpoint, and says so with its exit status.

SIGTERM (what SLURM, Kubernetes, `docker stop` and torchrun send before killing) and SIGINT
(Ctrl-C) only set a flag here (`StopRequest`). The training loop reads it after each step; when it
is set, the loop finishes the step it is in, writes a checkpoint of that step, logs an "event"
record {"event": "preempted"} and raises `Preempted`; `alexnet train` then exits with
exits.STOPPED = 75 (EX_TEMPFAIL of sysexits.h: "a temporary failure; retry later"), so a job
script can tell "preempted, resume me" (75) from "finished" (0), "failed" (1) and "bad command
line" (2). Running the same command again resumes bit-identically (tests/test_faults_training.py).
The first Ctrl-C says so on stderr ("stopping after this step and saving a checkpoint; Ctrl-C
again to abort", written with os.write: a handler may interrupt a print). A second Ctrl-C stops
at once (KeyboardInterrupt, even in the middle of writing that checkpoint: checkpoint.save writes
to a temporary file and renames it, so the previous checkpoint stays valid; `alexnet train` then
exits with exits.ABORTED = 130, 128 + SIGINT as shells report it). "At once" is at the end of the
torch call in progress: Python runs signal handlers only between calls, and two SIGINTs that come
during one long call (the backward pass of AlexNet on a CPU takes seconds) would run the handler
once. So the handlers count the signals themselves, through `signal.set_wakeup_fd`, where Python
writes one byte per signal as it arrives.

Latency. One process: the flag is a host boolean, read after every step (free), so the run stops
after the step in progress. Under torchrun/DDP every rank must stop after the SAME step (they save
one checkpoint together), so the flags are all-reduced (MAX of one int) — but only at steps that
already synchronise (log steps, checkpoint steps) and at the end of every epoch, to keep the step
free of host syncs (docs/ARCHITECTURE.md decision 5): the run stops within `train.log_every` steps
of the signal. A signal that comes in the last step of an epoch, or during the epoch's evaluation,
is acted on after that epoch's evaluation and checkpoint (so a step is never checkpointed twice).
Keep `log_every` × step time well under the grace period of the scheduler (torchrun: 30 s between
its SIGTERM and its SIGKILL; SLURM: `--signal` / KillWait).
"""
from __future__ import annotations

import os
import signal
import threading

import torch

from data_prep import exits

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# What the first signal prints while training ({signal} is its name).
TRAINING = {signal.SIGINT: "stopping after this step and saving a checkpoint; Ctrl-C again to "
                           "abort",
            signal.SIGTERM: "SIGTERM: stopping after this step and saving a checkpoint"}


class Preempted(exits.Stopped, Exception):
    """Training stopped on a signal after writing the checkpoint of `global_step`."""

    def __init__(self, signal_name: str, global_step: int | None):
        where = (f"after step {global_step}; the checkpoint of step {global_step} is written"
                 if global_step is not None else "between two runs; every run done so far is saved")
        super().__init__(f"stopped by {signal_name} {where}: run the same command again to resume "
                         f"(exit status {exits.STOPPED})")
        self.signal_name, self.global_step = signal_name, global_step


class StopRequest:
    """SIGTERM/SIGINT handlers that only record the signal; `restore()` puts the old ones back.

    Handlers can only be installed from the main thread; elsewhere (training started from a worker
    thread) nothing is installed and `requested` stays False. `announce`: {signal: message}
    written to stderr when that signal first arrives (None: silent). DataLoader workers start
    with both signals blocked (data.start_workers); any other process forked after `install`
    inherits the handler and ignores the signal: only the training process acts on it, and
    announces it once.
    """

    def __init__(self, announce: dict | None = None):
        self.signum: int | None = None
        self.sigints = 0          # SIGINTs that reached this process since install()
        self._old: dict = {}
        self._announce = announce or {}
        self._pid = os.getpid()
        self._pipe: tuple[int, int] | None = None
        self._old_wakeup = -1

    def install(self) -> "StopRequest":
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            self._pipe = os.pipe()                       # one byte per signal, as it arrives
            for fd in self._pipe:
                os.set_blocking(fd, False)
            self._old_wakeup = signal.set_wakeup_fd(self._pipe[1], warn_on_full_buffer=False)
            _register_fork_guard()
            _installed.append(self._pipe)
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _count_signals(self):
        """Read the bytes Python wrote for each signal since the last call; count the SIGINTs."""
        while True:
            try:
                arrived = os.read(self._pipe[0], 4096)
            except BlockingIOError:
                return
            if not arrived:
                return
            self.sigints += arrived.count(signal.SIGINT)

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:
            return    # a forked DataLoader worker: it serves batches until the loop shuts it down
        if self._pipe is not None:
            self._count_signals()
        if signum == signal.SIGINT and (self.signum is not None or self.sigints > 1):
            raise KeyboardInterrupt   # a second Ctrl-C: the user wants out now
        first = self.signum is None
        self.signum = signum
        if first and signum in self._announce:   # os.write, not print: it may interrupt a print
            os.write(2, f"\nalexnet: {self._announce[signum]}\n".encode())

    def restore(self):
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}
        if self._pipe is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            _installed.remove(self._pipe)
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "a signal to another rank"

    def agreed(self, world, at_sync_point: bool, device) -> bool:
        """Whether every rank stops now. One process: the local flag, at every step. Distributed:
        False except at sync points (the same steps on every rank), where the flags are
        all-reduced so that all ranks agree. `device`: this rank's output device (NCCL needs
        the rank's own GPU; gloo the CPU)."""
        if not world.distributed:
            return self.requested
        if not at_sync_point:
            return False
        import torch.distributed as dist
        from paper_alexnet.run.distributed import collective_device
        flag = torch.tensor([int(self.requested)],
                            device=collective_device(world, torch.device(device)))
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


_installed: list = []     # the wakeup pipes of this process's StopRequests, newest last


def _register_fork_guard():
    """A child forked without exec (a DataLoader worker) inherits the wakeup pipe: its own signals
    must not count as the training process's. Registered once per process."""
    if not hasattr(os, "register_at_fork") or getattr(_register_fork_guard, "done", False):
        return
    os.register_at_fork(after_in_child=_no_wakeup_in_child)
    _register_fork_guard.done = True


def _no_wakeup_in_child():
    if _installed:
        signal.set_wakeup_fd(-1)
        _installed.clear()
