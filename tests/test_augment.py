"""§4.1 / §2 / §6 augmentation ops against hand-written references (paper_alexnet.augment)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from paper_alexnet import augment

torch.set_num_threads(1)


def _images(n=4, c=3, h=20, w=20, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, c, h, w),
                                                                  dtype=np.uint8))


def test_crop_offsets_cover_33_positions_uniformly():
    n = 33 * 600
    d = augment.draw_train(seed=3, epoch=1, indices=np.arange(n), offsets=33, flip=True,
                           pca_std=0.1)
    for o in (d.oy, d.ox):
        assert o.min() == 0 and o.max() == 32
        counts = np.bincount(o, minlength=33)
        assert len(counts) == 33
        # binomial(n, 1/33) per offset: mean 600, std ~24; 5 std is a loose, still meaningful bound
        assert np.all(np.abs(counts - 600) < 5 * np.sqrt(n / 33 * (1 - 1 / 33)))
    assert abs(np.corrcoef(d.oy, d.ox)[0, 1]) < 0.03            # the two axes are independent
    assert abs(d.flip.mean() - 0.5) < 5 * 0.5 / np.sqrt(n)
    no_flip = augment.draw_train(3, 1, np.arange(100), 33, flip=False, pca_std=0.1)
    assert not no_flip.flip.any()


def test_draws_depend_only_on_seed_epoch_and_index():
    whole = augment.draw_train(7, 2, np.arange(50), 33, True, 0.1)
    alone = augment.draw_train(7, 2, np.array([41, 3]), 33, True, 0.1)   # other batch, other order
    for a, b in ((whole.oy, alone.oy), (whole.ox, alone.ox), (whole.flip, alone.flip),
                 (whole.alpha, alone.alpha)):
        np.testing.assert_array_equal(a[[41, 3]], b)
    other_epoch = augment.draw_train(7, 3, np.arange(50), 33, True, 0.1)
    other_seed = augment.draw_train(8, 2, np.arange(50), 33, True, 0.1)
    assert not np.array_equal(whole.alpha, other_epoch.alpha)
    assert not np.array_equal(whole.alpha, other_seed.alpha)


@pytest.mark.parametrize("impl", ["slice", "gather"])
def test_crop_flip_matches_manual_slicing(impl):
    images = _images()
    oy, ox, flip = np.array([0, 3, 13, 7]), np.array([13, 0, 5, 7]), np.array([True, False, True,
                                                                                False])
    out = augment.crop_flip(images, oy, ox, flip, 7, impl=impl)
    for n in range(4):
        window = images[n].numpy()[:, oy[n]:oy[n] + 7, ox[n]:ox[n] + 7]
        expected = window[:, :, ::-1] if flip[n] else window
        np.testing.assert_array_equal(out[n].numpy(), expected)
    source = np.array([2, 2, 0, 1])
    out = augment.crop_flip(images, oy, ox, flip, 7, source=source, impl=impl)
    window = images[2].numpy()[:, 3:10, 0:7]
    np.testing.assert_array_equal(out[1].numpy(), window)


def test_ten_crops_are_corners_centre_and_their_mirrors():
    oy, ox, flip = augment.eval_offsets(256, 256, 224, "ten_crop")
    assert list(zip(oy[:5], ox[:5])) == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]
    assert list(zip(oy[5:], ox[5:])) == list(zip(oy[:5], ox[:5]))
    assert not flip[:5].any() and flip[5:].all()
    assert augment.eval_offsets(256, 256, 227, "center")[:2] == (np.array([14]), np.array([14]))
    images = _images(n=2, h=10, w=10)
    oy, ox, flip = augment.eval_offsets(10, 10, 6, "ten_crop")
    views = augment.crop_flip(images, np.tile(oy, 2), np.tile(ox, 2), np.tile(flip, 2), 6,
                              source=np.repeat([0, 1], 10))
    for n in range(2):
        img = images[n].numpy()
        manual = [img[:, :6, :6], img[:, :6, 4:], img[:, 4:, :6], img[:, 4:, 4:], img[:, 2:8, 2:8]]
        manual += [m[:, :, ::-1] for m in manual]
        for k in range(10):
            np.testing.assert_array_equal(views[10 * n + k].numpy(), manual[k])


def test_mean_alignment_center_and_aligned():
    mean = torch.arange(3 * 12 * 12, dtype=torch.float32).reshape(3, 12, 12)
    oy, ox, flip = np.array([0, 4, 1]), np.array([4, 0, 2]), np.array([False, True, True])
    center = augment.mean_views(mean, oy, ox, flip, 8, "center")
    np.testing.assert_array_equal(center.numpy(), mean.numpy()[:, 2:10, 2:10])
    aligned = augment.mean_views(mean, oy, ox, flip, 8, "aligned")
    for n in range(3):
        window = mean.numpy()[:, oy[n]:oy[n] + 8, ox[n]:ox[n] + 8]
        np.testing.assert_array_equal(aligned[n].numpy(), window[:, :, ::-1] if flip[n] else window)
    # second formulation: "aligned" == subtract the whole mean image first, then crop and flip
    images = _images(n=3, h=12, w=12)
    ours = augment.photometric(augment.crop_flip(images, oy, ox, flip, 8), aligned)
    first = augment.crop_flip(images.float() - mean, oy, ox, flip, 8)
    torch.testing.assert_close(ours, first, rtol=0, atol=0)


EIGVAL = torch.tensor([20.0 ** 2, 37.0 ** 2, 122.0 ** 2], dtype=torch.float64)
EIGVEC = torch.linalg.qr(torch.tensor([[0.6, 0.7, 0.4], [-0.1, 0.5, 0.6], [0.8, -0.2, 0.5]],
                                      dtype=torch.float64))[0]


@pytest.mark.parametrize("scale", ["sqrt_eigval", "eigval"])
def test_lighting_exact_for_fixed_alpha(scale):
    alpha = [0.3, -1.2, 0.05]
    shift = augment.lighting_shift(torch.tensor([alpha], dtype=torch.float64), EIGVAL, EIGVEC,
                                   scale)[0]
    p, lam = EIGVEC.tolist(), EIGVAL.tolist()
    for c in range(3):       # the paper's [p1 p2 p3][a1 s1, a2 s2, a3 s3]^T, one channel at a time
        s = [lam[i] ** 0.5 if scale == "sqrt_eigval" else 255.0 * (lam[i] / 255.0 ** 2)
             for i in range(3)]
        expected = sum(p[c][i] * alpha[i] * s[i] for i in range(3))
        assert abs(shift[c].item() - expected) < 1e-9
    views = _images(n=1, h=5, w=5)
    out = augment.photometric(views, torch.zeros(3, 5, 5), shift[None].float())
    torch.testing.assert_close(out - views.float(), shift.float()[None, :, None, None].expand(1, 3,
                                                                                             5, 5))


@pytest.mark.parametrize("scale", ["sqrt_eigval", "eigval"])
def test_lighting_statistics_match_pca(scale):
    n, std = 40000, 0.1
    d = augment.draw_train(11, 0, np.arange(n), 1, False, std)
    alpha = torch.from_numpy(d.alpha)
    shift = augment.lighting_shift(alpha, EIGVAL, EIGVEC, scale).numpy()
    s = (EIGVAL.sqrt() if scale == "sqrt_eigval" else EIGVAL / 255.0).numpy()
    expected = EIGVEC.numpy() @ np.diag(std ** 2 * s ** 2) @ EIGVEC.numpy().T
    got = np.cov(shift.T)
    # each entry within 3% of the largest variance (n = 40000: sampling error ~ 0.7%)
    assert np.abs(got - expected).max() < 0.03 * expected.diagonal().max()
    assert np.all(np.abs(shift.mean(0)) < 4 * np.sqrt(expected.diagonal() / n))
    np.testing.assert_allclose(d.alpha.std(0), std, rtol=0.03)
    assert np.abs(np.corrcoef(d.alpha.T) - np.eye(3)).max() < 0.03


def test_resize_geometry_matches_interpolate_and_noop():
    images = _images(n=2, c=1, h=28, w=28)
    mean = torch.rand(1, 28, 28) * 255
    out = augment.resize_views(images, mean, 224, np.array([False, True]))
    up = F.interpolate(images.float() - mean, size=(224, 224), mode="bilinear",
                       align_corners=False)
    torch.testing.assert_close(out[0], up[0])
    torch.testing.assert_close(out[1], up[1].flip(-1))
    # resizing is linear: subtracting the resized mean gives the same (up to rounding)
    other = F.interpolate(images.float(), size=(224, 224), mode="bilinear", align_corners=False) \
        - F.interpolate(mean[None], size=(224, 224), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[0], other[0], atol=1e-3, rtol=0)
    cifar, cmean = _images(n=2, h=32, w=32), torch.rand(3, 32, 32) * 255
    same = augment.resize_views(cifar, cmean, 32, np.array([False, False]))
    torch.testing.assert_close(same, cifar.float() - cmean, rtol=0, atol=0)


def test_bad_choices_name_the_value():
    with pytest.raises(ValueError, match="middle"):
        augment.eval_offsets(256, 256, 224, "middle")
    with pytest.raises(ValueError, match="sideways"):
        augment.mean_views(torch.zeros(3, 8, 8), [0], [0], [False], 4, "sideways")
    with pytest.raises(ValueError, match="lambda"):
        augment.lighting_shift(torch.zeros(1, 3), EIGVAL, EIGVEC, "lambda")
