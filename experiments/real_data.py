"""Rebuild the real-data inputs of the example reports from public copies of the datasets.

None of this is downloaded at run time: clone the public repositories yourself, then

    python -m experiments.real_data fashion-mnist-prefix SRC OUT [--count 3600] [--test 600]
    python -m experiments.real_data ilsvrc-sample SRC OUT
    python -m experiments.real_data sample-stats ROOT [--resamples 2000]
    python -m experiments.real_data imagewoof SRC ROOT [--workers 2]

- `fashion-mnist-prefix`: SRC holds Fashion-MNIST's `train-images-idx3-ubyte.gz` (possibly cut
  off: one public copy stops after 3,615 images) and the complete `train-labels-idx1-ubyte.gz`.
  `alexnet prep fashion-mnist` rightly refuses a truncated file; this writes OUT as a valid idx
  quartet of the first `count` images: the first count − test as `train-*`, the last `test` as
  `t10k-*` (Fashion-MNIST's own test images are not in that copy). Then
  `alexnet prep fashion-mnist --input OUT --out ROOT`.
- `ilsvrc-sample`: SRC holds real ILSVRC-2012 images named `<wnid>_<words>.JPEG` (one per class in
  the public sample). OUT becomes `train/<wnid>/<file>` (symbolic links) plus `synset_words.txt`,
  the class-folder layout `alexnet prep imagenet --input OUT --class-names OUT/synset_words.txt`
  reads. With one image per class it is for statistics (`alexnet prep stats`), not for training.
- `sample-stats`: how precisely a prepared train split of a few images fixes the channel means,
  the PCA scales √λ and the eigenvector directions: a bootstrap over whole images (resampled with
  replacement), printed next to Alex Krizhevsky's values (docs/data.md, "Measured on 1,000 real
  ILSVRC-2012 images").
- `imagewoof`: SRC is a checkout of `q878787/imagewoof2-320` (fast.ai's Imagewoof2, 320-pixel
  release: 10 dog classes of ILSVRC-2012 as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, 9,025 and
  3,929 images). Checks that SRC is exactly that release (the 10 wnid folders in each split, each
  holding only .JPEG files, as many as the release has: anything else is refused in one line
  naming the folder, exit 2, nothing written), then runs `alexnet prep imagenet --input SRC --out
  ROOT` (the class-folder layout) with the ILSVRC class names of the 10 wnids.
The CIFAR-10 JPEG mirror (train/<class>/*.jpg, test/<class>/*.jpg) needs no step of its own:
`alexnet prep images --input SRC --out ROOT`.
"""
from __future__ import annotations

import argparse
import gzip
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from data_prep import exits
from experiments.generated import _idx

SIDE = 28
# Imagewoof2 (320 px): wnid -> (ILSVRC-2012 class name, its first synonym; train images; val
# images), counted in q878787/imagewoof2-320, whose file list is fast.ai's noisy_imagewoof.csv.
IMAGEWOOF = {
    "n02086240": ("Shih-Tzu", 941, 409),
    "n02087394": ("Rhodesian ridgeback", 942, 408),
    "n02088364": ("beagle", 932, 418),
    "n02089973": ("English foxhound", 580, 224),
    "n02093754": ("Border terrier", 949, 401),
    "n02096294": ("Australian terrier", 943, 407),
    "n02099601": ("golden retriever", 949, 401),
    "n02105641": ("Old English sheepdog", 928, 422),
    "n02111889": ("Samoyed", 921, 429),
    "n02115641": ("dingo", 940, 410),
}
_WNID_FILE = re.compile(r"^(n\d{8})_(.+)\.JPEG$")


def read_idx_prefix(path: Path) -> tuple[tuple[int, ...], bytes]:
    """The header dimensions and as much of the payload as a (possibly truncated) idx .gz holds."""
    raw = Path(path).read_bytes()
    data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw)   # stops where the file does
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def fashion_mnist_prefix(src: Path, out: Path, count: int = 3600, test: int = 600) -> dict:
    """Write OUT/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz from the first `count` images."""
    if not 0 < test < count:
        raise ValueError(f"--test {test} must be between 0 and --count {count}")
    dims, payload = read_idx_prefix(Path(src) / "train-images-idx3-ubyte.gz")
    if dims[1:] != (SIDE, SIDE):
        raise ValueError(f"{src}: images are {dims[1:]}, Fashion-MNIST's are {(SIDE, SIDE)}")
    complete = len(payload) // (SIDE * SIDE)
    if complete < count:
        raise ValueError(f"{src}/train-images-idx3-ubyte.gz holds {complete} complete images, "
                         f"fewer than --count {count}")
    with gzip.open(Path(src) / "train-labels-idx1-ubyte.gz", "rb") as f:
        labels = np.frombuffer(f.read()[8:], dtype=np.uint8)
    if len(labels) < count:
        raise ValueError(f"{src}/train-labels-idx1-ubyte.gz holds {len(labels)} labels, fewer "
                         f"than --count {count}")
    images = np.frombuffer(payload[:count * SIDE * SIDE], dtype=np.uint8).reshape(count, SIDE,
                                                                                  SIDE)
    labels = labels[:count]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train = count - test
    _idx(out / "train-images-idx3-ubyte.gz", images[:train])
    _idx(out / "train-labels-idx1-ubyte.gz", labels[:train])
    _idx(out / "t10k-images-idx3-ubyte.gz", images[train:])
    _idx(out / "t10k-labels-idx1-ubyte.gz", labels[train:])
    return {"complete_images_in_source": complete, "train": train, "test": test,
            "train_per_class": np.bincount(labels[:train], minlength=10).tolist(),
            "test_per_class": np.bincount(labels[train:], minlength=10).tolist()}


def ilsvrc_sample(src: Path, out: Path) -> dict:
    """OUT/train/<wnid>/<file> links to SRC's `<wnid>_<words>.JPEG` files, OUT/synset_words.txt."""
    files = sorted(p for p in Path(src).iterdir() if _WNID_FILE.match(p.name))
    if not files:
        raise ValueError(f"{src} holds no file named <wnid>_<words>.JPEG")
    out = Path(out)
    words = {}
    for path in files:
        wnid, name = _WNID_FILE.match(path.name).groups()
        folder = out / "train" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
        words.setdefault(wnid, name.replace("_", " "))
    (out / "synset_words.txt").write_text("".join(f"{w} {n}\n" for w, n in sorted(words.items())))
    return {"images": len(files), "classes": len(words)}


class LayoutError(exits.UsageError, ValueError):
    """The input is not the release a command expects (a bad command line: exit 2)."""


def check_imagewoof(src: Path, expected: dict | None = None) -> None:
    """LayoutError naming the first folder of SRC that differs from the Imagewoof2-320 release:
    train/ and val/ each hold exactly the wnid folders of `expected`, each only .JPEG files, as
    many as `expected` (default IMAGEWOOF) says. Other entries beside train/ and val/ (a README)
    are ignored."""
    src, expected = Path(src), expected or IMAGEWOOF
    for column, split in ((1, "train"), (2, "val")):
        folder = src / split
        if not folder.is_dir():
            raise LayoutError(f"{folder}: no such folder; SRC must be a checkout of "
                              "q878787/imagewoof2-320 (train/<wnid>/, val/<wnid>/)")
        found = sorted(p.name for p in folder.iterdir())
        if found != sorted(expected):
            missing = sorted(set(expected) - set(found))
            extra = sorted(set(found) - set(expected))
            raise LayoutError(f"{folder}: expected the {len(expected)} Imagewoof wnid folders"
                              + (f", missing {', '.join(missing)}" if missing else "")
                              + (f", not Imagewoof: {', '.join(extra)}" if extra else ""))
        for wnid in sorted(expected):
            entries = list((folder / wnid).iterdir()) if (folder / wnid).is_dir() else None
            if entries is None:
                raise LayoutError(f"{folder / wnid}: not a folder")
            other = sorted(p.name for p in entries if p.suffix != ".JPEG" or not p.is_file())
            if other:
                raise LayoutError(f"{folder / wnid}: holds {len(other)} entries that are not "
                                  f".JPEG files, e.g. {other[0]!r}")
            if len(entries) != expected[wnid][column]:
                raise LayoutError(f"{folder / wnid}: {len(entries)} .JPEG files, the release has "
                                  f"{expected[wnid][column]}: fetch the repository again")


def imagewoof(src: Path, root: Path, workers: int = 2, expected: dict | None = None) -> int:
    """Check SRC's layout (LayoutError), then `alexnet prep imagenet` it into ROOT with the
    ILSVRC class names; returns prep's exit status (its summary lines are printed)."""
    import tempfile

    from data_prep.__main__ import main as prep
    expected = expected or IMAGEWOOF
    check_imagewoof(src, expected)
    with tempfile.TemporaryDirectory() as tmp:
        names = Path(tmp) / "synset_words.txt"
        names.write_text("".join(f"{w} {expected[w][0]}\n" for w in sorted(expected)))
        return prep(["imagenet", "--input", str(src), "--out", str(root), "--workers",
                     str(workers), "--class-names", str(names), "--splits", "train,val"])


def sample_stats(root: Path, resamples: int = 2000, seed: int = 0) -> list[str]:
    """Bootstrap 95% intervals of the channel means and √λ of ROOT/train, and the angles of its
    eigenvectors to Alex Krizhevsky's, as printable lines."""
    from data_prep.shards import PreparedSplit
    from data_prep.stats import load_reference

    split = PreparedSplit(Path(root) / "train")
    sums, outer, pixels = [], [], 0
    for i in range(len(split)):
        x = split.image(i).reshape(-1, split.image_shape[-1]).astype(np.float64)
        sums.append(x.sum(0))
        outer.append(x.T @ x)
        pixels = len(x)
    sums, outer = np.array(sums), np.array(outer)
    ref = load_reference()

    def estimate(idx):
        n = len(idx) * pixels
        mean = sums[idx].sum(0) / n
        val, vec = np.linalg.eigh(outer[idx].sum(0) / n - np.outer(mean, mean))
        angle = np.degrees(np.arccos(np.clip(np.abs((vec * ref["eigvec"]).sum(0)), 0, 1)))
        return mean, np.sqrt(val), angle

    every = np.arange(len(split))
    mean, scale, angle = estimate(every)
    rng = np.random.default_rng(seed)
    boot = [estimate(rng.integers(0, len(split), len(split))) for _ in range(resamples)]
    lo_hi = [np.percentile(np.array([b[k] for b in boot]), [2.5, 97.5], axis=0) for k in (0, 1)]
    far = np.percentile(np.array([b[2] for b in boot]), 97.5, axis=0)

    def row(name, ours, interval, his):
        return (f"{name:<12} " + " ".join(f"{o:8.2f} [{a:7.2f}, {b:7.2f}]" for o, a, b in
                                           zip(ours, *interval)) + "   his: "
                + " ".join(f"{h:7.2f}" for h in his))
    return [f"{len(split)} images, {resamples} bootstrap resamples of whole images (95% intervals)",
            row("mean RGB", mean, lo_hi[0], ref["mean"].mean(axis=(0, 1))),
            row("sqrt(eigval)", scale, lo_hi[1], np.sqrt(ref["eigval"])),
            "angle to his eigenvectors (ascending eigval), degrees: "
            + ", ".join(f"{a:.2f} (97.5% of resamples within {f:.2f})" for a, f in zip(angle, far))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.real_data",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fashion-mnist-prefix", help="a valid idx quartet from a truncated copy")
    p.add_argument("src", type=Path, help="folder with train-images/labels .gz files")
    p.add_argument("out", type=Path, help="output folder for the four idx files")
    p.add_argument("--count", type=int, default=3600, help="images used (default: %(default)s)")
    p.add_argument("--test", type=int, default=600,
                   help="the last images of those, written as t10k (default: %(default)s)")
    p = sub.add_parser("ilsvrc-sample", help="class folders from <wnid>_<words>.JPEG files")
    p.add_argument("src", type=Path, help="folder of <wnid>_<words>.JPEG files")
    p.add_argument("out", type=Path, help="output folder (train/<wnid>/ links)")
    p = sub.add_parser("sample-stats", help="bootstrap intervals of a small train split's stats")
    p.add_argument("root", type=Path, help="prepared ROOT")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: "
                   "%(default)s)")
    p = sub.add_parser("imagewoof", help="check a checkout of q878787/imagewoof2-320, then "
                       "prepare it (alexnet prep imagenet)")
    p.add_argument("src", type=Path, help="the checkout (train/<wnid>/, val/<wnid>/)")
    p.add_argument("root", type=Path, help="the prepared ROOT to write")
    p.add_argument("--workers", type=int, default=2, help="prep processes (default: "
                   "%(default)s)")
    args = parser.parse_args(argv)

    def work():
        if args.command == "imagewoof":
            return imagewoof(args.src, args.root, args.workers)
        if args.command == "sample-stats":
            print("\n".join(sample_stats(args.root, args.resamples)))
            return exits.DONE
        if args.command == "fashion-mnist-prefix":
            summary = fashion_mnist_prefix(args.src, args.out, args.count, args.test)
        else:
            summary = ilsvrc_sample(args.src, args.out)
        print(f"{args.command}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return exits.run(f"real_data {args.command}", work, failures=(ValueError,))  # LayoutError: 2

if __name__ == "__main__":
    sys.exit(main())
