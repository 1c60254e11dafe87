"""Generated stand-ins for CIFAR-10 and Fashion-MNIST, written in the REAL file formats (python
batches; gzipped idx files) so that `alexnet prep cifar10|fashion-mnist` reads them like the real
thing, for the tests and for trying the pipeline where the real data cannot be downloaded (this
project downloads nothing). The example reports of Figure 1 (§3.1) and of the course-notes row
(docs/paper.md §10) in experiments/reports/ are made from real images, not from these.

They are learnable, not trivial: each class is a smooth random template (low-frequency colour
field), every image is its class's template shifted by a few pixels, scaled in contrast, with a
random colour cast and smooth per-image noise of amplitude `noise` (the difficulty knob). Output is
a function of `seed` only.

`alexnet experiment generate cifar10|fashion-mnist OUT [--train N] [--test N] [--noise X]`.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]


def _smooth_field(rng: np.random.Generator, n: int, size: int, channels: int,
                  cells: int) -> np.ndarray:
    """n smooth random fields (n, size, size, channels) in about [-1, 1]: a coarse grid of
    Gaussian values, bilinearly upsampled."""
    coarse = rng.standard_normal((n, cells, cells, channels))
    pos = np.linspace(0, cells - 1, size)
    i0 = np.floor(pos).astype(int).clip(0, cells - 2)
    f = (pos - i0)[None, :, None, None]
    rows = coarse[:, i0] * (1 - f) + coarse[:, i0 + 1] * f                     # (n, size, cells, c)
    f = (pos - i0)[None, None, :, None]
    return rows[:, :, i0] * (1 - f) + rows[:, :, i0 + 1] * f                   # (n, size, size, c)


def images(seed: int, count: int, size: int, channels: int, noise: float,
           num_classes: int = 10, shift: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (count, size, size, channels), int labels (count,)), classes balanced."""
    rng = np.random.default_rng(seed)
    templates = _smooth_field(np.random.default_rng(1234), num_classes, size + 2 * shift,
                              channels, cells=5)
    labels = np.arange(count) % num_classes
    rng.shuffle(labels)
    dy, dx = rng.integers(0, 2 * shift + 1, (2, count))
    out = np.empty((count, size, size, channels), dtype=np.uint8)
    for start in range(0, count, 1024):      # in blocks: the noise fields are large
        idx = np.arange(start, min(count, start + 1024))
        field = _smooth_field(rng, len(idx), size, channels, cells=7)
        contrast = rng.uniform(0.6, 1.2, (len(idx), 1, 1, 1))
        cast = rng.normal(0, 0.2, (len(idx), 1, 1, channels))
        crops = np.stack([templates[labels[i], dy[i]:dy[i] + size, dx[i]:dx[i] + size]
                          for i in idx])
        x = contrast * crops + cast + noise * field
        out[idx] = np.clip(128 + 100 * x / (1 + noise), 0, 255).astype(np.uint8)
    return out, labels.astype(np.int64)


def write_cifar10(out: str | Path, train: int = 5000, test: int = 1000, noise: float = 3.0,
                  seed: int = 0) -> Path:
    """OUT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}, the real layout:
    pickled dicts with b"data" (N, 3072) uint8 in R, G, B planes and b"labels"."""
    folder = Path(out) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    x, y = images(seed, train + test, 32, 3, noise)
    planes = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)     # row-major R, G, B planes
    bounds = np.linspace(0, train, 6).astype(int)
    batches = [(f"data_batch_{k + 1}", slice(bounds[k], bounds[k + 1])) for k in range(5)]
    batches.append(("test_batch", slice(train, train + test)))
    for name, part in batches:
        ids = range(part.start, part.stop)
        record = {b"batch_label": name.encode(), b"labels": [int(v) for v in y[part]],
                  b"data": np.ascontiguousarray(planes[part]),
                  b"filenames": [f"generated_{i:06d}.png".encode() for i in ids]}
        with open(folder / name, "wb") as f:
            pickle.dump(record, f, protocol=2)
    meta = {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_cases_per_batch": 10000,
            b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder


def _idx(path: Path, array: np.ndarray) -> None:
    """The idx format: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian dims, raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(out: str | Path, train: int = 2000, test: int = 500, noise: float = 3.0,
                        seed: int = 0) -> Path:
    """OUT/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, Fashion-MNIST's file names."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    x, y = images(seed, train + test, 28, 1, noise)
    _idx(folder / "train-images-idx3-ubyte.gz", x[:train, :, :, 0])
    _idx(folder / "train-labels-idx1-ubyte.gz", y[:train])
    _idx(folder / "t10k-images-idx3-ubyte.gz", x[train:, :, :, 0])
    _idx(folder / "t10k-labels-idx1-ubyte.gz", y[train:])
    return folder
