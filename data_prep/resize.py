"""§2 preprocessing, done once: rescale so the SHORTER side is 256, then take the central 256×256.

Resampling follows the author's own prep code (cuda-convnet2 make-data, pyext.cpp `makeJPEG`):
new size = round(scale · side) with scale = 256 / shorter side; OpenCV INTER_AREA when shrinking,
INTER_CUBIC when enlarging, plain copy at scale 1; crop offset (new - 256) // 2 on each axis, so an
odd margin keeps the top/left pixel and drops the extra one on the right / at the bottom (341
wide: columns 42..297 are kept).
PIL's BOX filter with its default support is exactly the area average (INTER_AREA) for a shrink,
BICUBIC is the cubic filter for an enlargement. No `reducing_gap` and no JPEG `draft()` here: both
would change pixels (see docs/data.md for the measured effect of draft()).
"""
from __future__ import annotations

from PIL import Image

SIZE = 256  # §2
RESAMPLE = ("shorter side to size: BOX (area) when shrinking, BICUBIC when enlarging "
            "(cuda-convnet2); central crop")  # recorded in every manifest


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


def resize_center_crop(image: Image.Image, size: int = SIZE) -> Image.Image:
    """Shorter side to `size` (area filter down, bicubic up), then the central size×size patch;
    an odd margin drops its extra pixel on the right / at the bottom (offset = margin // 2)."""
    width, height = image.size
    new_w, new_h = target_size(width, height, size)
    if (new_w, new_h) != (width, height):
        resample = Image.BOX if new_w * new_h < width * height else Image.BICUBIC
        image = image.resize((new_w, new_h), resample=resample)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))
