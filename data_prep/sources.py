"""§2 "done once", and nothing silently wrong: what each prepared record was made from.

- stamp: (size, modification time) of an input file when it was read; a resumed prep compares
  them and refuses to reuse work made from files that have changed since (data_prep.pipeline).
- digest: a 128-bit BLAKE2b of an input file's bytes (about 0.1 ms for a 110 kB JPEG). Identical
  files under two names, within a split or across splits (train vs val), are reported as
  "duplicate" anomalies in the manifest; both are kept. The digests of a split's records are
  stored in its sources.npz (name, digest), so a later split can be compared with it.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from data_prep.files import npz_bytes, write_atomic

SOURCES = "sources.npz"


def stamp(path: str) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of an input file."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def first_change(items, stamps) -> str | None:
    """The first of (name, label, (path, ...)) items whose file no longer has its recorded stamp
    ((N, 2) array, or None when none was recorded), said in words; None if all are unchanged."""
    now = {}
    for i, (name, _, (path, *_)) in enumerate(items):
        if path not in now:
            try:
                now[path] = stamp(path)
            except FileNotFoundError:
                now[path] = None
        then = None if stamps is None else (int(stamps[i][0]), int(stamps[i][1]))
        if then != now[path]:
            return (f"input {path} ({name}) changed (then {describe(then)}, "
                    f"now {describe(now[path])})")
    return None


def describe(st) -> str:
    return "not recorded or missing" if st is None else f"{st[0]} bytes, mtime {st[1]} ns"


def save(split_dir: str, metas) -> None:
    """sources.npz: name and digest of every record, in record order."""
    write_atomic(os.path.join(split_dir, SOURCES), npz_bytes(
        name=np.asarray([str(n) for m in metas for n in m["name"]], dtype=str),
        digest=np.concatenate([m["digest"] for m in metas]).reshape(-1, 16)))


def earlier_digests(split_dirs) -> dict:
    """{digest: "split/name"} over the records of already prepared splits (their sources.npz)."""
    known = {}
    for d in split_dirs:
        path = os.path.join(d, SOURCES)
        if os.path.exists(path):
            split = os.path.basename(os.path.normpath(d))
            with np.load(path, allow_pickle=False) as z:
                for dig, name in zip(z["digest"], z["name"]):
                    known.setdefault(dig.tobytes(), f"{split}/{name}")
    return known


def duplicates(metas, known: dict) -> list[dict]:
    """A "duplicate" anomaly for every record whose file bytes equal those of an earlier record
    of the split or of a file in `known` (records in order: the first one is never listed)."""
    seen, out = dict(known), []
    for meta in metas:
        for dig, name in zip(meta["digest"], meta["name"]):
            first = seen.setdefault(dig.tobytes(), str(name))
            if first != str(name):
                out.append(dict(name=str(name), kind="duplicate",
                                reason=f"same file bytes as {first} (both kept)"))
    return out
