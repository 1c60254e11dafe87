"""The input pipeline (paper_alexnet.data) on small splits written with data_prep's own writer."""
import io
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from data_prep import shards
from data_prep import stats as prep_stats
from paper_alexnet import config, data

torch.set_num_threads(1)
CLASSES = [(f"n{k:08d}", f"class {k}") for k in range(3)]


def _picture(rng, h, w, c):
    """Smooth colour gradients plus noise: JPEG-friendly, different per image."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(rng.uniform(1, 9) * x + rng.uniform(0, 6) * y + k) for k in range(c)],
                    axis=-1)
    return np.clip(128 + 90 * base + rng.normal(0, 12, (h, w, c)), 0, 255).astype(np.uint8)


def _write_root(root, encoding, shape, counts=(("train", 24), ("val", 13))):
    rng = np.random.default_rng(0)
    for split, n in counts:
        pictures = [_picture(rng, *shape) for _ in range(n)]
        items = []
        for k, p in enumerate(pictures):
            if encoding == "jpeg":
                buf = io.BytesIO()
                Image.fromarray(p).save(buf, format="JPEG", quality=90)
                items.append((buf.getvalue(), k % 3, f"{split}_{k}"))
            else:
                items.append((p, k % 3, f"{split}_{k}"))
        shards.write_split(root / split, items, encoding=encoding, image_shape=shape,
                           classes=CLASSES, shard_bytes=200_000)
        if split != "train":
            continue
        if shape[2] == 3:
            acc = prep_stats.empty(shape)
            for i in range(n):
                prep_stats.accumulate(acc, shards.PreparedSplit(root / split).image(i))
            prep_stats.save(str(root / split), acc)
        else:  # grey images: only the mean image matters (no PCA lighting)
            mean = np.mean(pictures, axis=0, dtype=np.float64)
            (root / split / shards.STATS).write_bytes(shards.npz_bytes(
                mean=mean, eigval=np.zeros(3), eigvec=np.eye(3), cov=np.zeros((3, 3)),
                rgb_mean=np.zeros(3), images=np.int64(n)))
    return root


@pytest.fixture(scope="module")
def jpeg_root(tmp_path_factory):
    return _write_root(tmp_path_factory.mktemp("jpeg"), "jpeg", (256, 256, 3))


def _cfg(*overrides):
    return config.load(None, ["optim.batch_size=8", "data.workers=0", *overrides])


def _epoch(root, cfg, **kw):
    return [(x.clone(), y.clone()) for x, y in data.train_batches(root, cfg, **kw)]


def _same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        torch.testing.assert_close(xa, xb, rtol=0, atol=0)
        assert torch.equal(ya, yb)


def test_steps_per_epoch_and_world_size(jpeg_root):
    assert data.steps_per_epoch(jpeg_root, _cfg()) == 3                    # 24 // 8
    assert data.steps_per_epoch(jpeg_root, _cfg("train.steps_per_epoch=2")) == 2
    with pytest.raises(ValueError, match="divide among 3"):
        data.steps_per_epoch(jpeg_root, _cfg(), world_size=3)
    with pytest.raises(ValueError, match="fewer than one batch"):
        data.steps_per_epoch(jpeg_root, _cfg("optim.batch_size=32"))


def test_train_batches_shapes_and_determinism(jpeg_root):
    cfg = _cfg("data.workers=2")
    first = _epoch(jpeg_root, cfg, epoch=0)
    assert len(first) == 3 and first[0][0].shape == (8, 3, 224, 224)
    assert first[0][0].dtype == torch.float32 and first[0][1].dtype == torch.int64
    _same(first, _epoch(jpeg_root, cfg, epoch=0))
    _same(first, _epoch(jpeg_root, _cfg(), epoch=0))                    # 0 workers == 2 workers
    _same(first[1:], _epoch(jpeg_root, cfg, epoch=0, start_step=1))     # resume from step 1
    other = _epoch(jpeg_root, cfg, epoch=1)
    assert not torch.equal(first[0][0], other[0][0])
    # the epoch order is a permutation of the whole split, the last incomplete batch dropped
    order = data.epoch_order(0, 0, np.arange(24))
    assert sorted(order) == list(range(24))
    labels = torch.cat([y for _, y in first]).numpy()
    np.testing.assert_array_equal(labels, shards.PreparedSplit(jpeg_root / "train").labels[order])


def test_two_ranks_share_each_global_batch(jpeg_root):
    cfg = _cfg()
    full = _epoch(jpeg_root, cfg, epoch=2)
    ranks = [_epoch(jpeg_root, cfg, epoch=2, rank=r, world_size=2) for r in range(2)]
    for step, (x, y) in enumerate(full):
        assert ranks[0][step][0].shape[0] == 4
        torch.testing.assert_close(torch.cat([ranks[0][step][0], ranks[1][step][0]]), x,
                                   rtol=0, atol=0)
        assert torch.equal(torch.cat([ranks[0][step][1], ranks[1][step][1]]), y)


def test_cpu_backend_equals_gpu_code_path_on_cpu(jpeg_root):
    # PIL and torchvision's CPU decoder (both libjpeg-turbo) give identical pixels, so the gpu
    # backend's code path (bytes in workers, batched decode_jpeg, crop on the device) must agree
    # exactly with the cpu backend (PIL in workers, crop in workers), both ways of mean alignment.
    for mean in ("center", "aligned"):
        cpu = _epoch(jpeg_root, _cfg(f"data.mean={mean}"), epoch=0)
        gpu = _epoch(jpeg_root, _cfg(f"data.mean={mean}", "data.backend=gpu"), epoch=0)
        _same(cpu, gpu)
    cpu = list(data.eval_batches(jpeg_root, "val", _cfg(), view="ten_crop"))
    gpu = list(data.eval_batches(jpeg_root, "val", _cfg("data.backend=gpu"), view="ten_crop"))
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)


def test_train_batch_matches_hand_augmentation(jpeg_root):
    # one sample end to end against numpy: crop, flip, minus the central mean crop, plus lighting
    cfg = _cfg()
    x, _ = next(data.train_batches(jpeg_root, cfg, epoch=5))
    split = shards.PreparedSplit(jpeg_root / "train")
    stats = prep_stats.load(jpeg_root)
    i = data.epoch_order(0, 5, np.arange(24))[3]
    from paper_alexnet import augment
    d = augment.draw_train(0, 5, [i], 33, True, 0.1)
    img = split.image(i).astype(np.float64)[d.oy[0]:d.oy[0] + 224, d.ox[0]:d.ox[0] + 224]
    img = img[:, ::-1] if d.flip[0] else img
    shift = stats["eigvec"] @ (d.alpha[0] * np.sqrt(stats["eigval"]))
    expected = img - stats["mean"][16:240, 16:240] + shift
    np.testing.assert_allclose(x[3].permute(1, 2, 0).numpy(), expected, atol=2e-3)


@pytest.mark.parametrize("world_size", [1, 2])
def test_eval_covers_each_image_once(jpeg_root, world_size):
    cfg = _cfg()
    seen, sizes = [], []
    for rank in range(world_size):
        for x, y, idx in data.eval_batches(jpeg_root, "val", cfg, view="center", rank=rank,
                                           world_size=world_size, batch_size=4):
            assert x.shape == (len(idx), 3, 224, 224)
            np.testing.assert_array_equal(y.numpy(), np.arange(13)[idx.numpy()] % 3)
            seen += idx.tolist()
            sizes.append(len(idx))
    assert sorted(seen) == list(range(13))
    assert sizes == ([4, 4, 4, 1] if world_size == 1 else [4, 3, 4, 2])


def test_ten_crop_views_against_manual_slicing(jpeg_root):
    cfg = _cfg("data.mean=aligned")
    x, _, idx = next(data.eval_batches(jpeg_root, "val", cfg, view="ten_crop", batch_size=2))
    assert x.shape == (20, 3, 224, 224)
    mean = prep_stats.load(jpeg_root)["mean"]
    img = shards.PreparedSplit(jpeg_root / "val").image(int(idx[1])) - mean
    corners = [img[:224, :224], img[:224, 32:], img[32:, :224], img[32:, 32:],
               img[16:240, 16:240]]
    for k, view in enumerate(corners + [c[:, ::-1] for c in corners]):
        np.testing.assert_allclose(x[10 + k].permute(1, 2, 0).numpy(), view, atol=1e-4)


def test_train_holdout(jpeg_root):
    cfg = _cfg("schedule.signal_split=train_holdout", "data.holdout=5")
    _, train = data.split_indices(jpeg_root, "train", cfg)
    _, held = data.split_indices(jpeg_root, "train_holdout", cfg)
    assert len(held) == 5 and len(train) == 19 and not set(held) & set(train)
    assert data.steps_per_epoch(jpeg_root, cfg) == 2                     # 19 // 8
    got = [i for _, _, idx in data.eval_batches(jpeg_root, "train_holdout", cfg) for i in idx]
    assert got == held.tolist()
    with pytest.raises(ValueError, match="signal_split"):
        data.split_indices(jpeg_root, "train_holdout", _cfg())


def test_raw_grey_images_resized(tmp_path):
    root = _write_root(tmp_path, "raw", (28, 28, 1), counts=(("train", 16), ("val", 5)))
    cfg = _cfg("data.geometry=resize", "data.pca_std=0", "model.in_channels=1",
               "model.input_size=64", "train.channels_last=true")
    x, y = next(data.train_batches(root, cfg, epoch=0))
    assert x.shape == (8, 1, 64, 64) and x.is_contiguous(memory_format=torch.channels_last)
    x, _, idx = next(data.eval_batches(root, "val", cfg))
    img = np.array(shards.PreparedSplit(root / "val").image(int(idx[0])))
    img = torch.from_numpy(img).permute(2, 0, 1)
    mean = torch.from_numpy(prep_stats.load(root)["mean"]).permute(2, 0, 1).float()
    expected = F.interpolate((img.float() - mean)[None], size=(64, 64), mode="bilinear",
                             align_corners=False)[0]
    torch.testing.assert_close(x[0], expected)
    with pytest.raises(ValueError, match="pca_std"):
        data.train_batches(root, _cfg("data.geometry=resize", "model.in_channels=1",
                                      "model.input_size=64"), epoch=0)
    with pytest.raises(ValueError, match="geometry=crop"):
        data.eval_batches(root, "val", cfg, view="ten_crop")
    with pytest.raises(ValueError, match="geometry=resize"):
        data.train_batches(root, _cfg("model.in_channels=1", "data.pca_std=0"), epoch=0)


@pytest.mark.gpu
def test_gpu_backend_on_cuda_close_to_cpu_backend(jpeg_root):
    # nvjpeg decodes differently from libjpeg-turbo (IDCT, chroma upsampling): on these noisy
    # images, measured on an H100, mean |diff| 1.1-1.2 levels, max 20. A window one pixel off
    # would give a mean |diff| above 10 here, so the bound still pins the augmentation.
    cpu = _epoch(jpeg_root, _cfg(), epoch=0)
    gpu = [(x.cpu(), y.cpu()) for x, y in
           data.train_batches(jpeg_root, _cfg("data.backend=gpu"), epoch=0, device="cuda")]
    for (xa, ya), (xb, yb) in zip(cpu, gpu):
        assert torch.equal(ya, yb)
        assert (xa - xb).abs().mean() < 2.0 and (xa - xb).abs().max() < 40
    cuda_cpu_backend = [(x.cpu(), y.cpu()) for x, y in
                        data.train_batches(jpeg_root, _cfg("data.workers=2"), epoch=0,
                                           device="cuda")]
    for (xa, _), (xb, _) in zip(cpu, cuda_cpu_backend):
        torch.testing.assert_close(xa, xb, rtol=0, atol=1e-4)


@pytest.mark.gpu
def test_gather_on_cuda_equals_slicing():
    from paper_alexnet import augment
    images = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    oy, ox = np.array([0, 1, 2, 3, 4, 8]), np.array([8, 7, 6, 5, 4, 0])
    flip = np.array([True, False] * 3)
    on_gpu = augment.crop_flip(images.cuda(), oy, ox, flip, 32)
    assert torch.equal(on_gpu.cpu(), augment.crop_flip(images, oy, ox, flip, 32, impl="slice"))


def test_workers_auto_follows_the_cores_this_process_may_use(data_root, monkeypatch):
    """data.workers=auto (the default) is min(4, cores available): 2 on a 2-core box, 4 on a big
    one; a loader built with it raises no DataLoader warning about too many workers."""
    import warnings
    from paper_alexnet import config, data
    assert config.RunConfig().data.workers == "auto"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert data.worker_count("auto") == 2 and data.worker_count(0) == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert data.worker_count("auto") == 4
    monkeypatch.undo()
    cfg = config.load(None, ["model.input_size=64", "optim.batch_size=8", "data.workers=auto"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # DataLoader's "worker processes" UserWarning
        images, _ = next(data.train_batches(data_root, cfg, epoch=0))
    assert images.shape == (8, 3, 64, 64)
