"""§2 "done once" is long on ILSVRC-2012: progress of a preparation, with rate and ETA."""
from __future__ import annotations

import math
import sys
import time


def seconds_left(remaining: float, done: float, seconds: float) -> float:
    """Seconds left for `remaining` units at the mean rate of `done` units in `seconds`; inf
    (printed "?") before anything is done. The one ETA of every progress line."""
    if done <= 0:
        return math.inf
    return remaining * seconds / done


class Progress:
    """Rate and ETA: a bar redrawn in place on a terminal, a line every `every` s otherwise."""

    def __init__(self, total: int, label: str, done: int = 0, every: float = 10.0, stream=None):
        self.total, self.label, self.done, self.every = total, label, done, every
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start, self.start_done, self.last = time.monotonic(), done, 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if not self.tty and now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        seconds = max(now - self.start, 1e-9)
        rate = (self.done - self.start_done) / seconds
        left = seconds_left(self.total - self.done, self.done - self.start_done, seconds)
        eta_s = time.strftime("%H:%M:%S", time.gmtime(left)) if math.isfinite(left) else "?"
        frac = self.done / max(self.total, 1)
        text = f"{self.label}: {self.done}/{self.total} images, {rate:.0f} img/s, ETA {eta_s}"
        if self.tty:
            bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
            end = "\n" if self.done >= self.total else ""
            self.stream.write(f"\r[{bar}] {text}{end}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
