"""docs/paper.md §1 (§2 of the paper): a synthetic ImageNet-shaped dataset, generated on the spot in
the RAW ILSVRC-2012 layout, so every stage (prep, stats, training, ten-crop evaluation) runs without
a download. What the classes and images look like: data_prep.synthetic_images.

Layouts: `folders` = train/<wnid>/<wnid>_<k>.JPEG and val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG;
`tars` = the official ILSVRC2012_img_train.tar (a tar of <wnid>.tar), ILSVRC2012_img_val.tar (flat)
and ILSVRC2012_devkit_t12.tar.gz (data/ILSVRC2012_validation_ground_truth.txt, data/meta.mat);
the folders layout gets the class names as synset_words.txt ("wnid words" lines). Output is
byte-identical for a given seed: each image has its own generator seeded by (seed, split, class,
index), and tar/gzip headers carry fixed times and owners.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import struct
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from data_prep import exits
from data_prep.files import output_problem, overlap_problem, write_atomic
from data_prep.synthetic_images import class_design, image_bytes

DEVKIT = "ILSVRC2012_devkit_t12"
RECORD = "synthetic.json"   # the options OUT was generated with, and whether it is complete
TAR_MTIME = 1335830400  # 2012-05-01, fixed so that tars are byte-identical from run to run


def wnid(c: int) -> str:
    """WordNet-id-like name of class c (0-based): n00000001, n00000002, ..."""
    return f"n{c + 1:08d}"


def anomaly_plan(num_classes: int, train_per_class: int, val_per_class: int) -> dict:
    """Which (split, class, index) carry an anomaly under --anomalies (always the same ones)."""
    plan = {}
    if train_per_class >= 3:
        plan[("train", 0, 0)] = "png"
        plan[("train", 1 % num_classes, 1)] = "cmyk"
        plan[("train", 2 % num_classes, 2)] = "grayscale"
    if val_per_class >= 1:
        plan[("val", num_classes - 1, 0)] = "cmyk"
    return plan


def val_order(seed: int, num_classes: int, val_per_class: int) -> list[tuple[int, int]]:
    """(class, index) of ILSVRC2012_val_00000001, _00000002, ...: classes interleaved, as in the
    real validation set."""
    pairs = [(c, k) for c in range(num_classes) for k in range(val_per_class)]
    perm = np.random.default_rng([seed, 99]).permutation(len(pairs))
    return [pairs[i] for i in perm]


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, TAR_MTIME, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


# ---------------------------------------------------------------- a MAT-file (level 5) writer
# Just enough of the MATLAB 5 format for the devkit's meta.mat: a struct array of double scalars or
# row vectors and char rows, uncompressed, little-endian (scipy.io.loadmat and MATLAB read it).
_MI_INT8, _MI_INT32, _MI_UINT16, _MI_UINT32, _MI_DOUBLE, _MI_MATRIX = 1, 5, 4, 6, 9, 14
_MX_STRUCT, _MX_CHAR, _MX_DOUBLE = 2, 4, 6


def _element(kind: int, data: bytes) -> bytes:
    return struct.pack("<II", kind, len(data)) + data + b"\0" * (-len(data) % 8)


def _matrix(mx_class: int, dims: tuple[int, ...], body: bytes, name: str = "") -> bytes:
    head = (_element(_MI_UINT32, struct.pack("<II", mx_class, 0))
            + _element(_MI_INT32, struct.pack(f"<{len(dims)}i", *dims))
            + _element(_MI_INT8, name.encode("ascii")))
    return _element(_MI_MATRIX, head + body)


def _mat_value(value) -> bytes:
    if isinstance(value, str):
        dims = (1, len(value)) if value else (0, 0)
        return _matrix(_MX_CHAR, dims, _element(_MI_UINT16, value.encode("utf-16-le")))
    values = [float(x) for x in (value if isinstance(value, (list, tuple)) else [value])]
    dims = (1, len(values)) if values else (0, 0)
    return _matrix(_MX_DOUBLE, dims, _element(_MI_DOUBLE, struct.pack(f"<{len(values)}d", *values)))


def mat_struct_array(name: str, records: list[dict]) -> bytes:
    """A whole .mat file holding one N x 1 struct array `name` (fields from the first record)."""
    fields = list(records[0])
    width = 32  # field-name slot, as MATLAB writes it; longest name + NUL must fit
    if max(len(f) for f in fields) >= width:
        raise ValueError(f"field names must be shorter than {width} characters: {fields}")
    body = struct.pack("<HHi", _MI_INT32, 4, width)  # small data element: name-slot length
    body += _element(_MI_INT8, b"".join(f.encode("ascii").ljust(width, b"\0") for f in fields))
    body += b"".join(_mat_value(r[f]) for r in records for f in fields)
    header = b"MATLAB 5.0 MAT-file, written by paper_alexnet data_prep.synthetic".ljust(116, b" ")
    header += b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    return header + _matrix(_MX_STRUCT, (len(records), 1), body, name)


def devkit_files(seed: int, num_classes: int, val_per_class: int,
                 train_per_class: int) -> dict[str, bytes]:
    """data/meta.mat (the `synsets` struct array, leaves first, then one parent synset, as in the
    real devkit) and data/ILSVRC2012_validation_ground_truth.txt (one ILSVRC2012_ID per line, in
    validation-file order; ID i is the i-th wnid in sorted order)."""
    words = [class_design(c, num_classes)["name"] for c in range(num_classes)]
    leaves = [{"ILSVRC2012_ID": c + 1, "WNID": wnid(c), "words": words[c],
               "gloss": "synthetic class: " + words[c],
               "num_children": 0, "children": [], "wordnet_height": 0,
               "num_train_images": train_per_class} for c in range(num_classes)]
    parent = {"ILSVRC2012_ID": num_classes + 1, "WNID": "n00000000", "words": "synthetic entity",
              "gloss": "parent of every synthetic class (not a class)",
              "num_children": num_classes, "children": list(range(1, num_classes + 1)),
              "wordnet_height": 1, "num_train_images": 0}
    truth = "".join(f"{c + 1}\n" for c, _ in val_order(seed, num_classes, val_per_class))
    return {"data/meta.mat": mat_struct_array("synsets", leaves + [parent]),
            "data/ILSVRC2012_validation_ground_truth.txt": truth.encode()}


def _val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i + 1:08d}.JPEG"


def _job(job: tuple) -> bytes:
    return image_bytes(*job)


def _encoded(jobs: list, workers: int, progress):
    """Encoded images of `jobs` in order, from `workers` processes (each image depends only on
    its job, so the bytes are the same for any number of workers)."""
    pool = None
    try:
        if workers > 1:
            import multiprocessing
            method = "fork" if sys.platform == "linux" else "spawn"
            pool = multiprocessing.get_context(method).Pool(workers)
            results = pool.imap(_job, jobs, chunksize=8)
        else:
            results = map(_job, jobs)
        for done, data in enumerate(results, 1):
            if progress is not None:
                progress(done, len(jobs))
            yield data
    finally:
        if pool is not None:
            pool.terminate()


def held_options(out: Path, options: dict) -> bool:
    """Written once: True when `out` already holds the complete dataset of `options`; False when
    it is empty, absent, or an unfinished generation of the same options (which is redone: the
    bytes are deterministic). ValueError, before anything is written, when it holds another
    dataset or files that are not ours."""
    record = out / RECORD
    if record.is_file():
        try:
            held = json.loads(record.read_text())
            old = held["options"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(f"{record} is damaged: delete {out} and run the same command "
                             f"again") from None
        if old != options:
            differ = ", ".join(f"{k} {old.get(k)!r}" for k in options if old.get(k) != options[k])
            raise ValueError(f"{out} already holds a synthetic dataset made with other options "
                             f"({differ}); it is written once: choose another OUT, or delete "
                             f"{out} to replace it")
        return bool(held.get("complete"))
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and was not written by 'alexnet prep synthetic': "
                         f"choose another (empty or new) OUT")
    return False


def generate(out: str | Path, classes: int = 10, train_per_class: int = 160,
             val_per_class: int = 50, layout: str = "folders", seed: int = 0,
             anomalies: bool = False, workers: int = 1, progress=None) -> dict:
    """Write the dataset under `out`; returns a summary (counts, anomalies, seconds, and
    "unchanged": True when `out` already held exactly this dataset, which is then left as it
    is). Another dataset or foreign files in `out`: ValueError, nothing written."""
    if classes < 2 or train_per_class < 1 or val_per_class < 1:
        raise ValueError(f"synthetic dataset needs >= 2 classes and >= 1 image per class and "
                         f"split, got classes={classes}, train={train_per_class}, "
                         f"val={val_per_class}")
    if layout not in ("folders", "tars"):
        raise ValueError(f"layout {layout!r} is not one of folders, tars")
    out = Path(out)
    options = dict(classes=classes, train_per_class=train_per_class, val_per_class=val_per_class,
                   layout=layout, seed=seed, anomalies=anomalies)
    plan = anomaly_plan(classes, train_per_class, val_per_class) if anomalies else {}
    summary = {"root": str(out), "layout": layout, "classes": classes,
               "train": classes * train_per_class, "val": classes * val_per_class,
               "anomalies": {f"{s}/{wnid(c)}#{k}": a for (s, c, k), a in plan.items()}}
    if held_options(out, options):
        return dict(summary, unchanged=True, seconds=0.0, images_per_second=0.0)
    out.mkdir(parents=True, exist_ok=True)
    record = dict(options=options, complete=False)
    write_atomic(out / RECORD, (json.dumps(record) + "\n").encode())
    start = time.perf_counter()
    order = val_order(seed, classes, val_per_class)
    jobs = [(seed, "train", c, k, classes, plan.get(("train", c, k)))
            for c in range(classes) for k in range(train_per_class)]
    jobs += [(seed, "val", c, k, classes, plan.get(("val", c, k))) for c, k in order]
    images = _encoded(jobs, max(1, workers), progress)  # consumed in exactly jobs' order
    if layout == "folders":
        write_folders(out, images, classes, train_per_class, order)
    else:
        write_tars(out, images, seed, classes, train_per_class, val_per_class, order)
    images.close()
    record = dict(options=options, complete=True)
    write_atomic(out / RECORD, (json.dumps(record) + "\n").encode())
    seconds = time.perf_counter() - start
    return dict(summary, unchanged=False, seconds=round(seconds, 2),
                images_per_second=round(len(jobs) / seconds, 1))


def write_folders(out: Path, images, classes: int, train_per_class: int, order) -> None:
    """train/<wnid>/<wnid>_<k>.JPEG and val/<wnid>/ILSVRC2012_val_*.JPEG, plus the class names;
    `images` yields the JPEGs in that order (train by class, then val in `order`)."""
    for c in range(classes):
        folder = out / "train" / wnid(c)
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(train_per_class):
            (folder / f"{wnid(c)}_{k + 1}.JPEG").write_bytes(next(images))
    for i, (c, k) in enumerate(order):
        folder = out / "val" / wnid(c)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / _val_name(i)).write_bytes(next(images))
    names = "".join(f"{wnid(c)} {class_design(c, classes)['name']}\n" for c in range(classes))
    (out / "synset_words.txt").write_text(names)  # class names, read by data_prep.imagenet


def write_tars(out: Path, images, seed: int, classes: int, train_per_class: int,
               val_per_class: int, order) -> None:
    """The official ILSVRC-2012 files: the train tar of per-class tars, the flat val tar and the
    devkit whose ground truth labels val; `images` as for write_folders."""
    ustar = tarfile.USTAR_FORMAT
    with tarfile.open(out / "ILSVRC2012_img_train.tar", "w", format=ustar) as tar:
        for c in range(classes):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w", format=ustar) as sub:
                for k in range(train_per_class):
                    _add(sub, f"{wnid(c)}_{k + 1}.JPEG", next(images))
            _add(tar, f"{wnid(c)}.tar", inner.getvalue())
    with tarfile.open(out / "ILSVRC2012_img_val.tar", "w", format=ustar) as tar:
        for i in range(len(order)):
            _add(tar, _val_name(i), next(images))
    devkit = devkit_files(seed, classes, val_per_class, train_per_class)
    with open(out / f"{DEVKIT}.tar.gz", "wb") as raw, \
            gzip.GzipFile(filename=f"{DEVKIT}.tar", mode="wb", fileobj=raw,
                          mtime=TAR_MTIME) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=ustar) as tar:
        for name, data in devkit.items():
            _add(tar, f"{DEVKIT}/{name}", data)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alexnet prep synthetic",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="directory to write the raw dataset into")
    parser.add_argument("--classes", type=int, default=10, help="number of classes, at least 2 "
                        "(default: %(default)s)")
    parser.add_argument("--train-per-class", type=int, default=160,
                        help="training images per class (default: %(default)s)")
    parser.add_argument("--val-per-class", type=int, default=50,
                        help="validation images per class (default: %(default)s)")
    parser.add_argument("--layout", choices=("folders", "tars"), default="folders",
                        help="train/<wnid>/ and val/<wnid>/ folders, or the official ILSVRC-2012 "
                        "tars and devkit (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same bytes "
                        "(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="generating processes (the output does not depend on it; default: "
                        "%(default)s, the CPUs here)")
    parser.add_argument("--anomalies", action="store_true",
                        help="include a PNG named .JPEG, CMYK JPEGs and a grayscale JPEG, as in "
                             "the real ILSVRC-2012 (docs/paper.md §1)")
    return parser


def _print_summary(out, summary: dict) -> None:
    if summary["unchanged"]:
        print(f"synthetic: {out} already holds these {summary['train']} train + "
              f"{summary['val']} val images (same options): nothing written")
        return
    print(f"synthetic: wrote {summary['train']} train + {summary['val']} val images of "
          f"{summary['classes']} classes ({summary['layout']}) to {summary['root']} in "
          f"{summary['seconds']} s ({summary['images_per_second']} images/s)")


def main(argv: list[str] | None = None) -> int:
    """`alexnet prep synthetic OUT [...]`."""
    args = _parser().parse_args(argv)
    last, summary = [0.0], {}

    def progress(done, total):
        now = time.perf_counter()
        if done == total or now - last[0] > 5.0:
            last[0] = now
            print(f"synthetic: {done}/{total} images", file=sys.stderr)

    def work():
        problem = output_problem(args.out)
        if problem:
            raise exits.UsageError(f"OUT {args.out}: {problem}: choose another folder")
        problem = overlap_problem(args.out, "OUT")
        if problem:
            raise exits.UsageError(problem)
        summary.update(generate(args.out, args.classes, args.train_per_class,
                                args.val_per_class, args.layout, args.seed, args.anomalies,
                                args.workers, progress))
    code = exits.run("alexnet prep synthetic", work, usage=(ValueError,), hints={  # bad sizes
        OSError: "fix it and run the same command again (the output is deterministic)"})
    if code != exits.DONE:       # after a full disk, what was written is a partial dataset
        return code
    _print_summary(args.out, summary)
    return 0
