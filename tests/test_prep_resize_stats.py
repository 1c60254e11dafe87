"""§2 geometry (shorter side 256, central crop) and the training-set statistics (mean image,
RGB covariance and its PCA), against numpy and the reference statistics."""
import numpy as np
import pytest
from PIL import Image

from data_prep import stats
from data_prep.__main__ import main
from data_prep.resize import resize_center_crop, target_size
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
    out = np.asarray(resize_center_crop(Image.fromarray(a)), np.float64)
    area = a.reshape(256, 2, 300, 2, 3).astype(np.float64).mean(axis=(1, 3))  # INTER_AREA
    assert np.abs(out - area[:, 22:278]).max() <= 1.0


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
