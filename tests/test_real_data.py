"""experiments/real_data.py: the real-data inputs of the example reports, rebuilt from public copies
(here: files written in the same shape, a truncated gzip like the public Fashion-MNIST copy)."""
import gzip
import re
import zlib

import numpy as np
import pytest

from data_prep import small
from experiments import real_data
from experiments.generated import _idx


def _truncated_fashion(folder, n=40, keep_images=25.5):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    folder.mkdir()
    _idx(folder / "train-images-idx3-ubyte.gz", images)
    _idx(folder / "train-labels-idx1-ubyte.gz", labels)
    # cut the compressed file where the stream holds about `keep_images` images
    full = (folder / "train-images-idx3-ubyte.gz").read_bytes()
    raw = gzip.decompress(full)
    def inflated(cut):
        return len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(full[:cut]))
    lo, hi = 0, len(full)                  # the longest cut that inflates to <= keep_images
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if inflated(mid) <= 16 + keep_images * 784 else (lo, mid)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(full[:lo])
    got = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(full[:lo])
    assert len(got) < len(raw)
    return images, labels, (len(got) - 16) // 784


def test_fashion_prefix_keeps_the_first_images_and_their_labels(tmp_path):
    images, labels, complete = _truncated_fashion(tmp_path / "src")
    with pytest.raises(small.SmallDataError):      # the prep verb keeps refusing the cut file
        small.read_idx(str(tmp_path / "src" / "train-images-idx3-ubyte.gz"), small.IDX_IMAGES)
    summary = real_data.fashion_mnist_prefix(tmp_path / "src", tmp_path / "out", count=20, test=5)
    assert summary["complete_images_in_source"] == complete >= 20
    dataset = small.load_fashion_mnist(tmp_path / "out")
    x, y, _ = dataset["train"]
    np.testing.assert_array_equal(x[..., 0], images[:15])
    np.testing.assert_array_equal(y, labels[:15])
    x, y, _ = dataset["val"]
    np.testing.assert_array_equal(x[..., 0], images[15:20])
    np.testing.assert_array_equal(y, labels[15:20])
    with pytest.raises(ValueError, match="fewer than --count"):
        real_data.fashion_mnist_prefix(tmp_path / "src", tmp_path / "out2", count=complete + 1,
                                       test=5)


def test_ilsvrc_sample_becomes_class_folders(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("n01440764_tench.JPEG", "n01443537_goldfish.JPEG", "README.md"):
        (src / name).write_bytes(b"x")
    assert real_data.ilsvrc_sample(src, tmp_path / "out") == {"images": 2, "classes": 2}
    assert (tmp_path / "out" / "train" / "n01440764" / "n01440764_tench.JPEG").read_bytes() == b"x"
    assert (tmp_path / "out" / "synset_words.txt").read_text() == \
        "n01440764 tench\nn01443537 goldfish\n"
    assert real_data.main(["ilsvrc-sample", str(tmp_path / "empty"), str(tmp_path / "o")]) == 1


def test_sample_stats_bootstrap_brackets_the_split_and_compares_with_alex(tmp_path):
    from conftest import make_prepared
    from data_prep import stats
    root = make_prepared(tmp_path / "root", classes=6, train_per_class=5, side=16)
    lines = real_data.sample_stats(root, resamples=200)
    assert lines[0].startswith("30 images, 200 bootstrap resamples")
    ours = stats.load(root)
    mean = re.findall(r"([\d.]+) \[ *([\d.]+), *([\d.]+)\]", lines[1])
    for (m, lo, hi), exact in zip(mean, ours["mean"].mean(axis=(0, 1))):
        assert float(lo) <= float(m) <= float(hi) and float(m) == pytest.approx(exact, abs=0.01)
    assert lines[1].endswith("his:  127.30  119.72  104.91")     # Alex's channel means
    scale = re.findall(r"([\d.]+) \[", lines[2])
    assert [float(s) for s in scale] == pytest.approx(np.sqrt(ours["eigval"]), abs=0.01)
    assert "97.5% of resamples within" in lines[3]


# Imagewoof: the same 10 wnids as the release, a few images each (the counts are a parameter)
SMALL_WOOF = {w: (name, 2, 1) for w, (name, _, _) in real_data.IMAGEWOOF.items()}


def _woof(src, counts=SMALL_WOOF):
    from PIL import Image
    for column, split in ((1, "train"), (2, "val")):
        for k, wnid in enumerate(sorted(counts)):
            folder = src / split / wnid
            folder.mkdir(parents=True)
            for i in range(counts[wnid][column]):
                colour = (25 * k, 100 + 40 * i, 60 * column)
                Image.new("RGB", (48, 32), colour).save(folder / f"{wnid}_{i}.JPEG")
    (src / "README.md").write_text("beside train/ and val/: ignored\n")
    return src


def test_imagewoof_prepares_the_release_layout_with_class_names(tmp_path, capsys):
    from data_prep.shards import PreparedSplit
    src = _woof(tmp_path / "src")
    assert real_data.imagewoof(src, tmp_path / "root", workers=1, expected=SMALL_WOOF) == 0
    train = PreparedSplit(tmp_path / "root" / "train")
    val = PreparedSplit(tmp_path / "root" / "val")
    assert (len(train), len(val)) == (20, 10)
    assert [w for w, _ in train.classes] == sorted(real_data.IMAGEWOOF)
    assert dict(train.classes)["n02093754"] == "Border terrier"
    assert dict(val.classes)["n02096294"] == "Australian terrier"
    np.testing.assert_array_equal(np.bincount(val.labels), [1] * 10)
    assert "train: 20 images of 10 classes" in capsys.readouterr().out


@pytest.mark.parametrize("damage, named", [
    (lambda s: __import__("shutil").rmtree(s / "val" / "n02115641"), "val: expected the 10 "
     "Imagewoof wnid folders, missing n02115641"),
    (lambda s: (s / "train" / "n01440764").mkdir(), "train: expected the 10 Imagewoof wnid "
     "folders, not Imagewoof: n01440764"),
    (lambda s: (s / "train" / "n02088364" / "n02088364_0.JPEG").unlink(),
     "train/n02088364: 1 .JPEG files, the release has 2"),
    (lambda s: (s / "val" / "n02099601" / "notes.txt").write_text("x"),
     "val/n02099601: holds 1 entries that are not .JPEG files, e.g. 'notes.txt'"),
    (lambda s: __import__("shutil").rmtree(s / "train"), "train: no such folder"),
])
def test_imagewoof_refuses_another_layout_naming_the_folder(tmp_path, capsys, monkeypatch,
                                                            damage, named):
    src = _woof(tmp_path / "src")
    damage(src)
    monkeypatch.setattr(real_data, "IMAGEWOOF", SMALL_WOOF)
    assert real_data.main(["imagewoof", str(src), str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{src}/{named}" in err, err
    assert not (tmp_path / "root").exists()          # refused before any work


def test_imagewoof_counts_are_the_release(tmp_path):
    """The table the check uses adds up to the release's 9,025 train and 3,929 val images."""
    counts = real_data.IMAGEWOOF.values()
    assert (sum(c[1] for c in counts), sum(c[2] for c in counts)) == (9025, 3929)
