"""§2 labels of the ILSVRC val and test images: a labels file, or the devkit (ground-truth IDs and
data/meta.mat, read by data_prep.matfile with numpy only), and the class names. Labels never silently go missing: a labels file line for a file
that is absent becomes a "missing" anomaly (counted against --max-failures), two lines giving one
file different classes, a label count that differs from the image count, and an ID absent from
meta.mat are errors naming the file.
"""
from __future__ import annotations

import os
import sys
import tarfile

import numpy as np

from data_prep import matfile
from data_prep.exits import InputError

NAME_FILES = ("synset_words.txt", "LOC_synset_mapping.txt")  # "wnid words…" per line


def file_name(name: str) -> str:
    """The last part of a path or archive member name, with either kind of slash."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def read_labels_file(path: str, names: list[str]) -> tuple[list[str], list[dict]]:
    """'<file name> <wnid>' per line (any order), or one wnid per line for the sorted names ->
    (wnid per name, a "missing" anomaly per line naming a file that is not among `names`).
    Two lines giving one file different wnids are an InputError naming both lines."""
    with open(path, encoding="utf-8") as f:
        rows = [(i, ln.split()) for i, ln in enumerate(f, 1) if ln.strip()]
    if rows and all(len(r) >= 2 for _, r in rows):
        table, line_of = {}, {}
        for i, r in rows:
            name = file_name(r[0])
            if table.setdefault(name, r[1]) != r[1]:
                raise InputError(f"labels file {path}: {name!r} is {table[name]} on line "
                                 f"{line_of[name]} and {r[1]} on line {i}: fix the file (one "
                                 f"class per image)")
            line_of.setdefault(name, i)
        missing = [n for n in names if n not in table]
        if missing:
            raise InputError(f"labels file {path} has no line for {len(missing)} images, e.g. "
                             f"{missing[0]!r}: expected lines '<file name> <wnid>'")
        present = set(names)
        absent = [dict(name=n, kind="missing", reason=f"listed in {path} (line {line_of[n]}, "
                       f"{table[n]}) but not in the image folder or tar")
                  for n in sorted(table) if n not in present]
        return [table[n] for n in names], absent
    if len(rows) != len(names) or any(len(r) != 1 for _, r in rows):
        raise InputError(f"labels file {path}: {len(rows)} lines for {len(names)} images; expected "
                         f"'<file name> <wnid>' lines, or exactly one wnid per sorted image name")
    return [r[0] for _, r in rows], []


def read_devkit(path: str, year: int):
    """Devkit tar.gz -> (ground-truth IDs per val image, {ID: (wnid, words)}, or None when
    data/meta.mat is missing or unreadable)."""
    truth, meta = None, None
    with tarfile.open(path, mode="r:gz") as tf:
        for m in tf:
            if not m.isreg():
                continue
            if m.name.endswith(f"data/ILSVRC{year}_validation_ground_truth.txt"):
                truth = [int(x) for x in tf.extractfile(m).read().split()]
            elif m.name.endswith("data/meta.mat"):
                meta = read_meta_mat(tf.extractfile(m).read(), year, path)
    if truth is None:
        raise InputError(f"devkit {path} has no data/ILSVRC{year}_validation_ground_truth.txt")
    return truth, meta


def read_meta_mat(data: bytes, year: int, where: str):
    """data/meta.mat -> {ILSVRC ID: (wnid, words)} (data_prep.matfile), or None when it cannot be
    read (the caller then asks for --val-labels)."""
    key = f"ILSVRC{year}_ID"
    try:
        synsets = matfile.loadmat(data)["synsets"]
        table = {int(np.asarray(s[key]).ravel()[0]): (s["WNID"], s["words"]) for s in synsets}
    except (matfile.MatError, KeyError, IndexError, TypeError) as e:
        print(f"prep: cannot read data/meta.mat in {where} ({type(e).__name__}: {e})",
              file=sys.stderr)
        return None
    if not table:
        raise InputError(f"{where}: data/meta.mat lists no synsets")
    return table


def check_count(where: str, labels: int, images: int, split: str) -> None:
    if labels != images:
        raise InputError(f"{where}: {labels} labels for {images} {split} images: the labels do "
                         f"not belong to these images (a shorter or longer file?)")


def ids_to_wnids(ids, meta, what: str, labels_flag: str, where: str, images: int) -> list[str]:
    """The devkit's ILSVRC IDs (one per image, `images` of them) -> wnids, through meta.mat."""
    check_count(where, len(ids), images, what)
    if meta is None:
        raise InputError(f"reading {what} labels from {where} needs its data/meta.mat: it is "
                         f"missing or unreadable here; pass {labels_flag} FILE with lines "
                         f"'ILSVRC2012_val_00000001.JPEG n01751748'")
    unknown = sorted(set(ids) - set(meta))
    if unknown:
        raise InputError(f"{where}: {what} label ID {unknown[0]} is not in data/meta.mat "
                         f"({len(unknown)} unknown IDs): is the devkit of this year?")
    return [meta[i][0] for i in ids]


def read_class_names(root: str, names_file: str | None) -> dict:
    paths = [names_file] if names_file else [os.path.join(root, n) for n in NAME_FILES]
    for p in paths:
        if p and os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                return {ln.split(None, 1)[0]: ln.split(None, 1)[1].strip()
                        for ln in f if len(ln.split(None, 1)) == 2}
    return {}
