"""§2 mean activity and §4.1 RGB PCA, computed in the same pass over the prepared train images.

- mean image: per-pixel mean over all train images, (256, 256, 3) float64, raw 0–255 RGB units;
- RGB covariance: 3×3 over every pixel of every train image (population covariance, ÷N), and its
  eigen-decomposition: eigval ascending (3,), eigvec (3, 3) with the eigenvectors as COLUMNS.

Sums are kept as exact integers (int64: a per-pixel sum is at most 255·1.3e6, a sum of channel
products at most 255²·8.4e10 ≈ 5.4e15 for ILSVRC-2012), so per-chunk partial sums combine to the
same bits whatever the chunking or the number of workers; the division to float64 happens
once, at the end (the covariance numerator exactly, in Python integers). A chunk may add its
per-pixel sums in int32 (`empty(shape, np.int32)`: half the memory traffic, exact for up to
INT32_IMAGES = 8,421,504 images, and `accumulate` refuses one more). Eigenvector signs are
arbitrary: each column is flipped so its largest-magnitude entry is positive. The lighting noise is
symmetric, so the sign never matters; compare with a reference by |cosine|.
"""
from __future__ import annotations

import os

import numpy as np

from data_prep.files import npz_bytes, write_atomic

STATS = "stats.npz"   # in the train split directory (data_prep.shards)
INT32_IMAGES = np.iinfo(np.int32).max // 255  # images whose per-pixel sums int32 holds exactly
REFERENCE = os.path.join(os.path.dirname(__file__), "reference",
                         "cuda-convnet2_imagenet_input_meta.npz")


def empty(shape=(256, 256, 3), pixel_dtype=np.int64) -> dict:
    """Zero sums for images of `shape` (H, W, C); C = 3 (RGB PCA) or 1 (a 1×1 "covariance").
    pixel_dtype int32 for a chunk's partial sums (see the module docstring)."""
    c = shape[2]
    return dict(pixel_sum=np.zeros(shape, pixel_dtype), rgb_outer=np.zeros((c, c), np.int64),
                images=np.zeros((), np.int64))


def accumulate(acc: dict, image: np.ndarray) -> None:
    """Add one uint8 (H, W, C) image to the running integer sums."""
    if (int(acc["images"]) + 1) * 255 > np.iinfo(acc["pixel_sum"].dtype).max:
        raise ValueError(f"{acc['pixel_sum'].dtype} per-pixel sums would overflow after "
                         f"{int(acc['images'])} images: use fewer images per accumulator")
    np.add(acc["pixel_sum"], image, out=acc["pixel_sum"])
    planes = np.ascontiguousarray(image.reshape(-1, image.shape[-1]).T, dtype=np.float64)
    # per image the sums are integers < 2^53, so float64 dot products are exact here (one per
    # channel pair). Measured in prep, after the stored JPEG's decode (256x256x3): 0.44 ms,
    # against 0.58 for float32 sums of 256 products (exact: < 2^24), 0.69 for dots over
    # strided columns and 0.87 for 256 float32 row Gram matrices. The channel sums are not
    # kept: they are pixel_sum summed over H and W (see finalize)
    c = len(planes)
    for i in range(c):
        for j in range(i, c):
            acc["rgb_outer"][i, j] += int(np.dot(planes[i], planes[j]))
            acc["rgb_outer"][j, i] = acc["rgb_outer"][i, j]
    acc["images"] += 1


def combine(parts) -> dict:
    """Sum partial accumulators (exact integer addition: order does not matter)."""
    parts = list(parts)
    total = empty(parts[0]["pixel_sum"].shape)
    for p in parts:
        for k in total:
            total[k] = total[k] + p[k]
    return total


def finalize(acc: dict) -> dict:
    n = int(acc["images"])
    if n == 0:
        raise ValueError("no train images were accumulated: cannot compute the mean image")
    h, w, _ = acc["pixel_sum"].shape
    pixels = n * h * w
    mean = acc["pixel_sum"].astype(np.float64) / n
    s = [int(v) for v in acc["pixel_sum"].sum(axis=(0, 1))]  # exact: int64
    c = len(s)
    cov = np.array([[(pixels * int(acc["rgb_outer"][i, j]) - s[i] * s[j]) / (pixels * pixels)
                     for j in range(c)] for i in range(c)], dtype=np.float64)
    eigval, eigvec = np.linalg.eigh(cov)
    flip = np.sign(eigvec[np.argmax(np.abs(eigvec), axis=0), np.arange(c)])
    eigvec = eigvec * flip
    return dict(mean=mean, eigval=eigval, eigvec=eigvec, cov=cov,
                rgb_mean=np.array([v / pixels for v in s]), images=np.int64(n),
                **{f"acc_{k}": v for k, v in acc.items() if k != "images"})


def save(split_dir: str, acc: dict) -> dict:
    stats = finalize(acc)
    write_atomic(os.path.join(split_dir, STATS), npz_bytes(**stats))
    return stats


def load(root) -> dict:
    """ROOT (holding train/) or a split directory -> dict(mean (H,W,C) f64, eigval (C,) ascending,
    eigvec (C,C) columns, cov, rgb_mean, images). C = 3 for RGB data (1 for Fashion-MNIST)."""
    root = os.fspath(root)
    for path in (os.path.join(root, "train", STATS), os.path.join(root, STATS)):
        if os.path.exists(path):
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in ("mean", "eigval", "eigvec", "cov", "rgb_mean", "images")}
    raise FileNotFoundError(f"no {STATS} under {root} (looked in {root}/train and {root}): "
                            f"statistics are written by 'alexnet prep imagenet' for the train split")


def load_reference(path: str = REFERENCE) -> dict:
    """Alex Krizhevsky's ILSVRC-2012 mean image and PCA (cuda-convnet2, Apache-2.0) in our layout."""
    with np.load(path, allow_pickle=False) as z:
        stdevs = z["pca_stdevs_0to255"].astype(np.float64)
        return dict(mean=np.transpose(z["data_mean_chw_0to255"], (1, 2, 0)).astype(np.float64),
                    eigval=stdevs ** 2, eigvec=z["pca_eigvecs_cols"].astype(np.float64))


def compare(stats: dict, reference: dict) -> dict:
    """Numbers to judge a prepared stats file against the reference (same units, 0–255)."""
    ours_std, ref_std = np.sqrt(np.maximum(stats["eigval"], 0)), np.sqrt(reference["eigval"])
    out = dict(channel_mean=stats["mean"].mean(axis=(0, 1)).tolist(),
               reference_channel_mean=reference["mean"].mean(axis=(0, 1)).tolist(),
               pca_stdevs=ours_std.tolist(), reference_pca_stdevs=ref_std.tolist(),
               eigvec_abs_cosine=np.abs(np.sum(stats["eigvec"] * reference["eigvec"], 0)).tolist())
    if stats["mean"].shape == reference["mean"].shape:
        out["mean_image_rms_difference"] = float(np.sqrt(np.mean(
            (stats["mean"] - reference["mean"]) ** 2)))
    return out
