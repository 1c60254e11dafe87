"""§2 preprocessing, done once: rescale so the SHORTER side is 256, then take the central 256×256.

Resampling follows the author's own prep code (cuda-convnet2 make-data, pyext.cpp `makeJPEG`):
new size = round(scale · side) with scale = 256 / shorter side; OpenCV INTER_AREA when shrinking,
INTER_CUBIC when enlarging, plain copy at scale 1; crop offset (new - 256) // 2 on each axis, so an
odd margin keeps the top/left pixel and drops the extra one on the right / at the bottom (341
wide: columns 42..297 are kept).

Shrinking is a true area average, as INTER_AREA: output pixel j of an axis shrunk from n to m
pixels is the mean of the input interval [j·n/m, (j+1)·n/m), each input pixel weighted by the
length of it that the interval covers (so a partly covered pixel counts in part). PIL's BOX filter
is NOT this for a fractional scale: it averages, with equal weights, the pixels whose centres fall
in the interval ([0, 90, 180] to 2 pixels: BOX [45, 180], area [30, 150]); the two agree only for
whole-number factors. The average is separable: two matrix products with the (banded) coverage
weights, cut into blocks of output rows so that only the band is multiplied, computed only for the
rows and columns that survive the crop, in float32 (exact for whole-number factors: integer sums),
rounded half up. BLAS kernels differ between CPU types, so on another machine a pixel within
float32 error of x.5 may round the other way.

Enlarging is OpenCV's INTER_CUBIC as cv::resize computes it for 8-bit images: cubic convolution with
a = -0.75 (PIL's BICUBIC has a = -0.5, a different filter); output pixel j reads source position
x = (j + 0.5)·n/m - 0.5 (pixel centres), taps floor(x) - 1 .. floor(x) + 2, indices clamped to the
image (replicate border); the four float32 weights are rounded to 11-bit fixed point (units of
1/2048), the two passes summed exactly in int32 and the result rounded half up, (v + 2^21) >> 22,
and saturated to 0..255. Integers throughout, so it is the same on every CPU. Only the rows and
columns that survive the crop are computed.
No `reducing_gap` and no JPEG `draft()`: both would change pixels (docs/data.md measures draft()).
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from data_prep import blas

SIZE = 256  # §2
RESAMPLE = ("shorter side to size: area average with fractional pixel weights (OpenCV INTER_AREA) "
            "when shrinking, OpenCV INTER_CUBIC (a = -0.75, 11-bit weights) when enlarging "
            "(cuda-convnet2); central crop")  # manifests
BLOCK_ROWS, BLOCK_COLS = 16, 8  # output rows / columns per matrix product (measured fastest)
CUBIC_A = np.float32(-0.75)  # OpenCV's interpolateCubic (PIL's BICUBIC: -0.5)
COEF_BITS = 11               # cv::resize's INTER_RESIZE_COEF_BITS: 8-bit images, weights in 1/2048


def target_size(width: int, height: int, size: int = SIZE) -> tuple[int, int]:
    """(new_width, new_height): shorter side == size, longer side rounded like Alex's code."""
    scale = size / min(width, height)
    new_w, new_h = round(scale * width), round(scale * height)
    # round() can only ever lose the exact value on the shorter side by float error: pin it
    if width <= height:
        new_w = size
    if height <= width:
        new_h = size
    return max(new_w, size), max(new_h, size)


def coverage(j, x, n_in: int, n_out: int) -> np.ndarray:
    """The length of input pixel x covered by output pixel j (integer arrays, broadcast) for an
    axis shrunk from n_in to n_out pixels; 0 where it does not cover it. Computed in integers
    (units of 1/n_out) and divided once, so whole-number factors give exactly 1 or 0."""
    covered = np.minimum((x + 1) * n_out, (j + 1) * n_in) - np.maximum(x * n_out, j * n_in)
    return np.clip(covered, 0, None) / n_out


@functools.lru_cache(maxsize=1024)  # images share sizes (ILSVRC: 500x375 and 375x500 are common)
def _bands(first, count, n_in, n_out, block, channels):
    """(lo, n, blocks): output pixels first..first+count-1 of an axis shrunk from n_in to n_out
    cover input pixels lo..lo+n-1. blocks = [(j0, j1, k0, k1, weights float32)], one per `block`
    output pixels j0..j1-1, which cover input pixels k0..k1-1 (relative to lo). The weights
    left-multiply, (j1-j0) × (k1-k0); with channels C > 0 they right-multiply an interleaved
    (rows, pixels·C) array instead, (k1-k0)·C × (j1-j0)·C."""
    lo = (first * n_in) // n_out
    n = min(-(-((first + count) * n_in) // n_out), n_in) - lo
    j0 = np.arange(0, count, block)
    j1 = np.minimum(j0 + block, count)
    k0 = ((first + j0) * n_in) // n_out - lo
    k1 = np.minimum(-(-((first + j1) * n_in) // n_out) - lo, n)
    width = int((k1 - k0).max())
    j = first + j0[:, None, None] + np.arange(block)[None, :, None]     # (blocks, block, 1)
    x = lo + k0[:, None, None] + np.arange(width)[None, None, :]        # (blocks, 1, width)
    w = coverage(j, x, n_in, n_out).astype(np.float32)                 # (blocks, block, width)
    if channels:  # w[b, j, k] -> (k·C + c, j·C + c): one channel never mixes with another
        wc = np.zeros((len(j0), width, channels, block, channels), np.float32)
        for c in range(channels):
            wc[:, :, c, :, c] = w.transpose(0, 2, 1)
        w = wc.reshape(len(j0), width * channels, block * channels)
    out = []
    for b in range(len(j0)):
        rows, cols = int(j1[b] - j0[b]), int(k1[b] - k0[b])
        wb = w[b, :cols * channels, :rows * channels] if channels else w[b, :rows, :cols]
        out.append((int(j0[b]), int(j1[b]), int(k0[b]), int(k1[b]), np.ascontiguousarray(wb)))
    return lo, n, out


def area_resize_crop(image: Image.Image, new_w: int, new_h: int, left: int, top: int,
                     size: int) -> Image.Image:
    """The size×size patch at (left, top) of `image` area-averaged to new_w×new_h (a shrink on
    both axes), computed only for that patch."""
    width, height = image.size
    channels = len(image.getbands())
    y0, used_rows, rows_v = _bands(top, size, height, new_h, BLOCK_ROWS, 0)
    x0, used_cols, cols_h = _bands(left, size, width, new_w, BLOCK_COLS, channels)
    # only the input pixels the patch covers leave PIL (its crop is a C copy)
    src = np.asarray(image.crop((x0, y0, x0 + used_cols, y0 + used_rows)))
    src = src.reshape(used_rows, used_cols * channels)             # interleaved, uint8
    with blas.one_thread():  # small products: BLAS threads would only spin (data_prep.blas)
        rows = np.empty((size, src.shape[1]), np.float32)        # vertical pass: area sums
        for j0, j1, k0, k1, wb in rows_v:
            np.matmul(wb, src[k0:k1].astype(np.float32), out=rows[j0:j1])
        out = np.empty((size, size * channels), np.float32)      # horizontal pass
        for j0, j1, k0, k1, wb in cols_h:
            np.matmul(rows[:, k0 * channels:k1 * channels], wb,
                      out=out[:, j0 * channels:j1 * channels])
    out /= np.float32(width * height / (new_w * new_h))          # sums -> means (exact if whole)
    out += np.float32(0.5)                                        # round half up: floor(x + 0.5)
    pixels = out.astype(np.uint8).reshape(size, size, channels)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels)


def cubic_weights(t: np.ndarray) -> np.ndarray:
    """(len(t), 4) float32 weights of taps floor(x) - 1 .. floor(x) + 2 for fractional offsets
    t = x - floor(x) (float32), evaluated as OpenCV's interpolateCubic does, in float32: the last
    weight is 1 minus the others."""
    a, one = CUBIC_A, np.float32(1)
    w0 = ((a * (t + one) - 5 * a) * (t + one) + 8 * a) * (t + one) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + one
    w2 = ((a + 2) * (one - t) - (a + 3)) * (one - t) * (one - t) + one
    w3 = one - w0 - w1 - w2
    return np.stack([w0, w1, w2, w3], axis=1)


@functools.lru_cache(maxsize=1024)  # images share sizes
def _cubic_taps(first: int, count: int, n_in: int, n_out: int, channels: int):
    """(lo, hi, index, weights) for output pixels first..first+count-1 of an axis enlarged from
    n_in to n_out pixels: they read source pixels lo..hi-1. index[k] (4, count·channels) is the
    position, relative to lo, of tap k of each output value in a row of `channels` interleaved
    values per pixel (index[k][j·C + c] reads pixel tap_k(j), channel c); weights[k] int32 is its
    11-bit fixed-point weight. Taps outside the image read its first / last pixel."""
    scale = 1.0 / (n_out / n_in)  # as cv::resize: from its inverse, in double
    x = ((np.arange(first, first + count) + 0.5) * scale - 0.5).astype(np.float32)
    floor = np.floor(x)
    weights = np.rint(cubic_weights(x - floor) * np.float32(1 << COEF_BITS)).astype(np.int32)
    taps = np.clip(floor.astype(np.int64)[:, None] + np.arange(-1, 3), 0, n_in - 1)  # (count, 4)
    lo, hi = int(taps.min()), int(taps.max()) + 1
    index = (taps.T[:, :, None] - lo) * channels + np.arange(channels)     # (4, count, C)
    weights = np.repeat(weights.T[:, :, None], channels, axis=2)          # (4, count, C)
    index, weights = index.reshape(4, -1), weights.reshape(4, -1)
    index.flags.writeable = weights.flags.writeable = False  # cached: shared by every call
    return lo, hi, index, weights


def cubic_resize_crop(image: Image.Image, new_w: int, new_h: int, left: int, top: int,
                      size: int) -> Image.Image:
    """The size×size patch at (left, top) of `image` enlarged to new_w×new_h by cubic convolution
    (OpenCV INTER_CUBIC, 8-bit), computed only for that patch: horizontal pass first, on the
    few source rows, then the vertical one, both in exact integers."""
    width, height = image.size
    channels = len(image.getbands())
    y0, y1, rows, beta = _cubic_taps(top, size, height, new_h, 1)
    x0, x1, cols, alpha = _cubic_taps(left, size, width, new_w, channels)
    src = np.asarray(image.crop((x0, y0, x1, y1))).reshape(y1 - y0, (x1 - x0) * channels)
    # |sums| <= 255 · 2816² < 2^31 (2816 = 2048 · 1.375, the largest sum of |weights|): int32
    across = alpha[0] * np.take(src, cols[0], axis=1)                    # (y1 - y0, size·C)
    for k in range(1, 4):
        across += alpha[k] * np.take(src, cols[k], axis=1)
    total = beta[0][:, None] * across[rows[0]]                            # (size, size·C)
    for k in range(1, 4):
        total += beta[k][:, None] * across[rows[k]]
    shift = 2 * COEF_BITS
    total += 1 << (shift - 1)
    total >>= shift  # floor: rounds half up, negative values included
    pixels = np.clip(total, 0, 255).astype(np.uint8).reshape(size, size, channels)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels)


def resize_center_crop(image: Image.Image, size: int = SIZE) -> Image.Image:
    """Shorter side to `size`, then the central size×size patch; an odd margin drops its extra
    pixel on the right / at the bottom (offset = margin // 2). As the author's makeJPEG: area
    average when shrinking, cubic when enlarging, a plain copy at scale 1."""
    width, height = image.size
    new_w, new_h = target_size(width, height, size)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    short = min(width, height)
    if short > size:
        return area_resize_crop(image, new_w, new_h, left, top, size)
    if short < size:
        return cubic_resize_crop(image, new_w, new_h, left, top, size)
    return image.crop((left, top, left + size, top + size))
