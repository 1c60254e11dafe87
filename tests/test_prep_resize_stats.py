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


def test_enlarging_is_pil_bicubic_then_the_crop():
    a = np.random.default_rng(4).integers(0, 256, (200, 240, 3), dtype=np.uint8)
    want = Image.fromarray(a).resize((307, 256), Image.BICUBIC).crop((25, 0, 281, 256))
    np.testing.assert_array_equal(np.asarray(resize_center_crop(Image.fromarray(a))),
                                  np.asarray(want))


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
