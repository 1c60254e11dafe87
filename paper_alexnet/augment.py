"""§4.1 data augmentation and §2 mean subtraction, as batched tensor ops on uint8 batches.

The same functions run on the CPU (in decode workers, after PIL decode) and on the GPU (after
batched nvjpeg decode), so both input backends share one semantics:

- training: a random `size`x`size` window of the stored 256x256 image (every offset 0..256-size
  on each axis: 33 for 224, as in Alex's code), mirrored left-right with probability 1/2, plus PCA
  lighting: the RGB shift sum_i p_i alpha_i s_i added to every pixel, alpha_i ~ N(0, pca_std) drawn
  anew for each presentation; s_i = sqrt(lambda_i) in 0-255 units (Alex's code, the default) or
  lambda_i with pixels in [0,1] (the paper's formula as printed; fb.resnet.torch);
- evaluation (§6): the centre window, or ten views: the 4 corners and the centre, then the same
  five mirrored, the ten views of an image consecutive;
- mean subtraction (§2): the mean image's central window taken from every view (Alex's code,
  "center") or the mean at the view's own offset, mirrored with it (Caffe, "aligned");
- geometry "resize": the whole stored image scaled (bilinear) to the model's input size, for the
  small datasets (Fashion-MNIST 28 -> 224; CIFAR-10 32 -> 32 is a no-op).

Randomness is counter-based: every draw is a SplitMix64 hash of (seed, epoch, sample index, slot),
so a sample's crop, flip and alpha do not depend on the batch it lands in, the number of workers,
the rank or the device. Draws are made on the host (numpy, exact 64-bit integer arithmetic) and
carried with the batch; nothing here waits for the device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Fixed draw slots per sample, so one option being off never shifts another option's draws.
_SLOT_OY, _SLOT_OX, _SLOT_FLIP, _SLOT_ALPHA = 0, 1, 2, 3   # alpha takes slots 3..6 (Box-Muller)
_SLOTS = 7


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014) on uint64 arrays; wraps modulo 2**64 by design."""
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def sample_keys(seed: int, epoch: int, indices) -> np.ndarray:
    """One 64-bit key per sample: a hash of (seed, epoch, sample index), nothing else."""
    indices = np.asarray(indices, dtype=np.int64).astype(np.uint64)
    key = _splitmix64(np.full(indices.shape, seed % 2**64, dtype=np.uint64))
    key = _splitmix64(key ^ np.uint64(epoch % 2**64))
    return _splitmix64(key ^ indices)


def uniforms(keys: np.ndarray, slots: int) -> np.ndarray:
    """(N, slots) float64 uniforms in [0, 1): the top 53 bits of hash(key, slot)."""
    with np.errstate(over="ignore"):
        counters = keys[:, None] + np.arange(1, slots + 1, dtype=np.uint64) * _MIX2
    return (_splitmix64(counters) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


@dataclass(frozen=True)
class Draws:
    """Per-sample augmentation parameters (host numpy arrays, one row per sample)."""

    oy: np.ndarray      # int64 (N,): top of the window
    ox: np.ndarray      # int64 (N,): left of the window
    flip: np.ndarray    # bool (N,): mirror left-right
    alpha: np.ndarray   # float64 (N, 3): the PCA coefficients alpha_i ~ N(0, pca_std)


def draw_train(seed: int, epoch: int, indices, offsets: int, flip: bool, pca_std: float) -> Draws:
    """§4.1 draws for training samples: `offsets` window positions per axis (33 for 224 of 256)."""
    u = uniforms(sample_keys(seed, epoch, indices), _SLOTS)
    oy = np.minimum((u[:, _SLOT_OY] * offsets).astype(np.int64), offsets - 1)
    ox = np.minimum((u[:, _SLOT_OX] * offsets).astype(np.int64), offsets - 1)
    mirror = (u[:, _SLOT_FLIP] < 0.5) if flip else np.zeros(len(u), dtype=bool)
    # Box-Muller on two pairs of uniforms gives 4 standard normals; the first 3 are alpha.
    a = _SLOT_ALPHA
    radius = np.sqrt(-2.0 * np.log1p(-u[:, [a, a + 2]]))            # 1-u in (0, 1]
    angle = 2.0 * np.pi * u[:, [a + 1, a + 3]]
    normals = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=1)[:, :3]
    return Draws(oy, ox, mirror, normals * pca_std)


def eval_offsets(height: int, width: int, size: int, view: str):
    """§6 views of one image as (oy, ox, flip) arrays: "center" (1 view) or "ten_crop" (10 views:
    top-left, top-right, bottom-left, bottom-right, centre, then the same five mirrored)."""
    cy, cx = (height - size) // 2, (width - size) // 2
    if view == "center":
        return np.array([cy]), np.array([cx]), np.array([False])
    if view == "ten_crop":
        oy = np.array([0, 0, height - size, height - size, cy] * 2)
        ox = np.array([0, width - size, 0, width - size, cx] * 2)
        return oy, ox, np.array([False] * 5 + [True] * 5)
    raise ValueError(f"eval view {view!r} is not one of center, ten_crop")


def crop_flip(images: torch.Tensor, oy, ox, flip, size: int, source=None, impl: str = "auto"):
    """(N, C, H, W) -> (V, C, size, size): view k is the window at (oy[k], ox[k]) of image
    source[k] (default k), mirrored left-right where flip[k]. Exact for any dtype; the result has
    channels-last strides. impl "slice" loops over views (fast on CPU; `images` may also be a list
    of (C, H, W) tensors, so workers need not stack whole images), "gather" is one indexing kernel
    (fast on GPU); "auto" picks by device. Both are tested against each other."""
    n_views, first = len(oy), images[0]
    if impl == "auto":
        impl = "slice" if first.device.type == "cpu" else "gather"
    if impl == "slice":
        out = torch.empty((n_views, first.shape[0], size, size), dtype=first.dtype,
                          device=first.device, memory_format=torch.channels_last)
        source = range(n_views) if source is None else np.asarray(source).tolist()
        oy, ox, flip = (np.asarray(a).tolist() for a in (oy, ox, flip))
        for k, (s, y, x, f) in enumerate(zip(source, oy, ox, flip)):
            window = images[s][:, y:y + size, x:x + size]
            out[k] = window.flip(-1) if f else window
        return out
    if impl == "gather":
        dev = images.device

        def on_device(a):
            # Pass pinned CPU tensors (the loader's): a copy from pageable memory would make the
            # host wait for the stream (docs/ARCHITECTURE.md decision 5).
            a = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
            return a.to(dev, non_blocking=True)
        steps = torch.arange(size, device=dev)
        source = torch.arange(n_views, device=dev) if source is None else on_device(source)
        rows = on_device(oy)[:, None] + steps                                          # (V, S)
        cols = on_device(ox)[:, None] + torch.where(on_device(flip)[:, None], size - 1 - steps,
                                                    steps)                             # (V, S)
        picked = images[source[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        return picked.permute(0, 3, 1, 2)                  # (V, S, S, C) -> (V, C, S, S)
    raise ValueError(f"crop_flip impl {impl!r} is not one of auto, slice, gather")


def mean_views(mean: torch.Tensor, oy, ox, flip, size: int, alignment: str) -> torch.Tensor:
    """§2 mean image to subtract from each view; mean is (C, H, W) float on the views' device.
    "center": its central window, (C, size, size), the same for every view (Alex's code);
    "aligned": its window at each view's offset, mirrored with the view, (V, C, size, size)."""
    if alignment == "center":
        y0, x0 = (mean.shape[1] - size) // 2, (mean.shape[2] - size) // 2
        return mean[:, y0:y0 + size, x0:x0 + size]
    if alignment == "aligned":
        return crop_flip(mean.expand(len(oy), -1, -1, -1), oy, ox, flip, size)
    raise ValueError(f"mean alignment {alignment!r} is not one of center, aligned")


def lighting_shift(alpha: torch.Tensor, eigval: torch.Tensor, eigvec: torch.Tensor,
                   scale: str) -> torch.Tensor:
    """§4.1 PCA lighting: (N, 3) alpha -> (N, 3) RGB shift sum_i p_i alpha_i s_i, in 0-255 units.
    eigval are the eigenvalues of the RGB covariance in 0-255 units squared, eigvec its unit
    eigenvectors p_i as columns. "sqrt_eigval": s_i = sqrt(lambda_i) (Alex's code); "eigval":
    s_i = lambda_i with pixels in [0,1], i.e. lambda_i / 255**2, and the shift times 255."""
    if scale == "sqrt_eigval":
        s = eigval.clamp(min=0).sqrt()
    elif scale == "eigval":
        s = eigval / 255.0
    else:
        raise ValueError(f"pca scale {scale!r} is not one of sqrt_eigval, eigval")
    return (alpha * s) @ eigvec.T                      # row n: sum_i eigvec[:, i] alpha[n, i] s_i


def photometric(views: torch.Tensor, mean: torch.Tensor, shift: torch.Tensor | None = None,
                memory_format=torch.contiguous_format) -> torch.Tensor:
    """uint8 views (V, C, S, S) -> float32: minus the mean (broadcast), plus the per-view RGB shift.
    One conversion pass into the requested memory format, then in-place arithmetic: on a CPU
    these passes over the batch are memory-bound, and fresh allocations cost as much as the math."""
    out = torch.empty(views.shape, dtype=torch.float32, device=views.device,
                      memory_format=memory_format)
    out.copy_(views)
    out.sub_(mean)
    if shift is not None:
        out.add_(shift.to(out.dtype)[:, :, None, None])
    return out


def resize_views(images: torch.Tensor, mean: torch.Tensor, size: int, flip,
                 shift: torch.Tensor | None = None) -> torch.Tensor:
    """Geometry "resize": uint8 (N, C, h, w) -> float32 (N, C, size, size). The mean is taken off
    at the stored size (bilinear resizing is linear, so this equals subtracting the resized mean),
    then the image is scaled, mirrored where flip, and shifted."""
    out = images.to(torch.float32) - mean
    if out.shape[-2:] != (size, size):
        out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False,
                            antialias=False)
    zeros = torch.zeros(len(out), dtype=torch.int64, device=out.device)
    out = crop_flip(out, zeros, zeros, flip, size)
    if shift is not None:
        out = out + shift.to(out.dtype)[:, :, None, None]
    return out
