"""docs/ARCHITECTURE.md decision 4: prepared data is verifiable. Re-check a split (or a ROOT of
splits) against its manifest: files present, sizes and sha256, index consistent with the shards,
counts and per-class histogram, labels in range, and (with decode=True) that every record decodes to
its shape.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from data_prep.files import raw_example, sha256_file
from data_prep.shards import INDEX, MANIFEST, FormatError, PreparedSplit, read_manifest

SPLITS = ("train", "val", "test")


def find_splits(path: str) -> list[str]:
    """A split directory itself, or the split directories of a ROOT."""
    path = os.fspath(path)
    if os.path.exists(os.path.join(path, MANIFEST)) or os.path.exists(os.path.join(path, INDEX)):
        return [path]
    found = [os.path.join(path, s) for s in SPLITS if os.path.isdir(os.path.join(path, s))]
    return found or [path]  # let verify_split say what is missing


def verify_split(path: str, decode: bool = False) -> list[str]:
    """Every problem found, each naming the file and what is wrong; [] when all is well."""
    raw = None if os.path.exists(os.path.join(path, MANIFEST)) else raw_example(path)
    if raw:
        return [f"{path} holds raw images or archives ({raw[0]}), not a prepared split: prepare "
                f"them first ('alexnet prep {raw[1]} --input DATASET --out ROOT'), then verify "
                f"ROOT"]
    try:
        manifest = read_manifest(path)
    except FormatError as e:
        return [str(e)]
    problems = file_problems(path, manifest)
    if problems:
        return problems
    try:
        split = PreparedSplit(path)
    except (FormatError, OSError, ValueError) as e:
        return [str(e)]
    problems = index_problems(path, manifest, split)
    if decode and not problems:
        problems = decode_problems(path, split)
    split.close()
    return problems


def file_problems(path: str, manifest: dict) -> list[str]:
    """Each shard and each other listed file: present, of its size, of its SHA-256."""
    problems = []
    for entry in manifest["shards"]:
        file = os.path.join(path, entry["file"])
        if not os.path.exists(file):
            problems.append(f"{file}: missing (manifest lists {entry['count']} records in it)")
            continue
        size = os.path.getsize(file)
        if size != entry["bytes"]:
            problems.append(f"{file}: {size} bytes, manifest says {entry['bytes']}")
        elif sha256_file(file) != entry["sha256"]:
            problems.append(f"{file}: sha256 differs from the manifest (corrupted)")
    for name, digest in manifest["files"].items():
        file = os.path.join(path, name)
        if not os.path.exists(file):
            problems.append(f"{file}: missing")
        elif sha256_file(file) != digest:
            problems.append(f"{file}: sha256 differs from the manifest (corrupted)")
    return problems


def index_problems(path: str, manifest: dict, split: PreparedSplit) -> list[str]:
    """The index against the manifest: records per shard, offsets that tile each shard, shard
    numbers, labels and their histogram, the class count, raw record sizes."""
    problems, shards = [], manifest["shards"]
    shard, offset, length = split._shard, split._offset, split._length
    for k, entry in enumerate(shards):
        sel = shard == k
        if int(sel.sum()) != entry["count"]:
            problems.append(f"{path}/{INDEX}: {int(sel.sum())} records in {entry['file']}, "
                            f"manifest says {entry['count']}")
            continue
        ends = np.cumsum(length[sel])
        starts = np.concatenate([[0], ends[:-1]]) if len(ends) else ends
        if not np.array_equal(offset[sel], starts) or (len(ends) and ends[-1] != entry["bytes"]):
            problems.append(f"{path}/{INDEX}: offsets of {entry['file']} do not tile the file")
    if len(shard) and (shard.min() < 0 or shard.max() >= len(shards)):
        problems.append(f"{path}/{INDEX}: shard numbers outside 0..{len(shards) - 1}")
    labels = split.labels
    if len(labels) and (labels.min() < 0 or labels.max() >= len(split.classes)):
        problems.append(f"{path}/{INDEX}: labels outside 0..{len(split.classes) - 1}")
    elif list(np.bincount(labels, minlength=len(split.classes))) != manifest["per_class"]:
        problems.append(f"{path}/{INDEX}: per-class histogram differs from the manifest")
    if len(split.classes) != manifest["num_classes"]:
        problems.append(f"{path}: {len(split.classes)} classes, manifest says "
                        f"{manifest['num_classes']}")
    if split.encoding == "raw" and np.any(length != int(np.prod(split.image_shape))):
        problems.append(f"{path}/{INDEX}: raw records must be "
                        f"{int(np.prod(split.image_shape))} bytes each")
    return problems


def decode_problems(path: str, split: PreparedSplit) -> list[str]:
    """Every record decoded: one problem per record that fails or has the wrong shape."""
    problems = []
    for i in range(len(split)):
        try:
            if split.image(i).shape != split.image_shape:
                problems.append(f"{path}: record {i} ({split.names[i]}) has the wrong shape")
        except (OSError, ValueError) as e:
            problems.append(f"{path}: record {i} ({split.names[i]}) does not decode: {e}")
    return problems


def verify(path: str, decode: bool = False) -> dict:
    """{split directory: [problems]} for a split or a ROOT."""
    return {p: verify_split(p, decode) for p in find_splits(path)}


def digest_tree(path: str) -> str:
    """One sha256 over every file under path (names and bytes): used to compare two preps."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            h.update(os.path.relpath(full, path).encode() + b"\0" + sha256_file(full).encode())
    return h.hexdigest()
