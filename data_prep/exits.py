"""The exit status of every command, and the one map from an exception to it (docs/ARCHITECTURE.md
decision 8). Library code raises and never exits; each command's `main` hands its work to `run`,
which prints what went wrong as one line on stderr, "PROG: message[; hint]", and returns:

    0    DONE     the work is done
    1    FAILED   it failed (data, a checkpoint or a run not as it must be; a full disk): Failure,
                  OSError, and the command's own `failures`
    2    USAGE    it cannot start as given, and nothing was written: UsageError, and `usage`
    75   STOPPED  a signal stopped it; what was finished is kept: run the same command again
                  (sysexits.h EX_TEMPFAIL): Stopped
    130  ABORTED  a second Ctrl-C (128 + SIGINT): KeyboardInterrupt

An exception the map does not know (a bug) keeps its traceback. This module is the lowest of the
project (standard library only), so that every package's errors can say which kind they are.
"""
from __future__ import annotations

import sys
from typing import Callable

DONE, FAILED, USAGE, STOPPED, ABORTED = 0, 1, 2, 75, 130


class UsageError(Exception):
    """The command cannot start as given (a value, a path, data that does not fit); nothing was
    written. Exit 2."""


class Failure(Exception):
    """The work failed in a way the message explains (bad data, a damaged checkpoint, a run that
    diverged). Exit 1."""


class InputError(Failure):
    """The input directory does not hold a layout we know, or its labels are inconsistent. Exit 1."""


class Stopped:
    """A signal stopped the work; what was finished is kept. Exit 75. A mixin, not an Exception:
    a stop by Ctrl-C stays a KeyboardInterrupt, which `except Exception` does not swallow."""


def status(err: BaseException, usage=(), failures=()) -> int | None:
    """The exit status of `err`; None for an exception the map does not know."""
    if isinstance(err, (UsageError, *usage)):
        return USAGE
    if isinstance(err, Stopped):
        return STOPPED
    if isinstance(err, KeyboardInterrupt):
        return ABORTED
    if isinstance(err, (Failure, OSError, *failures)):
        return FAILED
    return None


def run(prog: str, work: Callable[[], int | None], *, usage=(), failures=(), hints=None,
        quiet=(), aborted: str = "aborted by Ctrl-C") -> int:
    """`work()`'s own status (None = DONE), or the status of what it raised (`status`), printed as
    "PROG: message; hint" on stderr. `hints`: {exception class: text, or a function giving it},
    the first that matches adds its text; `quiet`: exception classes reported by their status
    alone, without a line (what another process reports); `aborted`: the line's text for a
    KeyboardInterrupt (a command whose first Ctrl-C stops cleanly names the second)."""
    try:
        return work() or DONE
    except BaseException as err:       # noqa: B036 -- Ctrl-C has a status too
        code = status(err, usage, failures)
        if code is None:
            raise
        text = str(err) or (aborted if code == ABORTED else type(err).__name__)
        hint = next((h for cls, h in (hints or {}).items() if isinstance(err, cls)), None)
        hint = hint() if callable(hint) else hint
        if not isinstance(err, tuple(quiet)):
            print(f"{prog}: {text}" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return code
