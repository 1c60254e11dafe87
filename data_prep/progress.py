"""§2 "done once" is long on ILSVRC-2012: progress of a preparation, with rate and ETA."""
from __future__ import annotations

import sys
import time


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
        rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta != float("inf") else "?"
        frac = self.done / max(self.total, 1)
        text = f"{self.label}: {self.done}/{self.total} images, {rate:.0f} img/s, ETA {eta_s}"
        if self.tty:
            bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
            end = "\n" if self.done >= self.total else ""
            self.stream.write(f"\r[{bar}] {text}{end}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
