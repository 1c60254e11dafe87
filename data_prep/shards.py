"""§2 prepared data on disk: the format of one split directory, its writer and its reader.

A split directory (ROOT/train, ROOT/val, ROOT/test) holds:

    shard-00000.bin …   records back to back: JPEG bytes ("jpeg") or H·W·C raw uint8 ("raw")
    index.npz           shard (int32), offset (int64), length (int64), label (int64), name (str)
    classes.tsv         "index<TAB>wnid<TAB>name" per class; class index = position in this file
    stats.npz           train only (written by data_prep.stats): mean image, RGB covariance, PCA
    manifest.json       written LAST, atomically: its presence means the split is complete

Writer (used by `data_prep.imagenet` and by `data_prep.small` for CIFAR-10 / Fashion-MNIST):

    from data_prep.shards import write_split
    write_split(out_dir, items, encoding="raw", image_shape=(32, 32, 3),
                classes=[("airplane", "airplane"), ...], prep_params={"source": "cifar10"},
                compute_stats=True)   # train split: also stats.npz (mean image, PCA)

`items` yields (payload, label) or (payload, label, name); payload is JPEG bytes for "jpeg", or a
uint8 array of exactly `image_shape` (H, W, C with C = 1 or 3) for "raw". For incremental writing
use `ShardWriter` directly: `w = ShardWriter(out_dir, encoding, image_shape, classes)`,
`w.add(payload, label, name)`, then `w.finish(prep_params, anomalies, extra_files)`.

Reader: `PreparedSplit(path)`; picklable, opens shard files lazily per process and reads with
os.pread (no shared file position), so DataLoader worker processes can share one instance.
"""
from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np

from data_prep import exits, stats
from data_prep.files import AtomicFile, npz_bytes, sha256_file, write_atomic

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX = "index.npz"
CLASSES = "classes.tsv"
STATS = stats.STATS
ENCODINGS = ("jpeg", "raw")
DEFAULT_SHARD_BYTES = 1 << 30  # "a few large files": ~37 for ILSVRC-2012 train at q95


class FormatError(exits.Failure):
    """A prepared split directory is missing, incomplete, or does not match its manifest."""


class WrittenOnce(exits.UsageError):
    """§2 prepared data is written once (docs/ARCHITECTURE.md decision 4): the output already holds
    a split made from other inputs or options, or files that are not a prepared split, which this
    prep would replace. Nothing was changed; the message names the folder and the way out."""


# What a writer leaves in a split directory, finished or not (anything else is someone's data).
OWN_NAMES = (MANIFEST, INDEX, CLASSES, STATS, "sources.npz", ".parts")


def _own(name: str) -> bool:
    base = name.removesuffix(".tmp")
    if base != name:      # AtomicFile's ".NAME.tmp", or "NAME.tmp" of an older writer
        base = base.removeprefix(".")
    return base in OWN_NAMES or (base.startswith("shard-") and base.endswith(".bin"))


def made_from(manifest: dict) -> str:
    """'50,000 images from cifar10': what a prepared split holds, in a few words."""
    source = manifest.get("prep", {}).get("source")
    if isinstance(source, dict):
        source = " ".join(str(source[k]) for k in ("layout", "input") if source.get(k))
    return f"{manifest.get('count', 0):,} images" + (f" from {source}" if source else "")


def existing_split(out_dir, same) -> dict | None:
    """Whether a prep may write the split `out_dir` (checked before it writes anything): None when
    nothing complete is there (write it, or finish an interrupted write); the manifest when a
    complete split is there and `same(manifest)` says it was made from the same inputs and options
    (leave it as it is). WrittenOnce when it holds a split made from other inputs or options, or
    files that are not ours."""
    out_dir = os.fspath(out_dir)
    if not os.path.isdir(out_dir):
        if os.path.exists(out_dir):
            raise WrittenOnce(f"{out_dir} exists and is not a folder: choose another --out")
        return None
    if os.path.exists(os.path.join(out_dir, MANIFEST)):
        try:
            manifest = read_manifest(out_dir)
        except FormatError as e:
            raise WrittenOnce(f"{out_dir} holds a damaged prepared split ({e}); delete it and "
                              f"run the same command again") from None
        if same(manifest):
            return manifest
        raise WrittenOnce(f"{out_dir} already holds a prepared split made from other inputs or "
                          f"options ({made_from(manifest)}); prepared data is written once: "
                          f"choose another --out, or delete {out_dir} to replace it")
    foreign = sorted(n for n in os.listdir(out_dir) if not _own(n))
    if foreign:
        raise WrittenOnce(f"{out_dir} holds files that are not a prepared split ({foreign[0]}"
                          f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}): "
                          f"choose another --out")
    return None


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.bin"


def classes_tsv(classes) -> bytes:
    lines = []
    for i, (wnid, name) in enumerate(classes):
        if "\t" in wnid or "\n" in wnid or "\t" in name or "\n" in name:
            raise ValueError(f"class {i} ({wnid!r}, {name!r}) contains a tab or newline")
        lines.append(f"{i}\t{wnid}\t{name}\n")
    return "".join(lines).encode("utf-8")


def check_image_shape(encoding: str, image_shape) -> tuple[int, int, int]:
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r} is not one of {ENCODINGS}")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape) < 1:
        raise ValueError(f"image_shape {image_shape!r} must be (H, W, C) with C = 1 or 3")
    return shape


class ShardWriter:
    """Appends records to shard files in order; `finish` writes index, classes and manifest.

    Shards are written as AtomicFiles (.shard-XXXXX.bin.tmp) and renamed when full, so a killed
    writer leaves no file with a final name that is incomplete; re-running the writer rewrites everything.
    """

    def __init__(self, out_dir, encoding, image_shape, classes, shard_bytes=DEFAULT_SHARD_BYTES):
        self.out_dir = os.fspath(out_dir)
        self.image_shape = check_image_shape(encoding, image_shape)
        self.encoding = encoding
        self.classes = [(str(w), str(n)) for w, n in classes]
        self.shard_bytes = int(shard_bytes)
        os.makedirs(self.out_dir, exist_ok=True)
        if os.path.exists(os.path.join(self.out_dir, MANIFEST)):   # written once: never replaced
            raise WrittenOnce(f"{self.out_dir} already holds a complete prepared split; prepared "
                              f"data is written once: write elsewhere, or delete it first")
        for f in os.listdir(self.out_dir):  # shards of an earlier, abandoned write
            if f.startswith(("shard-", ".shard-")) and f.endswith((".bin", ".bin.tmp")):
                os.remove(os.path.join(self.out_dir, f))
        self.shard, self.offset, self.length, self.label, self.name = [], [], [], [], []
        self.shards = []  # finished: dict(file, count, bytes, sha256)
        self._file = None
        self._hash = None
        self._pos = 0
        self._count = 0

    def add(self, payload, label: int, name: str = "") -> None:
        if self.encoding == "raw":
            arr = np.asarray(payload)
            if arr.dtype != np.uint8 or arr.shape != self.image_shape:
                raise ValueError(f"raw record {name or len(self.label)}: got {arr.dtype} "
                                 f"{arr.shape}, the split holds uint8 {self.image_shape}")
            data = np.ascontiguousarray(arr).tobytes()
        else:
            data = bytes(payload)
        if not 0 <= int(label) < len(self.classes):
            raise ValueError(f"record {name or len(self.label)}: label {label} outside "
                             f"[0, {len(self.classes)})")
        if self._file is not None and self._pos + len(data) > self.shard_bytes and self._pos:
            self._close_shard()
        if self._file is None:
            path = os.path.join(self.out_dir, shard_name(len(self.shards)))
            self._file, self._hash, self._pos, self._count = AtomicFile(path), hashlib.sha256(), 0, 0
        self._file.file.write(data)
        self._hash.update(data)
        self.shard.append(len(self.shards))
        self.offset.append(self._pos)
        self.length.append(len(data))
        self.label.append(int(label))
        self.name.append(str(name))
        self._pos += len(data)
        self._count += 1

    def _close_shard(self) -> None:
        self._file.commit()
        self.shards.append(dict(file=shard_name(len(self.shards)), count=self._count,
                                bytes=self._pos, sha256=self._hash.hexdigest()))
        self._file = None

    def abort(self) -> None:
        """Close and remove the shard being written (after an error such as a full disk)."""
        if self._file is not None:
            self._file.discard()
            self._file = None

    def finish(self, prep_params=None, anomalies=(), extra_files=()) -> dict:
        """Close the last shard, write index.npz, classes.tsv, then manifest.json (last).

        extra_files: names of files already written in out_dir (e.g. stats.npz) whose sha256 the
        manifest should record so that `verify` checks them too.
        """
        if self._file is not None:
            self._close_shard()
        label = np.asarray(self.label, dtype=np.int64)
        index = npz_bytes(shard=np.asarray(self.shard, dtype=np.int32),
                          offset=np.asarray(self.offset, dtype=np.int64),
                          length=np.asarray(self.length, dtype=np.int64), label=label,
                          name=np.asarray(self.name, dtype=str))
        write_atomic(os.path.join(self.out_dir, INDEX), index)
        write_atomic(os.path.join(self.out_dir, CLASSES), classes_tsv(self.classes))
        files = {INDEX: hashlib.sha256(index).hexdigest(),
                 CLASSES: hashlib.sha256(classes_tsv(self.classes)).hexdigest()}
        for extra in extra_files:
            files[extra] = sha256_file(os.path.join(self.out_dir, extra))
        hist = np.bincount(label, minlength=len(self.classes)) if len(label) else \
            np.zeros(len(self.classes), dtype=np.int64)
        manifest = dict(format_version=FORMAT_VERSION, encoding=self.encoding,
                        image_shape=list(self.image_shape), count=len(self.label),
                        num_classes=len(self.classes), per_class=[int(c) for c in hist],
                        shards=self.shards, files=files, prep=dict(prep_params or {}),
                        anomalies=list(anomalies))
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        write_atomic(os.path.join(self.out_dir, MANIFEST), text.encode("utf-8"))
        return manifest


def write_split(out_dir, items, *, encoding, image_shape, classes, prep_params=None,
                anomalies=(), shard_bytes=DEFAULT_SHARD_BYTES, compute_stats=False) -> dict:
    """Write a whole split from an iterable of (payload, label[, name]); returns the manifest.

    compute_stats=True (for a train split) also writes stats.npz (data_prep.stats: mean image,
    channel covariance and its eigen-decomposition, over the stored pixels) and checksums it.
    """
    writer = ShardWriter(out_dir, encoding, image_shape, classes, shard_bytes)
    acc = stats.empty(writer.image_shape) if compute_stats else None
    try:
        for item in items:
            writer.add(*item)
            if acc is not None:
                stats.accumulate(acc, np.asarray(item[0]) if encoding == "raw" else
                                 _decode(item[0], writer.image_shape))
        if acc is not None:
            stats.save(writer.out_dir, acc)
    except BaseException:
        writer.abort()
        raise
    return writer.finish(prep_params, anomalies, [STATS] if acc is not None else [])


def _decode(data: bytes, image_shape) -> np.ndarray:
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im.convert("RGB" if image_shape[2] == 3 else "L"))
    return arr.reshape(image_shape)


def read_manifest(path) -> dict:
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FormatError(f"prepared dataset at {path} does not exist: run 'alexnet prep ...' "
                          f"to create it")
    mpath = os.path.join(path, MANIFEST)
    if not os.path.exists(mpath):
        raise FormatError(f"prepared dataset at {path} has no {MANIFEST}: was prep interrupted? "
                          f"re-run the same 'alexnet prep ...' command to finish it")
    try:
        with open(mpath, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{mpath} is not valid JSON ({e}): re-run 'alexnet prep ...'") from e
    if manifest.get("format_version") != FORMAT_VERSION:
        raise FormatError(f"{mpath} has format_version {manifest.get('format_version')!r}, this "
                          f"code reads {FORMAT_VERSION}: re-run 'alexnet prep ...'")
    names = [s.get("file") for s in manifest.get("shards", [])] + list(manifest.get("files", {}))
    for name in names:  # plain names inside the split only: never read (or hash) files elsewhere
        if not isinstance(name, str) or name in ("", ".", "..") or os.path.basename(name) != name \
                or "\\" in name:
            raise FormatError(f"{mpath} names the file {name!r}, which escapes {path}: the "
                              f"manifest is damaged or was tampered with; re-run 'alexnet prep'")
    return manifest


def read_classes(path) -> list[tuple[str, str]]:
    cpath = os.path.join(os.fspath(path), CLASSES)
    out = []
    with open(cpath, encoding="utf-8") as f:
        for i, line in enumerate(f):
            idx, wnid, name = line.rstrip("\n").split("\t")
            if int(idx) != i:
                raise FormatError(f"{cpath} line {i + 1}: index {idx}, expected {i}")
            out.append((wnid, name))
    return out


class PreparedSplit:
    """One prepared split: len, .labels, .classes, .encoding, .image_shape, .read(i), .image(i)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.manifest = read_manifest(self.path)
        ipath = os.path.join(self.path, INDEX)
        try:
            with np.load(ipath, allow_pickle=False) as z:
                self._shard = z["shard"]
                self._offset = z["offset"]
                self._length = z["length"]
                self.labels = z["label"].astype(np.int64)
                self.names = z["name"]
        except (OSError, KeyError, ValueError) as e:
            raise FormatError(f"prepared dataset at {self.path}: cannot read {INDEX} ({e}); "
                              f"run 'alexnet prep verify {self.path}'") from e
        if len(self.labels) != self.manifest["count"]:
            raise FormatError(f"prepared dataset at {self.path}: {INDEX} has {len(self.labels)} "
                              f"records, manifest says {self.manifest['count']}; run "
                              f"'alexnet prep verify {self.path}'")
        self.classes = read_classes(self.path)
        self.encoding = self.manifest["encoding"]
        self.image_shape = tuple(self.manifest["image_shape"])
        self._files = [os.path.join(self.path, s["file"]) for s in self.manifest["shards"]]
        self._fds = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fds"], state["_pid"] = {}, None  # descriptors never cross a process boundary
        return state

    def _fd(self, k: int) -> int:
        if self._pid != os.getpid():  # forked or unpickled: open our own descriptors
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(k)
        if fd is None:
            try:
                fd = os.open(self._files[k], os.O_RDONLY)
            except FileNotFoundError as e:
                raise FormatError(f"prepared dataset at {self.path}: shard {self._files[k]} is "
                                  f"missing; run 'alexnet prep verify {self.path}'") from e
            self._fds[k] = fd
        return fd

    def read(self, i: int) -> bytes:
        """The stored bytes of record i (JPEG file or raw H·W·C uint8)."""
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} outside a split of {len(self)}")
        k, off, n = int(self._shard[i]), int(self._offset[i]), int(self._length[i])
        data = os.pread(self._fd(k), n, off)
        if len(data) != n:
            raise FormatError(f"prepared dataset at {self.path}: record {i} wants {n} bytes at "
                              f"{off} of {self._files[k]}, got {len(data)} (file truncated?); "
                              f"run 'alexnet prep verify {self.path}'")
        return data

    def image(self, i: int) -> np.ndarray:
        """Record i as uint8 (H, W, C)."""
        data = self.read(i)
        if self.encoding == "raw":
            return np.frombuffer(data, dtype=np.uint8).reshape(self.image_shape)
        return _decode(data, self.image_shape)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self):
        if getattr(self, "_pid", None) == os.getpid():
            self.close()
