"""§2 for any dataset laid out as class folders (`alexnet prep images`): find its images, decide
the stored size and channels, and hand the splits to the same machinery as ImageNet
(data_prep.pipeline: chunks, resume, determinism, anomalies, failure budget, workers).

Input DIR holds train/<class>/* and val/<class>/* and/or test/<class>/*, any format PIL reads.
- class index = position of the folder name in the sorted train class folders (classes.tsv:
  index, folder name, folder name); every split must have the same class folders, none empty.
- splits: val/ -> ROOT/val; test/ -> ROOT/test, or ROOT/val when there is no val/ (as
  `prep cifar10` stores the official test set); the manifest says which folder each came from.
- record names are "<class>/<file>" (file names alone may repeat across classes, as in CIFAR-10's
  JPEG mirror).
- native size (no size given): every image must have the same width and height, read from the
  headers before any work starts; stored as raw uint8 (H, W, C) records, like `prep cifar10`.
- size N: shorter side N and the central N×N crop (data_prep.resize), stored as JPEG, like
  `prep imagenet`.
- channels: 1 (8-bit gray, like Fashion-MNIST) when every readable image is grayscale, else 3:
  grayscale, palette, CMYK and alpha images then become RGB, each listed as "converted" in the
  manifest (lossless for gray; no majority vote, so no colour is ever thrown away).
"""
from __future__ import annotations

import collections
import multiprocessing
import os

from PIL import Image

from data_prep.anomalies import EXIF_ORIENTATION, GRAY_MODES
from data_prep.exits import InputError
from data_prep.imagenet import list_folder
from data_prep.interrupt import ignore_ctrl_c

SPLIT_FOLDERS = ("train", "val", "test")
LAYOUT = "DIR/train/<class>/* plus DIR/val/<class>/* and/or DIR/test/<class>/*"


def list_classes(folder: str, skipped: list) -> dict:
    """{class folder name: [(file name, src)]}; entries that are not folders are skipped."""
    by_class = {}
    for e in sorted(os.scandir(folder), key=lambda e: e.name):
        if e.name.startswith("."):
            skipped.append(dict(name=e.path, kind="skipped", reason="hidden file or folder"))
        elif not e.is_dir():
            skipped.append(dict(name=e.path, kind="skipped", reason="not a class folder"))
        elif "\t" in e.name or "\n" in e.name:
            raise InputError(f"class folder {e.path!r} has a tab or newline in its name: "
                             f"rename it (classes.tsv is tab-separated)")
        else:
            by_class[e.name] = list_folder(e.path, skipped)
    return by_class


def discover(root: str) -> dict:
    """-> dict(classes [(name, name)], splits {split: [(class/file, label, src)]},
    skipped {split: [anomaly]}, folders {split: input folder}), or InputError."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise InputError(f"input {root} is not a directory: expected {LAYOUT}")
    if not os.path.isdir(os.path.join(root, "train")):
        raise InputError(f"{root} has no train/ folder: expected {LAYOUT}")
    found, skipped = {}, {}
    for folder in SPLIT_FOLDERS:
        if os.path.isdir(os.path.join(root, folder)):
            skipped[folder] = []
            found[folder] = list_classes(os.path.join(root, folder), skipped[folder])
    if not found["train"]:
        raise InputError(f"{os.path.join(root, 'train')} holds no class folders: expected "
                         f"{LAYOUT}")
    names = sorted(found["train"])
    for folder, by_class in found.items():
        empty = [c for c in sorted(by_class) if not by_class[c]]
        if empty:
            raise InputError(f"{os.path.join(root, folder, empty[0])} holds no images "
                             f"({len(empty)} empty class folder(s) in {folder}/): add its "
                             f"images or delete the folder in every split")
        if sorted(by_class) != names:
            only_train = sorted(set(names) - set(by_class))
            only_here = sorted(set(by_class) - set(names))
            raise InputError(f"the class folders of {folder}/ and train/ in {root} differ: only "
                             f"in train/: {', '.join(only_train) or '-'}; only in {folder}/: "
                             f"{', '.join(only_here) or '-'} (every split needs the same classes)")
    index = {c: i for i, c in enumerate(names)}
    out = dict(classes=[(c, c) for c in names], splits={}, skipped={}, folders={})
    for folder, by_class in found.items():
        split = "val" if folder == "test" and "val" not in found else folder
        out["splits"][split] = [(f"{c}/{n}", index[c], src) for c in names
                                for n, src in by_class[c]]
        out["skipped"][split] = skipped[folder]
        out["folders"][split] = f"{folder}/"
    return out


def header(path: str, exif_transpose: bool):
    """(width, height, mode) from the file's header (nothing decoded), or None if PIL cannot open
    it (prep then rejects it with the reason)."""
    pil_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # a header only: --max-pixels applies when prep decodes it
    try:
        with Image.open(path) as im:
            w, h = im.size
            if exif_transpose and im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                w, h = h, w  # rotated by 90 degrees when upright
            return w, h, im.mode
    except (OSError, ValueError, SyntaxError, EOFError):
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit


def headers(job) -> list:
    """Worker: [(path, header or None)] for a slice of paths."""
    paths, exif_transpose = job
    return [(p, header(p, exif_transpose)) for p in paths]


def geometry(root: str, splits: dict, native: bool, exif_transpose: bool, workers: int = 1) -> dict:
    """Read every image's header once (about 0.1 ms of CPU a file, spread over `workers`
    processes) -> dict(channels, image_shape (H, W, C) when native, sizes: Counter of (w, h)).
    At native size, images of another size are an InputError naming one, its size and the
    common size."""
    paths = [src[0] for items in splits.values() for _, _, src in items]
    step = max(1, -(-len(paths) // (4 * max(workers, 1))))
    jobs = [(paths[i:i + step], exif_transpose) for i in range(0, len(paths), step)]
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(workers, ignore_ctrl_c) as pool:
            found = [h for part in pool.map(headers, jobs) for h in part]
    else:
        found = [h for job in jobs for h in headers(job)]
    sizes, gray, colour, first_of = collections.Counter(), 0, 0, {}
    for path, head in found:
        if head is None:
            continue
        w, h, mode = head
        sizes[(w, h)] += 1
        first_of.setdefault((w, h), path)
        gray, colour = (gray + 1, colour) if mode in GRAY_MODES else (gray, colour + 1)
    channels = 1 if gray and not colour else 3
    out = dict(channels=channels, sizes=sizes)
    if not native or not sizes:
        return out
    (w, h), n = sizes.most_common(1)[0]
    if len(sizes) > 1:
        other = min((s for s in sizes if s != (w, h)), key=lambda s: first_of[s])
        raise InputError(f"{first_of[other]} is {other[0]}x{other[1]} pixels, but {n} of the "
                         f"{sum(sizes.values())} images in {root} are {w}x{h} "
                         f"({sum(sizes.values()) - n} have another size): at native size all "
                         f"images must have one size; pass --size N to resize them (shorter side "
                         f"N, central NxN crop)")
    out["image_shape"] = [h, w, channels]
    return out
