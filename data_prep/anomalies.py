"""§2 / docs/paper.md §1 "known bad files": decode any raw image to 3-channel RGB (or to 1-channel
gray for an all-grayscale dataset, `channels=1`), or reject it with a reason.

ILSVRC-2012 train holds one PNG named n02105855_2933.JPEG and 22 CMYK JPEGs, val holds a CMYK
JPEG, and both hold grayscale images. Each image comes out as RGB and every conversion is recorded;
what cannot be decoded is rejected with a reason. Nothing is dropped silently: the caller lists both
in the manifest.

Converted (kept):   CMYK → RGB; any format other than JPEG under a .JPEG name (PNG, GIF, ...);
                    grayscale (L, I;16, I, F, 1) → RGB by replication; palette (P) → RGB;
                    alpha (RGBA, LA, PA) → RGB by dropping alpha (what `Image.convert("RGB")`
                    does, as in torchvision's loader); an EXIF orientation tag other than 1.
Rejected:           empty file, not an image, truncated or corrupt data, more pixels than
                    `max_pixels` (decompression bomb; checked from the header, before decoding).
                    PIL's own limit (Image.MAX_IMAGE_PIXELS, an error above twice it) is set to
                    `max_pixels` while decoding, so a larger `max_pixels` really admits larger
                    images; PIL's error stays as a second guard above 2 x max_pixels.

EXIF orientation: by default the tag is IGNORED and the pixels are kept as stored, which is what
Alex's prep (OpenCV 2 imdecode), Caffe and torchvision's loaders did, so the labels and the author's
mean image refer to the stored orientation; it is recorded as a conversion note. Pass
`exif_transpose=True` (`--exif-transpose`) to rotate images upright instead.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default MAX_IMAGE_PIXELS; ILSVRC's largest is ~20 Mpx
EXIF_ORIENTATION = 0x0112
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class Rejected(Exception):
    """This file cannot become an RGB image; str(e) is the reason recorded in the manifest."""


def expected_format(name: str) -> str | None:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}.get(ext)


def decode(data: bytes, name: str = "", max_pixels: int = DEFAULT_MAX_PIXELS,
           exif_transpose: bool = False, channels: int = 3) -> tuple[Image.Image, list[str]]:
    """Bytes of one raw image -> (RGB PIL image, or L with channels=1; list of conversion notes),
    or raise Rejected."""
    if len(data) == 0:
        raise Rejected("empty file (0 bytes)")
    pil_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels  # PIL's global: restored below, whatever happens
    try:
        im, notes, orientation = _open(data, name, max_pixels)
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit
    if orientation not in (1, None):
        if exif_transpose:
            im = ImageOps.exif_transpose(im)
            notes.append(f"EXIF orientation {orientation} applied (rotated upright)")
        else:
            notes.append(f"EXIF orientation {orientation} ignored (pixels kept as stored)")
    if channels == 1:
        return _to_gray(im, notes), notes
    return _to_rgb(im, notes), notes


def _open(data: bytes, name: str, max_pixels: int):
    """-> (loaded image, notes on a format/name mismatch, EXIF orientation), or raise Rejected."""
    notes = []
    with warnings.catch_warnings():
        # our own pixel limit below replaces PIL's warning / error, which depend on global state
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise Rejected(f"not an image ({len(data)} bytes, starts {data[:8]!r})") from None
        except Image.DecompressionBombError as e:  # PIL's own hard limit, 2x its default
            raise Rejected(f"decompression bomb: {e}") from None
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise Rejected(f"cannot open image: {e}") from None
        width, height = im.size
        if width * height > max_pixels:
            raise Rejected(f"decompression bomb: {width}x{height} = {width * height} pixels "
                           f"> limit {max_pixels} (raise it with --max-pixels)")
        if width < 1 or height < 1:
            raise Rejected(f"image has size {width}x{height}")
        fmt, want = im.format, expected_format(name)
        if want is not None and fmt != want:
            notes.append(f"format {fmt} named .{name.rsplit('.', 1)[-1]}")
        try:
            im.load()
            # after load(): a PNG's eXIf chunk may follow its pixel data
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
        except Image.DecompressionBombError as e:
            raise Rejected(f"decompression bomb: {e}") from None
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise Rejected(f"truncated or corrupt image data: {e}") from None
    return im, notes, orientation


def _wide_to_l(im: Image.Image, notes: list[str]) -> Image.Image:
    # 16-bit gray (PNG) spans 0..65535: rescale by 257; other wide modes are clipped
    arr = np.asarray(im, dtype=np.float64)
    arr = arr / 257.0 if im.mode.startswith("I;16") else arr
    notes.append(f"{im.mode} -> 8-bit gray")
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def _to_gray(im: Image.Image, notes: list[str]) -> Image.Image:
    """A grayscale image (GRAY_MODES) as 8-bit L; alpha dropped."""
    if im.mode.startswith("I") or im.mode == "F":
        return _wide_to_l(im, notes)
    if im.mode != "L":
        notes.append(f"{im.mode} -> L" + (" (alpha dropped)" if "A" in im.mode else ""))
        im = im.convert("L")
    return im


def _to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    if im.mode != "RGB":
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
            notes.append("palette with transparency -> RGB (alpha dropped)")
        elif im.mode == "P":
            notes.append("palette -> RGB")
        elif im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            notes.append(f"{im.mode} -> RGB (alpha dropped)")
        elif im.mode == "CMYK":
            notes.append("CMYK -> RGB")
        elif im.mode in ("L", "1"):
            notes.append(f"grayscale ({im.mode}) -> RGB")
        elif im.mode.startswith("I") or im.mode == "F":
            mode = im.mode
            im = _wide_to_l(im, [])
            notes.append(f"{mode} -> RGB (wide grayscale to 8 bits)")
        else:
            notes.append(f"{im.mode} -> RGB")
        im = im.convert("RGB")
    return im
