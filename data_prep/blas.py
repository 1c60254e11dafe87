"""§2 "done once" at full speed: prep runs one process per core (data_prep.pipeline), so numpy's
BLAS must not start threads of its own. The area resize (data_prep.resize) and the statistics
(data_prep.stats) multiply small matrices; OpenBLAS then wakes a thread per core, and those
threads spin on the cores the other workers need. Measured on 2 cores: 8.7 ms of CPU per image for
the area resize with OpenBLAS's default threads, 1.7 ms with one thread.

`one_thread()` asks numpy's own OpenBLAS (the library its wheels bundle in numpy.libs) for one
thread while a block of work runs, and restores the previous count after it. Where numpy uses
another BLAS (a distribution's, Accelerate, MKL) nothing is changed: set OPENBLAS_NUM_THREADS=1
(or MKL_NUM_THREADS=1) in the environment instead.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os

import numpy as np

_NAMES = ("scipy_openblas_{}_num_threads64_", "scipy_openblas_{}_num_threads",
          "openblas_{}_num_threads64_", "openblas_{}_num_threads")


@functools.lru_cache(maxsize=1)
def _openblas():
    """(get, set) thread-count functions of numpy's bundled OpenBLAS, or None."""
    folder = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)  # already loaded by numpy: this returns the same library
        except OSError:
            continue
        for name in _NAMES:
            get, set_ = (getattr(lib, name.format(v), None) for v in ("get", "set"))
            if get is not None and set_ is not None:
                return get, set_
    return None


@contextlib.contextmanager
def one_thread():
    """numpy's OpenBLAS runs on one thread inside the block (unchanged if it cannot be told)."""
    blas = _openblas()
    if blas is None:
        yield
        return
    get, set_ = blas
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)
