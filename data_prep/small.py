"""docs/paper.md §9 and §10: the small datasets (CIFAR-10 for Figure 1, Fashion-MNIST for the
course-notes variant), read from their official files into the same prepared format as ImageNet
(§2).

CIFAR-10 "python version": data_batch_1..5, test_batch, batches.meta, each a pickled dict with
b'data' (N, 3072) uint8 (1024 R, then 1024 G, then 1024 B values, each a row-major 32x32 plane),
b'labels' and b'filenames'; read from the cifar-10-python.tar.gz archive (as a stream, nothing
extracted) or from the cifar-10-batches-py folder. The pickles are loaded by a RESTRICTED unpickler
that can rebuild numpy arrays and nothing else: a pickle naming any other global is refused, never
run. Fashion-MNIST: the four idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-…),
gzipped or not; magic numbers, dimensions and sizes are checked.

Output: ROOT/train and ROOT/val as raw uint8 shards ((32, 32, 3) and (28, 28, 1)); the official
TEST set becomes ROOT/val (neither dataset has a separate validation set; the paper's Figure 1 is
about training error anyway). ROOT/train gets stats.npz (mean image and RGB PCA, or the 1x1
"covariance" of a single channel), computed by data_prep.stats exactly as for ImageNet.
Nothing is downloaded unless --download is given, which uses torchvision's downloaders.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import pickle
import sys
import tarfile
import zlib

import numpy as np

from data_prep import exits
from data_prep.files import overlap_problem, paths_problem, sha256_file
from data_prep.interrupt import Interrupted, stop_at_once
from data_prep.shards import existing_split, write_split

CIFAR_ARCHIVE, CIFAR_FOLDER = "cifar-10-python.tar.gz", "cifar-10-batches-py"
CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"]}
CIFAR_META = "batches.meta"
FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801  # 0x08 = unsigned byte; last byte = number of dims


class SmallDataError(exits.Failure):
    """A CIFAR-10 or Fashion-MNIST input file is missing, malformed or unsafe; names the file."""


# ------------------------------------------------------------------------------------- CIFAR-10
def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct as fn
    return fn


def _latin1_encode(text, encoding="latin1"):
    """Python 3 pickles bytes (protocol <= 2) as _codecs.encode(text, 'latin1'); only that is let
    through, so no other codec can be reached from a pickle."""
    if encoding.replace("-", "").replace("_", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, bytes, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module, name):
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"),
                              ("numpy._core.multiarray", "_reconstruct")):
            return _reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (only numpy arrays "
                                     f"are rebuilt)")


def load_pickle(data: bytes, where: str):
    """Restricted unpickling of one CIFAR-10 batch file (Python 2 pickles: bytes keys)."""
    try:
        return _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError) as e:
        raise SmallDataError(f"{where}: not a CIFAR-10 python batch that can be read safely "
                             f"({type(e).__name__}: {e}); re-download cifar-10-python.tar.gz"
                             ) from None


def _cifar_files(path: str) -> tuple[dict[str, bytes], str]:
    """{file name: bytes} of the batches and batches.meta, from the archive or the folder."""
    wanted = set(CIFAR_BATCHES["train"] + CIFAR_BATCHES["val"] + [CIFAR_META])
    for candidate in (path, os.path.join(path, CIFAR_ARCHIVE), os.path.join(path, CIFAR_FOLDER)):
        if os.path.isfile(candidate):
            found = {}
            try:
                with tarfile.open(candidate, mode="r|gz") as tar:  # a stream: one pass, no seeks
                    for member in tar:
                        base = member.name.rsplit("/", 1)[-1]
                        if member.isreg() and base in wanted:
                            found[base] = tar.extractfile(member).read()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise SmallDataError(f"{candidate}: cannot read the archive ({e}); "
                                     f"re-download {CIFAR_ARCHIVE}") from None
            return found, candidate
        if os.path.isdir(candidate) and os.path.exists(os.path.join(candidate, CIFAR_META)):
            found = {}
            for name in sorted(wanted):
                if os.path.isfile(os.path.join(candidate, name)):
                    with open(os.path.join(candidate, name), "rb") as f:
                        found[name] = f.read()
            return found, candidate
    raise SmallDataError(f"no CIFAR-10 found at {path}: expected {CIFAR_ARCHIVE} or a "
                         f"{CIFAR_FOLDER} folder (with {CIFAR_META}) there; pass --download to "
                         f"fetch it with torchvision")


def parse_cifar_batch(obj, where: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A batch dict -> (images (N, 32, 32, 3) uint8, labels (N,) int64, file names)."""
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        keys = sorted(map(repr, obj))[:5] if isinstance(obj, dict) else "-"
        raise SmallDataError(f"{where}: expected a dict with b'data' and b'labels', got "
                             f"{type(obj).__name__} with keys {keys}")
    data, labels = obj[b"data"], np.asarray(obj[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise SmallDataError(f"{where}: b'data' must be uint8 (N, 3072), got "
                             f"{getattr(data, 'dtype', type(data).__name__)} {shape}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu" or \
            (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise SmallDataError(f"{where}: b'labels' must hold {len(data)} integers in 0..9, got "
                             f"{labels.dtype} {labels.shape}")
    names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
             for n in obj.get(b"filenames", [])]
    if len(names) != len(data):
        names = [f"{where.rsplit('/', 1)[-1]}#{i}" for i in range(len(data))]
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planes R, G, B -> (H, W, C)
    return np.ascontiguousarray(images), labels.astype(np.int64), names


def load_cifar10(path: str) -> dict:
    """-> dict(classes [(name, name)], train/val (images, labels, names), source {file: sha256})."""
    files, where = _cifar_files(os.fspath(path))
    missing = [n for n in CIFAR_BATCHES["train"] + CIFAR_BATCHES["val"] + [CIFAR_META]
               if n not in files]
    if missing:
        raise SmallDataError(f"{where}: missing {', '.join(missing)}; re-download {CIFAR_ARCHIVE}")
    meta = load_pickle(files[CIFAR_META], f"{where}/{CIFAR_META}")
    label_names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(label_names, list) or len(label_names) != 10:
        raise SmallDataError(f"{where}/{CIFAR_META}: expected b'label_names' with 10 names")
    names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in label_names]
    out = {"classes": [(n, n) for n in names],
           "source": {n: hashlib.sha256(files[n]).hexdigest() for n in sorted(files)}}
    for split, batches in CIFAR_BATCHES.items():
        parts = [parse_cifar_batch(load_pickle(files[b], f"{where}/{b}"), f"{where}/{b}")
                 for b in batches]
        out[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                      [n for p in parts for n in p[2]])
    return out


# ---------------------------------------------------------------------------------- Fashion-MNIST
def read_idx(path: str, magic: int) -> np.ndarray:
    """An idx file (gzipped or not) -> uint8 array of the dimensions its header gives."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise SmallDataError(f"{path}: cannot read ({e}); re-download it") from None
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        got = f"0x{int.from_bytes(data[:4], 'big'):08x}" if len(data) >= 4 else "nothing"
        raise SmallDataError(f"{path}: magic number {got}, expected 0x{magic:08x} (an idx "
                             f"{'image' if magic == IDX_IMAGES else 'label'} file); is it the "
                             f"right file?")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SmallDataError(f"{path}: truncated header ({len(data)} bytes)")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    size = int(np.prod(dims))
    if len(data) - header != size:
        raise SmallDataError(f"{path}: header says {'x'.join(map(str, dims))} = {size} bytes of "
                             f"data, the file holds {len(data) - header} (truncated or corrupt: "
                             f"re-download it)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _idx_path(folder: str, base: str) -> str:
    for sub in ("", os.path.join("FashionMNIST", "raw"), "raw"):  # torchvision's download layout
        for name in (base, base + ".gz"):
            if os.path.isfile(os.path.join(folder, sub, name)):
                return os.path.join(folder, sub, name)
    raise SmallDataError(f"no {base} (or {base}.gz) in {folder}: expected the four Fashion-MNIST "
                         f"idx files there; pass --download to fetch them with torchvision")


def load_fashion_mnist(folder: str) -> dict:
    folder = os.fspath(folder)
    out = {"classes": [(n.replace("/", "_").replace(" ", "_").lower(), n) for n in FASHION_CLASSES],
           "source": {}}
    for split, (images_name, labels_name) in FASHION_FILES.items():
        ipath, lpath = _idx_path(folder, images_name), _idx_path(folder, labels_name)
        images, labels = read_idx(ipath, IDX_IMAGES), read_idx(lpath, IDX_LABELS)
        if len(images) != len(labels):
            raise SmallDataError(f"{ipath} holds {len(images)} images but {lpath} holds "
                                 f"{len(labels)} labels: the files do not belong together")
        if len(labels) and labels.max() >= len(FASHION_CLASSES):
            raise SmallDataError(f"{lpath}: label {labels.max()} outside 0..9")
        for p in (ipath, lpath):
            out["source"][os.path.basename(p)] = sha256_file(p)
        names = [f"{images_name}#{i}" for i in range(len(images))]
        out[split] = (images[..., None], labels.astype(np.int64), names)
    return out


# ------------------------------------------------------------------------------- prepared output
def _params(dataset: dict, source_name: str, split: str) -> dict:
    """What a split is made from (its manifest's "prep"): the source, each input file's SHA-256."""
    return {"source": source_name, "input_sha256": dataset["source"],
            "split": "official test set" if split == "val" else "official train set"}


def write_prepared(root: str, dataset: dict, source_name: str) -> dict:
    """ROOT/train (with stats.npz) and ROOT/val, raw uint8 shards; returns {split: manifest}.
    Written once: a split already made from the same input files is left as it is (its manifest
    gets "unchanged": True here); a ROOT holding another split raises shards.WrittenOnce before
    anything is written."""
    manifests = {}
    for split in ("train", "val"):
        params = _params(dataset, source_name, split)
        held = existing_split(os.path.join(os.fspath(root), split),
                              lambda m, params=params: m["prep"] == params)
        if held is not None:
            manifests[split] = dict(held, unchanged=True)
    for split in ("train", "val"):
        if split in manifests:
            continue
        images, labels, names = dataset[split]
        params = _params(dataset, source_name, split)
        manifests[split] = write_split(
            os.path.join(os.fspath(root), split),
            ((image, int(label), name) for image, label, name in zip(images, labels, names)),
            encoding="raw", image_shape=images.shape[1:], classes=dataset["classes"],
            prep_params=params, compute_stats=split == "train")
    return manifests


def _download(kind: str, folder: str) -> None:
    import torchvision  # only here: data_prep does not import torch otherwise

    os.makedirs(folder, exist_ok=True)
    cls = torchvision.datasets.CIFAR10 if kind == "cifar10" else torchvision.datasets.FashionMNIST
    for train in (True, False):
        cls(root=folder, train=train, download=True)


def _main(kind: str, argv) -> int:
    title = {"cifar10": "CIFAR-10 python batches", "fashion-mnist": "Fashion-MNIST idx files"}[kind]
    p = argparse.ArgumentParser(prog=f"alexnet prep {kind}",
                                description=f"{title} -> prepared ROOT/train, ROOT/val (val = the "
                                            f"official test set), raw uint8")
    p.add_argument("--input", required=True, help=f"folder (or archive) holding the {title}")
    p.add_argument("--out", required=True, help="output ROOT")
    p.add_argument("--download", action="store_true",
                   help="download into --input first with torchvision (never done otherwise)")
    args = p.parse_args(argv)
    manifests = {}

    def work():
        problem = (paths_problem([] if args.download else [("--input", args.input)], args.out)
                   or overlap_problem(args.out, "--out", [("--input", args.input)],
                                      itself=("dataset",)))
        if problem:
            raise exits.UsageError(problem)
        with stop_at_once():
            if args.download:
                _download(kind, args.input)
            dataset = (load_cifar10(args.input) if kind == "cifar10"
                       else load_fashion_mnist(args.input))
            manifests.update(write_prepared(args.out, dataset, kind))
    code = exits.run(f"alexnet prep {kind}", work, hints={   # shards are renamed when whole
        Interrupted: f"run the same command again (exit status {exits.STOPPED})"})
    if code != exits.DONE:
        return code
    for split, m in manifests.items():
        print(f"{kind}: {os.path.join(args.out, split)}: {m['count']} images "
              f"{tuple(m['image_shape'])}, {m['num_classes']} classes"
              + ("; already prepared from the same input files: nothing written"
                 if m.get("unchanged") else ""))
    return 0


def main_cifar10(argv=None) -> int:
    """`alexnet prep cifar10 --input DIR --out ROOT [--download]`."""
    return _main("cifar10", sys.argv[1:] if argv is None else argv)


def main_fashion_mnist(argv=None) -> int:
    """`alexnet prep fashion-mnist --input DIR --out ROOT [--download]`."""
    return _main("fashion-mnist", sys.argv[1:] if argv is None else argv)
