"""docs/paper.md §1 (§2 of the paper): the images of the synthetic ImageNet-shaped dataset
(data_prep.synthetic writes them in the raw ILSVRC-2012 layouts).

Each class is a (hue, pattern) pair: a textured ellipse (stripes, checkerboard, dots, rings or
waves, at a class-specific angle) in a saturated class hue, on a smooth, weakly coloured noisy
background. Every hue is shared by two classes and every pattern by two classes, so neither colour
nor shape alone separates them. Position, scale, period, angle, colours, background and image size
(180-500 px per side, portrait and landscape) vary per image; the texture period is a fraction of
the image, so it survives the §2 short-side-256 resize and the §4.1 random 224 crops. Angles lie in
[0°, 90°) so a horizontal flip never turns one class into another. Each image has its own
generator seeded by (seed, split, class, index), so it depends on nothing else.
"""
from __future__ import annotations

import colorsys
import io
import math

import numpy as np
from PIL import Image

FAMILIES = ("stripes", "checkerboard", "dots", "rings", "waves")
HUE_NAMES = ("red", "orange", "yellow", "lime", "green", "spring", "cyan", "azure", "blue",
             "violet", "magenta", "rose")
JPEG_QUALITY = 90
SIDE_RANGE = (180, 500)
_SPLIT_CODE = {"train": 0, "val": 1}


def class_design(c: int, num_classes: int) -> dict:
    """(hue, family, angle) of class c. The first ceil(N/2) classes take hue i and pattern i; the
    others take hue j and pattern j+shift, so every hue and every pattern appears in two classes."""
    hues = math.ceil(num_classes / 2)
    patterns = max(2, hues)
    if c < hues:
        hue_index, pattern = c, c
    else:
        hue_index = c - hues
        pattern = (hue_index + max(1, patterns // 2)) % patterns
    family, variant = pattern % len(FAMILIES), pattern // len(FAMILIES)
    hue = (hue_index / hues + 0.02) % 1.0
    angle = (20.0 + 37.0 * variant) % 90.0 if family != 3 else 0.0
    name = f"{HUE_NAMES[int(hue * len(HUE_NAMES)) % len(HUE_NAMES)]} {FAMILIES[family]}"
    if variant:
        name += f" {angle:.0f} deg"
    return {"hue": hue, "hue_step": 1.0 / hues, "family": family, "angle": angle,
            "period_scale": 1.0 + 0.15 * (variant % 3), "name": name}


def _pattern(family: int, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Texture in [-1, 1] over rotated object coordinates (u, v), in pixels."""
    w = 2 * np.pi / period
    if family == 0:
        s = np.sin(w * u)
    elif family == 1:
        s = np.sin(w * u) * np.sin(w * v) * 2.0
    elif family == 2:
        s = (np.cos(w * u) + np.cos(w * v)) - 0.6
    elif family == 3:
        s = np.sin(w * np.sqrt(u * u + v * v))
    else:
        s = np.sin(w * (u + 0.3 * period * np.sin(0.5 * w * v)))
    return np.clip(3.0 * s, -1.0, 1.0)  # sharp edges, still anti-aliased a little


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


def render(rng: np.random.Generator, design: dict, height: int, width: int) -> np.ndarray:
    """One image of a class, uint8 (height, width, 3)."""
    short = min(height, width)
    # background: a smooth colour-noise field (a distractor of every hue, weaker than the object's
    # saturated hue) around a random low-saturation tint, upscaled from a coarse grid
    grid = rng.integers(3, 8)
    base = _rgb(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.3, 0.85))
    coarse = (base + rng.normal(0, 30, size=(grid, grid, 1))
              + rng.normal(0, 22, size=(grid, grid, 3))).astype(np.float32)
    coarse = np.clip(coarse, 0, 255).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC),
                       dtype=np.float32)
    # object: a textured ellipse near the centre, so the §2 centre crop keeps most of it
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cy = height / 2 + rng.uniform(-0.15, 0.15) * short
    cx = width / 2 + rng.uniform(-0.15, 0.15) * short
    ry, rx = rng.uniform(0.28, 0.48, size=2) * short
    tilt = np.deg2rad(rng.uniform(0, 180))
    dy, dx = ys - cy, xs - cx
    eu = (dx * np.cos(tilt) + dy * np.sin(tilt)) / rx
    ev = (-dx * np.sin(tilt) + dy * np.cos(tilt)) / ry
    mask = np.clip((1.0 - np.sqrt(eu * eu + ev * ev)) * short / 4.0, 0.0, 1.0)[..., None]
    theta = np.deg2rad(design["angle"] + rng.uniform(-8, 8))
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    period = short * rng.uniform(1 / 10, 1 / 6) * design["period_scale"]
    texture = (_pattern(design["family"], u, v, period)[..., None] + 1.0) / 2.0
    hue = design["hue"] + rng.uniform(-0.2, 0.2) * design["hue_step"]
    light = _rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
    dark = light * rng.uniform(0.15, 0.45)
    obj = dark + texture * (light - dark)
    image = image * (1.0 - mask) + obj * mask
    image += rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(3, 12)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _encode(array: np.ndarray, anomaly: str | None = None) -> bytes:
    """JPEG bytes (quality 90), or one of the real ILSVRC-2012 anomalies (docs/paper.md §1)."""
    out = io.BytesIO()
    image = Image.fromarray(array)
    if anomaly == "png":          # like n02105855_2933.JPEG: PNG data under a .JPEG name
        image.save(out, format="PNG", optimize=False, compress_level=6)
    elif anomaly == "cmyk":       # like the 22 CMYK training JPEGs
        image.convert("CMYK").save(out, format="JPEG", quality=JPEG_QUALITY)
    elif anomaly == "grayscale":  # single-channel JPEG
        image.convert("L").save(out, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def image_bytes(seed: int, split: str, c: int, k: int, num_classes: int,
                anomaly: str | None = None) -> bytes:
    """The encoded k-th image of class c in a split; depends only on its arguments."""
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], c, k])
    height, width = (int(x) for x in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, size=2))
    return _encode(render(rng, class_design(c, num_classes), height, width), anomaly)
