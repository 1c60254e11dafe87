"""Rebuild the real-data inputs of the example reports from public copies of the datasets.

None of this is downloaded at run time: clone the public repositories yourself, then

    python -m experiments.real_data fashion-mnist-prefix SRC OUT [--count 3600] [--test 600]
    python -m experiments.real_data ilsvrc-sample SRC OUT

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

from experiments.generated import _idx

SIDE = 28
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
    args = parser.parse_args(argv)
    try:
        if args.command == "fashion-mnist-prefix":
            summary = fashion_mnist_prefix(args.src, args.out, args.count, args.test)
        else:
            summary = ilsvrc_sample(args.src, args.out)
    except (OSError, ValueError) as err:
        print(f"real_data {args.command}: {err}", file=sys.stderr)
        return 1
    print(f"{args.command}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
