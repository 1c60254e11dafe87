"""Bad inputs (docs/paper.md §1): every case converted to RGB with a note, or rejected with a
reason."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from data_prep.anomalies import Rejected, decode

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def encode(image, fmt, **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def test_plain_rgb_jpeg_has_no_notes():
    im, notes = decode(encode(Image.fromarray(RGB), "JPEG"), "a.JPEG")
    assert im.mode == "RGB" and im.size == (32, 24) and notes == []


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.fromarray(RGB).convert("CMYK")
    im, notes = decode(encode(cmyk, "JPEG", quality=95), "n01_1.JPEG")
    assert im.mode == "RGB" and notes == ["CMYK -> RGB"]
    # PIL's CMYK round trip is lossless before JPEG; after it the colours stay close
    assert np.abs(np.asarray(im, np.int16) - RGB.astype(np.int16)).mean() < 12


def test_png_named_jpeg_is_converted_with_a_note():
    im, notes = decode(encode(Image.fromarray(RGB), "PNG"), "n02105855_2933.JPEG")
    assert notes == ["format PNG named .JPEG"]
    assert np.array_equal(np.asarray(im), RGB)  # PNG is lossless: the pixels are the file's


def test_grayscale_is_replicated():
    gray = RGB[..., 0]
    im, notes = decode(encode(Image.fromarray(gray, "L"), "PNG"), "g.png")
    assert notes == ["grayscale (L) -> RGB"]
    assert np.array_equal(np.asarray(im), np.repeat(gray[..., None], 3, axis=2))


def test_16_bit_grayscale_is_rescaled():
    wide = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80)
    im, notes = decode(encode(Image.fromarray(wide), "PNG"), "w.png")
    assert im.mode == "RGB" and "wide grayscale" in notes[0]
    np.testing.assert_array_equal(np.asarray(im)[..., 1], np.rint(wide / 257.0).astype(np.uint8))


def test_palette_and_palette_with_transparency():
    pal = Image.fromarray(RGB).convert("P", palette=Image.ADAPTIVE, colors=16)
    im, notes = decode(encode(pal, "PNG"), "p.png")
    assert notes == ["palette -> RGB"]
    assert np.array_equal(np.asarray(im), np.asarray(pal.convert("RGB")))
    _, notes = decode(encode(pal, "PNG", transparency=0), "p.png")
    assert notes == ["palette with transparency -> RGB (alpha dropped)"]


def test_rgba_drops_alpha():
    rgba = np.concatenate([RGB, np.full((24, 32, 1), 7, np.uint8)], axis=2)
    im, notes = decode(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "a.png")
    assert notes == ["RGBA -> RGB (alpha dropped)"] and np.array_equal(np.asarray(im), RGB)


def test_exif_orientation_ignored_by_default_applied_on_request():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(Image.fromarray(RGB), "PNG", exif=exif.tobytes())
    im, notes = decode(data, "e.png")
    assert im.size == (32, 24) and notes == ["EXIF orientation 6 ignored (pixels kept as stored)"]
    assert np.array_equal(np.asarray(im), RGB)
    im, notes = decode(data, "e.png", exif_transpose=True)
    assert im.size == (24, 32) and "applied" in notes[0]
    assert np.array_equal(np.asarray(im), np.rot90(RGB, k=-1))  # 6 = rotate 90° clockwise


def test_exif_orientation_in_a_jpeg():
    exif = Image.Exif()
    exif[0x0112] = 3
    _, notes = decode(encode(Image.fromarray(RGB), "JPEG", exif=exif.tobytes()), "x.JPEG")
    assert notes == ["EXIF orientation 3 ignored (pixels kept as stored)"]


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"<html>404 not found</html>", "not an image"),
    (encode(Image.fromarray(RGB), "JPEG")[:300], "(?i)truncated"),
    (encode(Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")[:2000],
     "truncated or corrupt image data"),
    (encode(Image.fromarray(RGB), "PNG")[:-40], "truncated"),
])
def test_broken_files_are_rejected_with_a_reason(data, reason):
    with pytest.raises(Rejected, match=reason):
        decode(data, "bad.JPEG")


def png_with_declared_size(width, height):
    """A valid small PNG whose IHDR claims width x height (CRC fixed): a decompression bomb."""
    data = bytearray(encode(Image.fromarray(RGB), "PNG"))
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def test_decompression_bomb_rejected_before_decoding():
    with pytest.raises(Rejected, match="decompression bomb: .*10000000000 pixels"):
        decode(png_with_declared_size(100_000, 100_000), "bomb.png")
    with pytest.raises(Rejected, match="decompression bomb: 12000x10000 = 120000000 pixels"):
        decode(png_with_declared_size(12_000, 10_000), "bomb.png")
    with pytest.raises(Rejected, match="decompression bomb: 32x24 = 768 pixels > limit 500"):
        decode(encode(Image.fromarray(RGB), "JPEG"), "x.JPEG", max_pixels=500)
