"""SIGTERM and Ctrl-C in the commands that stop at once (`alexnet prep …`, `alexnet eval`).

A scheduler's SIGTERM (timeout, SLURM, `kill -TERM -- -PGID`) and a terminal's Ctrl-C reach the
whole process group. Inside `stop_at_once()` either signal raises `Interrupted` (a
KeyboardInterrupt) in the main process, which the command reports in one line and exits with
exits.STOPPED = 75, "run the same command again", as a preempted `alexnet train`. Prep keeps its
finished chunks (its files are written to temporary names and renamed, so a stop at any moment
leaves what a SIGKILL would: tests/test_faults_prep.py); eval writes its result only at the end.
Worker pools start with `ignore_ctrl_c`: the main process alone decides, and ends them with
SIGTERM (Pool.terminate), so a Ctrl-C prints no traceback per worker.
"""
from __future__ import annotations

import contextlib
import signal
import threading

from data_prep import exits

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(exits.Stopped, KeyboardInterrupt):
    """SIGTERM or SIGINT arrived; `signal_name` says which."""

    def __init__(self, signal_name: str):
        super().__init__(f"stopped by {signal_name}")
        self.signal_name = signal_name


def _raise(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_at_once():
    """SIGTERM and SIGINT raise Interrupted inside (handlers can only be set in the main
    thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def ignore_ctrl_c():
    """Pool initializer: workers ignore Ctrl-C (their pool's process ends them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
