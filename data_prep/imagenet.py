"""§2 the raw ILSVRC inputs: find them, list every image with its label, never extract anything.

Layouts detected in the input directory, in this order:
1. official files, ILSVRC-2012: ILSVRC2012_img_train.tar (a tar of 1000 per-class tars
   n01440764.tar …), ILSVRC2012_img_val.tar (flat), ILSVRC2012_devkit_t12.tar.gz;
   ILSVRC-2010: ILSVRC2010_images_train.tar, ILSVRC2010_images_val.tar, ILSVRC2010_images_test.tar,
   ILSVRC2010_devkit-1.0.tar.gz, ILSVRC2010_test_ground_truth.txt (test labels, same ID scheme).
2. class folders: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG (test/<wnid>/ for 2010);
3. a flat val/ (or test/) folder plus a labels file.

Tars are read in place: the outer tar's headers and each inner tar's headers are scanned once and
every image becomes (tar path, byte offset, size), read later with os.pread by the workers. Member
names are only used as record names: nothing is ever written from them. Members that are not
regular files (symlinks, hard links, devices, FIFOs, sparse files) or whose names are absolute or
contain '..' are skipped and reported. A damaged or truncated tar, even one cut exactly between
two members (seen by its missing end-of-archive marker), stops prep with an error naming it.

Labels: class index = position of the wnid in the SORTED list of train wnids (n01440764 → 0 for
ILSVRC-2012; the order torchvision's ImageFolder also gives); a train class without images is an
error, not a class with no training data. Alex's code used ILSVRC2012_ID - 1
instead; the two differ only by a permutation. Val/test labels come from, in this order: class
folders, `--val-labels FILE` / `--test-labels FILE` (lines "ILSVRC2012_val_00000001.JPEG n01751748",
or one wnid per line for the sorted file names), or the devkit (ground-truth IDs + data/meta.mat);
they are read, and checked, by data_prep.labels.
"""
from __future__ import annotations

import os
import re
import tarfile
import zlib

from data_prep.exits import InputError
from data_prep.labels import (check_count, file_name, ids_to_wnids, read_class_names, read_devkit,
                              read_labels_file)

OFFICIAL = {
    2012: dict(train="ILSVRC2012_img_train.tar", val="ILSVRC2012_img_val.tar",
               devkit="ILSVRC2012_devkit_t12.tar.gz"),
    2010: dict(train="ILSVRC2010_images_train.tar", val="ILSVRC2010_images_val.tar",
               test="ILSVRC2010_images_test.tar", devkit="ILSVRC2010_devkit-1.0.tar.gz",
               test_truth="ILSVRC2010_test_ground_truth.txt"),
}
CLASS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def expected_layouts(root: str) -> str:
    o12, o10 = OFFICIAL[2012], OFFICIAL[2010]
    return (f"expected in {root} one of:\n"
            f"  - {o12['train']}, {o12['val']}, {o12['devkit']} (ILSVRC-2012 official files)\n"
            f"  - {o10['train']}, {o10['val']}, {o10['test']}, {o10['devkit']}, "
            f"{o10['test_truth']} (ILSVRC-2010)\n"
            f"  - train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (class folders)\n"
            f"  - train/<wnid>/*.JPEG and a flat val/ folder with --val-labels FILE")


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why a tar member is skipped, or None if it is a plain file with a plain relative name."""
    if member.issym() or member.islnk():
        return f"link to {member.linkname!r} (never followed)"
    if member.isdev() or member.isfifo():
        return "device or FIFO"
    if not member.isreg():
        return "not a regular file" if not member.isdir() else None
    if member.issparse():
        return "sparse member (not read in place)"
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        return "absolute or parent-relative path"
    return None


def scan_tar(fileobj, base: int = 0):
    """Yield (member name, absolute data offset, size, skip reason) for every non-directory member."""
    with tarfile.open(fileobj=fileobj, mode="r:") as tf:
        for m in tf:
            if m.isdir():
                continue
            yield m.name, base + m.offset_data, m.size, unsafe_reason(m)
        check_end(tf, fileobj)


def check_end(tf: tarfile.TarFile, fileobj) -> None:
    """A tar cut exactly between two members reads as a shorter, valid-looking archive: only the
    missing end-of-archive marker (zero blocks after the last member) tells. Call after reading."""
    if fileobj.seek(0, os.SEEK_END) - tf.offset < tarfile.BLOCKSIZE:
        raise tarfile.ReadError("it ends without the end-of-archive marker (truncated)")


def read_tar(reader, path: str, *args):
    """reader(path, *args), a damaged tar or tar.gz reported as InputError naming the file."""
    try:
        return reader(path, *args)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise InputError(f"{path} is damaged or truncated ({e}): download it again and compare "
                         f"its size and checksum with the official ones") from None


def list_train_tar(path: str, skipped: list):
    """Official train tar -> {wnid: [(name, (path, offset, size)), ...]} without extracting."""
    by_class = {}
    with open(path, "rb") as f:
        with tarfile.open(fileobj=f, mode="r:") as outer:
            for m in outer:
                if m.isdir():
                    continue
                reason = unsafe_reason(m)
                wnid = file_name(m.name)[:-4] if m.name.endswith(".tar") else None
                if reason is None and (wnid is None or not CLASS_RE.match(wnid)):
                    reason = "not a per-class tar named <wnid>.tar"
                if reason:
                    skipped.append(dict(name=m.name, kind="skipped", reason=reason))
                    continue
                files = by_class.setdefault(wnid, [])
                inner = outer.extractfile(m)
                for name, off, size, why in scan_tar(inner, base=m.offset_data):
                    if why:
                        skipped.append(dict(name=f"{m.name}/{name}", kind="skipped", reason=why))
                    else:
                        files.append((file_name(name), (path, off, size)))
            check_end(outer, f)
    return by_class


def list_flat_tar(path: str, skipped: list):
    out = []
    with open(path, "rb") as f:
        for name, off, size, why in scan_tar(f):
            if why:
                skipped.append(dict(name=name, kind="skipped", reason=why))
            else:
                out.append((file_name(name), (path, off, size)))
    return sorted(out)


def list_folder(path: str, skipped: list):
    out = []
    with os.scandir(path) as it:
        for e in it:
            full = os.path.join(path, e.name)
            if e.name.startswith("."):
                skipped.append(dict(name=full, kind="skipped", reason="hidden file"))
            elif e.is_file():  # follows symlinks: the user's own file system
                out.append((e.name, (full, 0, -1)))
            elif not e.is_dir():
                skipped.append(dict(name=full, kind="skipped", reason="not a regular file"))
    return sorted(out)


def list_class_folders(path: str, skipped: list):
    by_class, stray = {}, []
    for e in sorted(os.scandir(path), key=lambda e: e.name):
        if e.is_dir() and CLASS_RE.match(e.name):
            by_class[e.name] = list_folder(e.path, skipped)
        else:
            stray.append(dict(name=e.path, kind="skipped", reason="not a class folder"))
    if by_class:  # a flat folder (val/ with a labels file) is listed by list_folder instead
        skipped += stray
    return by_class


def labelled(files, wnids, index, split: str, where: str):
    """[(name, class index, src)]; as many labels as files, each a train wnid, or InputError."""
    check_count(where, len(wnids), len(files), split)
    unknown = sorted(set(wnids) - set(index))
    if unknown:
        raise InputError(f"{split} labels name {len(unknown)} wnids absent from train, e.g. "
                         f"{unknown[0]!r}: are the labels for this dataset?")
    return [(name, index[w], src) for (name, src), w in zip(files, wnids)]


def discover(root: str, val_labels: str | None = None, test_labels: str | None = None,
             names_file: str | None = None) -> dict:
    """-> dict(layout, year, classes [(wnid, name)], splits {split: [(name, label, src)]},
    skipped {split: [anomaly]}). src = (path, offset, size); size -1 = the whole file."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise InputError(f"input {root} is not a directory; {expected_layouts(root)}")
    skipped = {"train": [], "val": [], "test": []}
    layout, year, train, raw = find_input(root, skipped)
    wnids = train_wnids(root, layout, year, train)
    index = {w: i for i, w in enumerate(wnids)}
    splits = {"train": [(n, index[w], src) for w in wnids for n, src in sorted(train[w])]}
    given, meta = dict(val=val_labels, test=test_labels), None
    for split, files in raw.items():
        if isinstance(files, dict):  # class folders
            splits[split] = labelled([f for w in sorted(files) for f in files[w]],
                                     [w for w in sorted(files) for _ in files[w]], index, split,
                                     os.path.join(root, split))
            continue
        wn, where, meta = flat_labels(root, layout, year, split, files, given[split], meta,
                                      skipped)
        splits[split] = labelled(files, wn, index, split, where)
    names = read_class_names(root, names_file)
    if meta:
        names = {w: words for w, words in meta.values()}
    classes = [(w, names.get(w, w)) for w in wnids]
    return dict(layout=layout, year=year, classes=classes, splits=splits, skipped=skipped)


def find_input(root: str, skipped: dict) -> tuple:
    """(layout, year, train {wnid: [(name, src)]}, raw {split: files}) of the first layout found:
    the official tars of a year, else train/ class folders; val and test where present, as
    class folders ({wnid: files}) or a flat list of (name, src)."""
    for year, files in OFFICIAL.items():
        if os.path.exists(os.path.join(root, files["train"])):
            p = {k: os.path.join(root, v) for k, v in files.items()}
            raw = {split: read_tar(list_flat_tar, p[split], skipped[split])
                   for split in ("val", "test") if split in p and os.path.exists(p[split])}
            return "official", year, read_tar(list_train_tar, p["train"], skipped["train"]), raw
    if not os.path.isdir(os.path.join(root, "train")):
        raise InputError(f"no ILSVRC input found in {root}; {expected_layouts(root)}")
    train, raw = list_class_folders(os.path.join(root, "train"), skipped["train"]), {}
    for split in ("val", "test"):
        d = os.path.join(root, split)
        if os.path.isdir(d):
            sub = list_class_folders(d, skipped[split])
            raw[split] = sub if sub else list_folder(d, skipped[split])
    return "folders", None, train, raw


def train_wnids(root: str, layout: str, year, train: dict) -> list[str]:
    """The sorted train wnids, or InputError when there are none or a class has no images."""
    if not train:
        raise InputError(f"no ILSVRC input found in {root}; {expected_layouts(root)}")
    empty = [w for w in sorted(train) if not train[w]]
    if empty:  # kept, it would be a class the network is scored on but never sees
        where = os.path.join(root, "train", empty[0]) if layout == "folders" else \
            f"{empty[0]}.tar in {OFFICIAL[year]['train']}"
        raise InputError(f"train class {empty[0]} has no images ({where}; {len(empty)} empty "
                         f"classes): restore its images, or remove it to drop the class (every "
                         f"later class index then moves down by one)")
    return sorted(train)


def flat_labels(root: str, layout: str, year, split: str, files: list, labels_path, meta,
                skipped: dict) -> tuple:
    """(wnid of each file, where the labels came from, devkit meta or None) of a split without
    class folders: from --val-labels/--test-labels, else the official devkit (val) or the
    ILSVRC-2010 test ground truth; InputError when there is none."""
    flag, names = f"--{split}-labels", [n for n, _ in files]
    if labels_path:
        wn, absent = read_labels_file(labels_path, names)
        skipped[split] += absent
        return wn, labels_path, meta
    devkit = os.path.join(root, OFFICIAL[year]["devkit"]) if layout == "official" else None
    if split == "val" and devkit and os.path.exists(devkit):
        ids, meta = read_tar(read_devkit, devkit, year)
        return ids_to_wnids(ids, meta, "val", flag, devkit, len(names)), devkit, meta
    if split == "test" and year == 2010 and os.path.exists(
            os.path.join(root, OFFICIAL[2010]["test_truth"])):
        truth = os.path.join(root, OFFICIAL[2010]["test_truth"])
        if meta is None and os.path.exists(os.path.join(root, OFFICIAL[2010]["devkit"])):
            _, meta = read_tar(read_devkit, os.path.join(root, OFFICIAL[2010]["devkit"]), 2010)
        with open(truth) as f:
            ids = [int(x) for x in f.read().split()]
        return ids_to_wnids(ids, meta, "test", flag, truth, len(names)), truth, meta
    raise InputError(f"{split} images in {root} have no labels: pass {flag} FILE (lines "
                     f"'<file name> <wnid>'), use {split}/<wnid>/ folders, or put the "
                     f"devkit beside the tars")


_FDS: dict = {}


def read_source(src) -> bytes:
    """(path, offset, size) -> bytes; size -1 reads a whole file. One descriptor per tar per
    process, os.pread so that no file position is shared."""
    path, offset, size = src
    if size < 0:
        with open(path, "rb") as f:
            return f.read()
    key = (os.getpid(), path)
    fd = _FDS.get(key)
    if fd is None:
        fd = _FDS[key] = os.open(path, os.O_RDONLY)
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise OSError(f"{path}: short read of {size} bytes at {offset} (file changed?)")
    return data
