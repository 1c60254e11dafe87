"""Tiny raw ImageNet inputs in the real ILSVRC layouts (class folders, the official tars and
devkit) for the §2 prep tests, and `prep`, the `alexnet prep imagenet` command they run."""
import io
import os
import tarfile

import numpy as np
from PIL import Image

from data_prep.__main__ import main

WNIDS = ["n01440764", "n01443537", "n02102040"]


def jpeg(seed, size=None):
    rng = np.random.default_rng(seed)
    w, h = size or (int(rng.integers(40, 90)), int(rng.integers(40, 90)))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def dataset(n_train=4, n_val=2):
    """{split: {wnid: {file name: bytes}}} with ILSVRC-style names."""
    out = {"train": {}, "val": {}}
    v = 0
    for c, w in enumerate(WNIDS):
        out["train"][w] = {f"{w}_{i}.JPEG": jpeg(100 * c + i) for i in range(n_train)}
        out["val"][w] = {}
        for _ in range(n_val):
            v += 1
            out["val"][w][f"ILSVRC2012_val_{v:08d}.JPEG"] = jpeg(10_000 + v)
    return out


def write_folders(root, data):
    for split, classes in data.items():
        for w, files in classes.items():
            os.makedirs(root / split / w, exist_ok=True)
            for name, b in files.items():
                (root / split / w / name).write_bytes(b)


def add(tar, name, data, **kw):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members:
            add(t, name, data)
    return buf.getvalue()


def val_truth(data):
    return sorted((n, w) for w, files in data["val"].items() for n in files)


TAR_NAMES = {2012: ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"),
             2010: ("ILSVRC2010_images_train.tar", "ILSVRC2010_images_val.tar")}


def write_tars(root, data, year=2012):
    """The official train tar (a tar of <wnid>.tar) and flat val tar, by `year`'s names; returns
    the val members [(name, bytes)] in name order."""
    os.makedirs(root, exist_ok=True)
    train, val_tar = TAR_NAMES[year]
    with tarfile.open(root / train, "w") as outer:
        for w, files in data["train"].items():
            add(outer, f"{w}.tar", tar_bytes(sorted(files.items())))
    val = sorted((n, b) for files in data["val"].values() for n, b in files.items())
    (root / val_tar).write_bytes(tar_bytes(val))
    return val


def write_official(root, data):
    """ILSVRC-2012's tars and a devkit holding only the validation ground truth; the ILSVRC IDs."""
    write_tars(root, data)
    ids = {w: i + 1 for i, w in enumerate(reversed(WNIDS))}  # ILSVRC IDs are NOT sorted wnids
    truth = "".join(f"{ids[w]}\n" for _, w in val_truth(data)).encode()
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as dk:
        add(dk, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)
    return ids


def prep(args):
    return main(["imagenet", "--chunk-size", "2", "--workers", "1"] + [str(a) for a in args])
