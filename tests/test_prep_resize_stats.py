"""§2 geometry (shorter side 256, central crop) and the training-set statistics (mean image,
RGB covariance and its PCA), against numpy and the reference statistics."""
import io

import numpy as np
import pytest
from PIL import Image

from data_prep import stats
from data_prep.__main__ import main
from data_prep.resize import area_resize_crop, resize_center_crop, target_size
from raw_imagenet import dataset, prep, write_folders


# --- §2 geometry ------------------------------------------------------------------------------

@pytest.mark.parametrize("w,h,want", [(257, 300, (256, 299)), (300, 257, (299, 256)),
                                      (256, 256, (256, 256)), (10, 400, (256, 10240)),
                                      (500, 375, (341, 256))])
def test_shorter_side_becomes_256_then_central_crop(w, h, want):
    assert target_size(w, h) == want  # round(256 / short · long), as in Alex's pyext.cpp
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
    assert resize_center_crop(img).size == (256, 256)


def test_crop_is_central_without_resampling_at_scale_one():
    a = np.random.default_rng(1).integers(0, 256, (300, 256, 3), dtype=np.uint8)
    out = np.asarray(resize_center_crop(Image.fromarray(a)))
    assert np.array_equal(out, a[22:278])  # (300 - 256) // 2 = 22


def test_halving_is_the_area_average():
    a = np.random.default_rng(2).integers(0, 256, (512, 600, 3), dtype=np.uint8)
    out = np.asarray(resize_center_crop(Image.fromarray(a)))
    area = a.reshape(256, 2, 300, 2, 3).astype(np.float64).mean(axis=(1, 3))  # INTER_AREA
    np.testing.assert_array_equal(out, np.floor(area[:, 22:278] + 0.5))  # rounded half up


def area_reference(a, new_w, new_h):
    """INTER_AREA by definition: each input pixel split into new_h x new_w equal parts (np.repeat),
    then every output pixel the plain mean of its h x w parts. Float64, not rounded."""
    h, w = a.shape[:2]
    parts = np.repeat(np.repeat(a.astype(np.float64), new_h, axis=0), new_w, axis=1)
    return parts.reshape(new_h, h, new_w, w, -1).mean(axis=(1, 3))


def test_area_average_weights_partly_covered_pixels_by_the_covered_fraction():
    """[0, 90, 180] to 2 pixels: output 0 covers pixel 0 and half of pixel 1, so it is
    (0 + 90/2) / 1.5 = 30, and output 1 (90/2 + 180) / 1.5 = 150. PIL's BOX gives [45, 180]."""
    row = np.array([[0, 90, 180], [0, 90, 180]], np.uint8)
    out = area_resize_crop(Image.fromarray(row), 2, 2, 0, 0, 2)           # along the width
    np.testing.assert_array_equal(np.asarray(out), [[30, 150], [30, 150]])
    out = area_resize_crop(Image.fromarray(np.ascontiguousarray(row.T)), 2, 2, 0, 0, 2)
    np.testing.assert_array_equal(np.asarray(out), [[30, 30], [150, 150]])  # along the height
    # both axes: out[0, 0] = (0 + 90/2 + 90/2 + 180/4) / 2.25 = 60, and so on
    square = np.array([[0, 90, 180], [90, 180, 0], [180, 0, 90]], np.uint8)
    out = area_resize_crop(Image.fromarray(square), 2, 2, 0, 0, 2)
    np.testing.assert_array_equal(np.asarray(out), [[60, 120], [120, 60]])
    assert np.asarray(Image.fromarray(square).resize((2, 2), Image.BOX)).tolist() == \
        [[90, 90], [90, 90]]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_whole_number_factors_equal_pil_box(k):
    """Whole factors: one axis alone equals PIL's BOX exactly (ties included: k = 2, 4 give x.5
    means, both round them up); both axes equal the exact k x k block mean rounded half up, which
    PIL's BOX misses by at most 1 (it rounds its intermediate horizontal pass to 8 bits)."""
    rng = np.random.default_rng(k)
    a = rng.integers(0, 256, (6, 6 * k, 3), dtype=np.uint8)
    wide = area_resize_crop(Image.fromarray(a), 6, 6, 0, 0, 6)
    np.testing.assert_array_equal(np.asarray(wide),
                                  np.asarray(Image.fromarray(a).resize((6, 6), Image.BOX)))
    b = rng.integers(0, 256, (6 * k, 6 * k), dtype=np.uint8)   # and 1 channel (L)
    both = np.asarray(area_resize_crop(Image.fromarray(b), 6, 6, 0, 0, 6)).astype(np.int64)
    block = b.reshape(6, k, 6, k).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(both, np.floor(block + 0.5))
    box = np.asarray(Image.fromarray(b).resize((6, 6), Image.BOX)).astype(np.int64)
    assert np.abs(both - box).max() <= 1


@pytest.mark.parametrize("w,h", [(23, 17), (17, 29), (40, 21)])
def test_area_resize_of_the_crop_equals_the_whole_resize_then_the_crop(w, h):
    """Only the rows and columns that survive the crop are computed: the same pixels as the
    definition applied to the whole image, then cropped (size 8, fractional scales, odd margins)."""
    a = np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    new_w, new_h = target_size(w, h, 8)
    left, top = (new_w - 8) // 2, (new_h - 8) // 2
    want = area_reference(a, new_w, new_h)[top:top + 8, left:left + 8]
    got = np.asarray(resize_center_crop(Image.fromarray(a), 8))
    clear = np.abs(want - np.floor(want) - 0.5) > 1e-3  # float32 may round a (near-)tie either way
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(got[clear], np.floor(want + 0.5)[clear])


# Enlarging: OpenCV INTER_CUBIC. Cubic convolution with a = -0.75 (PIL's BICUBIC: a = -0.5):
#   W(d) = 1.25·d³ - 2.25·d² + 1          for d <= 1
#   W(d) = -0.75·(d³ - 5·d² + 8·d - 4)    for 1 < d < 2
# output pixel j of an axis enlarged from n to m reads x = (j + 0.5)·n/m - 0.5, taps floor(x) - 1
# .. floor(x) + 2 at distances 1 + t, t, 1 - t, 2 - t (t = x - floor(x)), clamped to the image;
# weights rounded to 1/2048, result rounded half up and saturated to 0..255.

def test_cubic_enlarging_of_a_ramp_computed_by_hand():
    """[0, 60, 120, 180] enlarged 4 -> 6, along the width and along the height.
    x = -1/6, 1/2, 7/6, 11/6, 5/2, 19/6, i.e. floor(x) = -1, 0, 1, 1, 2, 3 and t = 5/6, 1/2, 1/6,
    5/6, 1/2, 1/6. Weights of the four taps, in 1/864:
      t = 5/6: W(11/6), W(5/6), W(1/6), W(7/6) = [-15, 139, 815, -75]  (11-bit: -36, 329, 1932, -178)
      t = 1/2: W(3/2),  W(1/2), W(1/2), W(3/2) = [-81, 513, 513, -81]  (11-bit: -192, 1216, 1216, -192)
      t = 1/6: the t = 5/6 weights reversed.
    Taps (clamped) and values:
      j=0: pixels 0,0,0,1 = [0, 0, 0, 60]:       -75·60 / 864 = -5.21 -> 0 (saturated)
      j=1: pixels 0,0,1,2 = [0, 0, 60, 120]:     (513·60 - 81·120) / 864 = 24.375 -> 24
      j=2: pixels 0..3:                          (815·60 + 139·120 - 15·180) / 864 = 72.78 -> 73
      j=3: pixels 0..3:                          (139·60 + 815·120 - 75·180) / 864 = 107.22 -> 107
      j=4: pixels 1,2,3,3 = [60, 120, 180, 180]: (-81·60 + 513·120 + 432·180) / 864 = 155.625 -> 156
      j=5: pixels 2,3,3,3 = [120, 180, 180, 180]: (-75·120 + 939·180) / 864 = 185.21 -> 185
    (the 11-bit weights give the same pixels: the weights of the constant axis sum to 2047 or 2048
    of 2048, which moves no value across a rounding boundary here). a = -0.5 does not reproduce
    this: PIL's BICUBIC gives [0, 25, 70, 110, 155, 184]."""
    ramp = np.tile(np.array([0, 60, 120, 180], np.uint8), (4, 1))  # 4x4, every row the ramp
    want = [0, 24, 73, 107, 156, 185]
    along_width = np.asarray(resize_center_crop(Image.fromarray(ramp), 6))
    np.testing.assert_array_equal(along_width, np.tile(want, (6, 1)))
    along_height = np.asarray(resize_center_crop(Image.fromarray(np.ascontiguousarray(ramp.T)), 6))
    np.testing.assert_array_equal(along_height, np.tile(want, (6, 1)).T)


def test_cubic_reads_pixel_centres():
    """A bright column (140 on 40) at x = 1 of 4, enlarged 4 -> 8: x = (j + 0.5)/2 - 0.5 = j/2 -
    1/4, so t is 3/4 or 1/4 and the weights are exact in 11 bits: W(1/4) = 225/256, W(3/4) =
    67/256, W(5/4) = -27/256, W(7/4) = -9/256. Output j = 40 + 100·W(|x_j - 1|), taps clamped:
      x = -1/4, 1/4, 3/4, 5/4, 7/4, 9/4, 11/4, 13/4
      distance to 1 = 5/4, 3/4, 1/4, 1/4, 3/4, 5/4, 7/4, (9/4: not a tap of x = 13/4)
      40 + 100·W = 29.45, 66.17, 127.89, 127.89, 66.17, 29.45, 36.48, 40 -> 29, 66, 128, 128, 66, 29,
      36, 40.
    Another mapping moves the peak: x = j·n/m (no centre shift) puts it at j = 2 alone, corner
    alignment x = j·(n-1)/(m-1) at 7/3. PIL's BICUBIC (a = -0.5) gives 127 at the peak."""
    column = np.full((4, 4), 40, np.uint8)
    column[:, 1] = 140
    want = [29, 66, 128, 128, 66, 29, 36, 40]
    np.testing.assert_array_equal(np.asarray(resize_center_crop(Image.fromarray(column), 8)),
                                  np.tile(want, (8, 1)))
    row = np.ascontiguousarray(column.T)
    np.testing.assert_array_equal(np.asarray(resize_center_crop(Image.fromarray(row), 8)),
                                  np.tile(want, (8, 1)).T)


def test_cubic_replicates_the_border_pixels_and_saturates():
    """[100, 0, 0, 200] enlarged 4 -> 8 (the weights of the test above). Taps outside the image
    read its first / last pixel (OpenCV's replicate border):
      j=0: x = -1/4, taps -2, -1, 0, 1 -> pixels 0, 0, 0, 1 = [100, 100, 100, 0]: 100·(-9 + 67 +
           225)/256 = 110.55 -> 111 (zero padding: 88; mirroring without the edge: 88; with: 114)
      j=1: x = 1/4, pixels 0, 0, 1, 2: 100·(-27 + 225)/256 = 77.34 -> 77
      j=2: x = 3/4, pixels 0, 0, 1, 2: 100·(-9 + 67)/256 = 22.66 -> 23
      j=3: x = 5/4, pixels 0..3: (-27·100 - 9·200)/256 = -17.6 -> 0 (saturated)
      j=4: x = 7/4, pixels 0..3: (-9·100 - 27·200)/256 = -24.6 -> 0
      j=5: x = 9/4, pixels 1, 2, 3, 3: 200·(67 - 9)/256 = 45.31 -> 45
      j=6: x = 11/4, pixels 1, 2, 3, 3: 200·(225 - 27)/256 = 154.69 -> 155
      j=7: x = 13/4, pixels 2, 3, 3, 3: 200·(225 + 67 - 9)/256 = 221.09 -> 221"""
    edges = np.tile(np.array([100, 0, 0, 200], np.uint8), (4, 1))
    want = [111, 77, 23, 0, 0, 45, 155, 221]
    rgb = np.repeat(edges[:, :, None], 3, axis=2)  # and 3 interleaved channels
    np.testing.assert_array_equal(np.asarray(resize_center_crop(Image.fromarray(rgb), 8)),
                                  np.repeat(np.tile(want, (8, 1))[:, :, None], 3, axis=2))
    tall = np.ascontiguousarray(edges.T)
    np.testing.assert_array_equal(np.asarray(resize_center_crop(Image.fromarray(tall), 8)),
                                  np.tile(want, (8, 1)).T)


def cubic_reference(a, new_w, new_h):
    """INTER_CUBIC of a whole (h, w, C) image by the definition above, one axis at a time: the
    weight of source pixel i for output j is W(|x_j - i|), float64, rounded to 1/2048; taps past
    an edge are added to the edge pixel; exact integer sums, rounded half up, saturated."""
    def weights(n, m):
        x = (np.arange(m) + 0.5) * n / m - 0.5
        w = np.zeros((m, n), np.int64)
        for j in range(m):
            for tap in range(int(np.floor(x[j])) - 1, int(np.floor(x[j])) + 3):
                d = abs(x[j] - tap)
                wd = 1.25 * d**3 - 2.25 * d**2 + 1 if d <= 1 else -0.75 * (d**3 - 5 * d**2 + 8 * d - 4)
                w[j, min(max(tap, 0), n - 1)] += int(np.rint(wd * 2048))
        return w
    h, w = a.shape[:2]
    total = np.einsum("yi,xk,ikc->yxc", weights(h, new_h), weights(w, new_w), a.astype(np.int64))
    return np.clip((total + (1 << 21)) >> 22, 0, 255)


@pytest.mark.parametrize("w,h", [(7, 5), (5, 9), (11, 6)])
def test_cubic_resize_of_the_crop_equals_the_whole_enlargement_then_the_crop(w, h):
    """Only the rows and columns that survive the crop are computed: the same pixels as the
    definition applied to the whole image, then cropped (size 16, fractional scales, odd margins)."""
    a = np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    new_w, new_h = target_size(w, h, 16)
    left, top = (new_w - 16) // 2, (new_h - 16) // 2
    want = cubic_reference(a, new_w, new_h)[top:top + 16, left:left + 16]
    np.testing.assert_array_equal(np.asarray(resize_center_crop(Image.fromarray(a), 16)), want)


def test_enlarge_is_cubic_shrink_is_area_scale_one_is_a_copy():
    """The author's switch (makeJPEG): INTER_CUBIC above scale 1, INTER_AREA below, a copy at 1;
    the same 5x4 image to size 3 (shrink), 4 (copy, then the central crop) and 6 (enlarge)."""
    a = np.random.default_rng(8).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    im = Image.fromarray(a)
    np.testing.assert_array_equal(np.asarray(resize_center_crop(im, 3)),
                                  np.asarray(area_resize_crop(im, 4, 3, 0, 0, 3)))
    np.testing.assert_array_equal(np.asarray(resize_center_crop(im, 4)), a[:, 0:4])
    np.testing.assert_array_equal(np.asarray(resize_center_crop(im, 6)),
                                  cubic_reference(a, 8, 6)[:, 1:7])


# --- statistics --------------------------------------------------------------------------------

def test_stats_match_numpy_on_the_same_pixels():
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(5)]
    acc = stats.empty((8, 8, 3))
    for im in images[:2]:
        stats.accumulate(acc, im)
    acc2 = stats.empty((8, 8, 3))
    for im in images[2:]:
        stats.accumulate(acc2, im)
    s = stats.finalize(stats.combine([acc, acc2]))
    stack = np.stack(images).astype(np.float64)
    np.testing.assert_allclose(s["mean"], stack.mean(axis=0), rtol=0, atol=1e-12)
    cov = np.cov(stack.reshape(-1, 3).T, bias=True)
    np.testing.assert_allclose(s["cov"], cov, rtol=1e-12)
    np.testing.assert_allclose(s["cov"] @ s["eigvec"], s["eigvec"] * s["eigval"], atol=1e-9)
    assert np.all(np.diff(s["eigval"]) >= 0)


def test_channel_products_are_exact_integers_on_full_size_images():
    """Sums of 65,536 products up to 255² reach 4.3e9: exact in float64, not in float32."""
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(3)]
    images.append(np.full((256, 256, 3), 255, np.uint8))
    acc = stats.empty()
    for im in images:
        stats.accumulate(acc, im)
    x = np.stack(images).reshape(-1, 3).astype(np.int64)
    np.testing.assert_array_equal(acc["rgb_outer"], x.T @ x)


def test_int32_chunk_sums_equal_int64_and_refuse_to_overflow():
    rng = np.random.default_rng(6)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    wide, chunk = stats.empty((16, 16, 3)), stats.empty((16, 16, 3), np.int32)
    for im in images:
        stats.accumulate(wide, im)
        stats.accumulate(chunk, im)
    assert chunk["pixel_sum"].dtype == np.int32
    for key in wide:
        np.testing.assert_array_equal(chunk[key], wide[key])
    chunk["images"] = np.int64(stats.INT32_IMAGES)  # one more image could pass 2^31 - 1
    with pytest.raises(ValueError, match="int32 per-pixel sums would overflow"):
        stats.accumulate(chunk, images[0])
    stats.accumulate(wide, images[0])  # int64: no such limit here


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_statistics_see_the_stored_jpeg_decoded_as_training_will(mode):
    """prepare_image's pixels are the stored JPEG decoded (by the header-less fast path), equal to
    what Image.open decodes, and not the pixels before the JPEG encoding."""
    from data_prep.bench import natural_like
    from data_prep.pipeline import prepare_image

    source = Image.fromarray(natural_like(np.random.default_rng(7), 300, 200)).convert(mode)
    buf = io.BytesIO()
    source.save(buf, "JPEG", quality=95)
    params = dict(size=256, quality=90, max_pixels=10**8, exif_transpose=False,
                  channels=len(mode))
    stored, pixels, _ = prepare_image(buf.getvalue(), "x.JPEG", params)
    with Image.open(io.BytesIO(stored)) as im:
        decoded = np.asarray(im)
    np.testing.assert_array_equal(pixels, decoded.reshape(256, 256, len(mode)))
    before = np.asarray(resize_center_crop(Image.open(io.BytesIO(buf.getvalue()))))
    assert not np.array_equal(pixels.reshape(before.shape), before)  # q90 changed some pixels


def test_reference_stats_load_and_compare_to_themselves():
    ref = stats.load_reference()
    np.testing.assert_allclose(ref["mean"].mean(axis=(0, 1)), [127.30, 119.72, 104.91], atol=0.01)
    cmp = stats.compare(ref, ref)
    np.testing.assert_allclose(cmp["pca_stdevs"], [19.72, 37.09, 121.78], atol=0.01)
    assert cmp["mean_image_rms_difference"] == 0 and np.allclose(cmp["eigvec_abs_cosine"], 1)


def test_stats_verb_compares_with_the_reference(tmp_path, capsys):
    import json
    write_folders(tmp_path / "raw", dataset(n_val=1))
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "out"]) == 0
    capsys.readouterr()
    assert main(["stats", "--json", str(tmp_path / "out")]) == 0
    cmp = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(cmp["reference_channel_mean"], [127.30, 119.72, 104.91], atol=0.01)
    ours = stats.load(tmp_path / "out")
    np.testing.assert_allclose(cmp["channel_mean"], ours["mean"].mean(axis=(0, 1)))
    np.testing.assert_allclose(cmp["pca_stdevs"], np.sqrt(ours["eigval"]))
    assert main(["stats", str(tmp_path / "raw")]) == 1  # no stats there: a clear error


def test_one_blas_thread_inside_the_block_and_restored_after():
    from data_prep import blas
    if blas._openblas() is None:
        pytest.skip("numpy does not use its bundled OpenBLAS here: nothing to tell")
    get, set_ = blas._openblas()
    before = get()
    set_(2)
    try:
        with blas.one_thread():
            assert get() == 1
        assert get() == 2
    finally:
        set_(before)


def test_stats_of_other_data_are_not_compared_with_alexs_ilsvrc_ones(tmp_path, capsys):
    import json
    from test_small import write_cifar
    write_cifar(tmp_path / "cifar", np.random.default_rng(0), per_batch=3)
    assert main(["cifar10", "--input", str(tmp_path / "cifar"), "--out", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "c")]) == 0
    table = capsys.readouterr().out
    assert "Alex Krizhevsky (ILSVRC-2012 train)" not in table
    assert "Not compared with Alex Krizhevsky's statistics" in table and "from cifar10" in table
    assert main(["stats", "--json", str(tmp_path / "c")]) == 0
    numbers = json.loads(capsys.readouterr().out)
    ours = stats.load(tmp_path / "c")
    assert numbers["reference"] is None and "reference_channel_mean" not in numbers
    np.testing.assert_allclose(numbers["channel_mean"], ours["mean"].mean(axis=(0, 1)))


def test_prep_bench_prints_each_of_its_tables(capsys):
    """`alexnet prep bench` at a tiny size: every table it promises, with one row per setting."""
    from data_prep import bench
    assert bench.main(["--images", "8", "--repeats", "1", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    for header, rows in (("| one core |", 2), ("| prepare_split (whole split", 1),
                         ("| stored quality |", 4), ("| draft() on |", 3)):
        table = out[out.index(header):].split("\n\n")[0].splitlines()
        assert len(table) == 2 + rows, table
    assert "whole split with 1 worker against the plain PIL loop" in out
    assert "area resize against PIL's BOX" in out
