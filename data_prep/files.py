"""§2 prepared data, written once: the file primitives every writer uses (shards, stats, the
resumable chunks of the pipeline), and the checks that an input exists and an output path can be
written, which every `alexnet` verb makes before it starts. The lowest module of data_prep: it imports nothing of
ours."""
from __future__ import annotations

import io
import os

import numpy as np


def write_atomic(path: str, data: bytes) -> None:
    """Write to path.tmp, fsync, rename: a reader never sees a half-written file."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # not compressed: deterministic bytes, and no pickled objects
    return buf.getvalue()


def output_problem(path, what: str = "folder") -> str | None:
    """Why `path` cannot be written as an output `what` ("folder" or "file"), or None when it can:
    checked before any work, so that a bad output path costs nothing and changes nothing. The path
    must not be (or lie under) an existing file, and its nearest existing folder must be
    writable."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path) and what == "file":
        return f"{path} is a folder, not a file"
    if os.path.exists(path) and not os.path.isdir(path) and what == "folder":
        return f"{path} exists and is not a folder"
    probe = path if os.path.isdir(path) else os.path.dirname(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return f"{probe} is a file, so nothing can be written under it"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def input_problem(path) -> str | None:
    """Why `path` cannot be read as an input (it does not exist), or None: checked with the output
    before any work, so that a mistyped --input is a bad command line (exit 2) like a mistyped
    --data."""
    if not os.path.exists(path):
        return f"{os.path.abspath(os.fspath(path))} does not exist"
    return None


def paths_problem(inputs, out) -> str | None:
    """What is wrong with a prep verb's inputs ((flag, path) pairs) and --out, in the words of the
    command line, or None: checked before any work (exit 2)."""
    for flag, path in inputs:
        if input_problem(path):
            return f"{flag} {path}: {input_problem(path)}: name the folder holding the data"
    if output_problem(out):
        return f"--out {out}: {output_problem(out)}: choose another folder"
    return None
