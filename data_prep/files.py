"""§2 prepared data, written once: the file primitives every writer uses (shards, stats, the
resumable chunks of the pipeline; paper_alexnet's checkpoints, metrics and results and the
experiments' records use AtomicFile too), and the checks that an input exists and an output path can be
written, which every `alexnet` verb makes before it starts. The lowest module of data_prep: it imports nothing of
ours."""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np


class AtomicFile:
    """A file that gets its name only when it is complete: written under a hidden temporary name
    beside it (".NAME.tmp"); `commit()` fsyncs it, renames it (atomic on POSIX) and fsyncs the
    folder, so that after a crash or a power cut the name holds the whole file or what it held
    before. `discard()` removes the temporary file. As a `with` block: commits when the block ends,
    discards on any exception (a second Ctrl-C, KeyboardInterrupt, included), so an abandoned
    write leaves nothing behind. `.file` is the open temporary file."""

    def __init__(self, path, mode: str = "wb"):
        self.path = os.fspath(path)
        folder, name = os.path.split(self.path)
        self.tmp = os.path.join(folder, f".{name}.tmp")
        self.file = open(self.tmp, mode)

    def commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())   # the bytes are on disk before the name points at them
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        fsync_dir(os.path.dirname(self.path))   # and the rename itself survives a power cut

    def discard(self) -> None:
        self.file.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def write_atomic(path, data: bytes) -> None:
    """Write `data` as the whole of `path` through an AtomicFile: a reader never sees a
    half-written file."""
    with AtomicFile(path) as out:
        out.file.write(data)


def fsync_dir(folder) -> None:
    fd = os.open(os.fspath(folder) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path, block: int = 1 << 22) -> str:
    """The SHA-256 of a file's bytes, read in blocks (a checkpoint is hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # not compressed: deterministic bytes, and no pickled objects
    return buf.getvalue()


def output_problem(path, what: str = "folder") -> str | None:
    """Why `path` cannot be written as an output `what` ("folder" or "file"), or None when it can:
    checked before any work, so that a bad output path costs nothing and changes nothing. The path
    must not be (or lie under) an existing file, and its nearest existing folder must be
    writable: a real probe file is created there and removed (permission bits say nothing to root,
    nor to a read-only or full mount), and an existing output file must open for writing."""
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
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".alexnet-probe-")
        os.close(fd)
        os.remove(name)
    except OSError as err:
        return f"{probe} is not writable ({err.strerror or err})"
    if what == "file" and os.path.isfile(path):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))   # opened, not changed
        except OSError as err:
            return f"{path} is not writable ({err.strerror or err})"
    return None


def _prepared_split(folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, n)) for n in ("manifest.json", "index.npz"))


def _run_dir(folder: str) -> bool:
    """A run directory of `alexnet train` (docs/ARCHITECTURE.md, "A run directory")."""
    return os.path.isfile(os.path.join(folder, "config.yaml")) and (
        os.path.isdir(os.path.join(folder, "checkpoints"))
        or os.path.isfile(os.path.join(folder, "metrics.jsonl")))


def overlap_problem(path, flag: str, inputs=(), itself=(), runs: bool = True) -> str | None:
    """Why writing the output `path` (given as `flag`) would write into something else, or None:
    into one of `inputs` ((flag, path) pairs being read), into a prepared split or dataset, or,
    with `runs`, into a run directory. `itself`: what `path` itself may already be, because the
    command continues it: "dataset" (a prep re-run on its ROOT), "run" (a resumed run). Checked
    before any work, like output_problem: a dataset nested in a split, shards written into raw
    images, a run inside a dataset all look fine until something reads them."""
    path = os.path.realpath(os.fspath(path))
    for in_flag, source in inputs:
        source = os.path.realpath(os.fspath(source))
        if path == source or path.startswith(source.rstrip(os.sep) + os.sep):
            where = "is" if path == source else "is inside"
            return f"{flag} {path} {where} {in_flag} {source}, which it reads: write elsewhere"
    folder = path
    while True:
        own = folder == path
        if _prepared_split(folder):
            return (f"{flag} {path} {'is' if own else 'is inside'} the prepared split {folder}: "
                    f"write outside any prepared dataset")
        if _prepared_split(os.path.join(folder, "train")) and not (own and "dataset" in itself):
            return (f"{flag} {path} {'is' if own else 'is inside'} the prepared dataset {folder}: "
                    f"write outside it")
        if runs and _run_dir(folder) and not (own and "run" in itself):
            return (f"{flag} {path} {'is' if own else 'is inside'} the run directory {folder}: "
                    f"write outside it")
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


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
        problem = input_problem(path)
        if problem:
            return f"{flag} {path}: {problem}: name the folder holding the data"
    problem = output_problem(out)
    return f"--out {out}: {problem}: choose another folder" if problem else None


# Raw inputs that `alexnet prep` turns into a prepared ROOT: file name pattern -> the prep verb.
# Image files are "images" (class folders of any dataset) unless they are in the ILSVRC layout.
RAW_INPUTS = ((".jpeg", "images"), (".jpg", "images"), (".png", "images"), (".tar", "imagenet"),
              ("data_batch_1", "cifar10"), ("cifar-10-python.tar.gz", "cifar10"),
              ("train-images-idx3-ubyte", "fashion-mnist"))
WNID = re.compile(r"n\d{8}")        # ILSVRC class folders (n01440764) and file names


def _ilsvrc_layout(path: Path) -> bool:
    """An image of the ILSVRC layout: in a wnid folder, or named as ILSVRC names its files."""
    return bool(WNID.fullmatch(path.parent.name) or WNID.match(path.name)
                or path.name.startswith("ILSVRC"))


def raw_example(root) -> tuple[Path, str] | None:
    """(a raw input file, its prep verb) within three levels of `root` (ROOT/train/<wnid>/x.JPEG),
    looking at a few hundred entries at most (an ImageNet folder holds 1.3 M files); hidden
    folders (an unfinished prep's .parts) are not looked into. Used where a prepared split was
    expected, to say which `alexnet prep` verb the folder needs."""
    folders, seen = [(Path(root), 0)], 0
    while folders and seen < 500:
        folder, depth = folders.pop(0)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)[:100]
        except OSError:
            continue
        for entry in entries:
            seen += 1
            name = entry.name.lower()
            if entry.is_dir():
                if depth < 2 and not entry.name.startswith("."):
                    folders.append((Path(entry.path), depth + 1))
                continue
            verb = next((v for p, v in RAW_INPUTS if name.endswith(p) or name.startswith(p)), None)
            if verb == "images" and _ilsvrc_layout(Path(entry.path)):
                verb = "imagenet"
            if verb is not None:
                return Path(entry.path), verb
    return None
