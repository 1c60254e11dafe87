"""§2 for any class-folder dataset (`alexnet prep images`): tiny PNG/JPEG folders written here,
prepared at native size (raw uint8, like prep cifar10) or resized (JPEG, like prep imagenet);
channels, split mapping, determinism, resume, and the one-line errors."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_prep import stats
from data_prep.__main__ import main
from data_prep.resize import resize_center_crop
from data_prep.shards import PreparedSplit
from data_prep.verify import digest_tree, verify
from faults import REPO

CLASSES = ["cat", "dog", "ship"]  # written unsorted below: the index is the sorted order


def image(seed, w=12, h=10, mode="RGB"):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w),
                                        dtype=np.uint8), mode)


def write(folder, name, im, fmt=None):
    os.makedirs(folder, exist_ok=True)
    im.save(folder / name, fmt or ("PNG" if name.endswith(".png") else "JPEG"))


def dataset(root, eval_folder="test", per_class=3, mode="RGB", w=12, h=10):
    """root/train/<class>/ and root/<eval_folder>/<class>/: PNGs and JPEGs of one size; returns
    {split folder: [(class, file name)]} in the order prep must store them."""
    order = {}
    for s, (split, n) in enumerate((("train", per_class), (eval_folder, 2))):
        for c in reversed(CLASSES):
            for k in range(n):
                name = f"{k:04d}.{'png' if k % 2 == 0 else 'jpg'}"  # names repeat across classes
                write(root / split / c, name, image(100 * s + 10 * CLASSES.index(c) + k, w, h,
                                                    mode))
        order[split] = [(c, f"{k:04d}.{'png' if k % 2 == 0 else 'jpg'}")
                        for c in CLASSES for k in range(n)]
    return order


def prep(*args, workers=1):
    return main(["images", "--workers", str(workers), "--chunk-size", "2", *map(str, args)])


def decoded(path, mode):
    with Image.open(path) as im:
        return np.asarray(im.convert(mode))


def test_native_size_is_stored_raw_like_cifar10_and_test_becomes_val(tmp_path):
    order = dataset(tmp_path / "in")
    assert prep("--input", tmp_path / "in", "--out", tmp_path / "out") == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["train", "val"]
    assert all(p == [] for p in verify(tmp_path / "out", decode=True).values())
    train, val = PreparedSplit(tmp_path / "out" / "train"), PreparedSplit(tmp_path / "out" / "val")
    assert train.encoding == "raw" and train.image_shape == (10, 12, 3)  # (H, W, C)
    assert train.classes == [(c, c) for c in CLASSES]
    assert (tmp_path / "out" / "train" / "classes.tsv").read_text() == \
        "0\tcat\tcat\n1\tdog\tdog\n2\tship\tship\n"
    for split, folder in ((train, "train"), (val, "test")):
        assert [str(n) for n in split.names] == [f"{c}/{f}" for c, f in order[folder]]
        assert [CLASSES[i] for i in split.labels] == [c for c, _ in order[folder]]
        for i, (c, f) in enumerate(order[folder]):  # the pixels PIL decodes, unchanged
            np.testing.assert_array_equal(split.image(i),
                                          decoded(tmp_path / "in" / folder / c / f, "RGB"))
    assert val.manifest["prep"]["source"]["folder"] == "test/"
    assert val.manifest["prep"]["size"] is None and "stats.npz" not in val.manifest["files"]
    s = stats.load(tmp_path / "out")
    pixels = np.stack([train.image(i) for i in range(len(train))]).astype(np.float64)
    np.testing.assert_allclose(s["mean"], pixels.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(s["cov"], np.cov(pixels.reshape(-1, 3).T, bias=True), rtol=1e-9)


def test_prepared_folders_train_with_geometry_resize(tmp_path):
    from paper_alexnet import config, data
    dataset(tmp_path / "in", per_class=4)
    assert prep("--input", tmp_path / "in", "--out", tmp_path / "out") == 0
    cfg = config.load(None, ["optim.batch_size=4", "data.workers=0", "data.geometry=resize",
                             "model.input_size=32"])
    x, y = next(data.train_batches(tmp_path / "out", cfg, epoch=0))
    assert tuple(x.shape) == (4, 3, 32, 32) and len(y) == 4


def test_grayscale_gives_one_channel_and_mixed_modes_give_rgb(tmp_path):
    dataset(tmp_path / "gray", mode="L")
    assert prep("--input", tmp_path / "gray", "--out", tmp_path / "g") == 0
    g = PreparedSplit(tmp_path / "g" / "train")
    assert g.image_shape == (10, 12, 1)
    np.testing.assert_array_equal(g.image(0)[..., 0],
                                  decoded(tmp_path / "gray" / "train" / "cat" / "0000.png", "L"))
    assert stats.load(tmp_path / "g")["cov"].shape == (1, 1)
    dataset(tmp_path / "mixed")
    write(tmp_path / "mixed" / "train" / "dog", "gray.png", image(7, mode="L"))
    assert prep("--input", tmp_path / "mixed", "--out", tmp_path / "m") == 0
    m = PreparedSplit(tmp_path / "m" / "train")
    assert m.image_shape == (10, 12, 3)
    assert {"name": "dog/gray.png", "kind": "converted", "reason": "grayscale (L) -> RGB"} in \
        m.manifest["anomalies"]
    i = [str(n) for n in m.names].index("dog/gray.png")
    assert np.array_equal(m.image(i)[..., 0], m.image(i)[..., 2])


def test_size_n_resizes_and_crops_to_jpeg_with_both_eval_folders(tmp_path):
    order = dataset(tmp_path / "in", w=30, h=20)
    dataset(tmp_path / "in", eval_folder="val", w=30, h=20)
    y, x = np.mgrid[0:57, 0:41]
    smooth = np.stack([4 * x, 4 * y, 2 * (x + y)], axis=-1).astype(np.uint8)  # JPEG keeps it
    write(tmp_path / "in" / "train" / "cat", "big.png", Image.fromarray(smooth))  # any size
    assert prep("--input", tmp_path / "in", "--out", tmp_path / "out", "--size", 16) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["test", "train", "val"]
    assert all(p == [] for p in verify(tmp_path / "out", decode=True).values())
    train = PreparedSplit(tmp_path / "out" / "train")
    assert train.encoding == "jpeg" and train.image_shape == (16, 16, 3)
    assert train.manifest["prep"]["quality"] == 95
    test = PreparedSplit(tmp_path / "out" / "test")
    assert test.manifest["prep"]["source"]["folder"] == "test/"
    assert [str(n) for n in test.names] == [f"{c}/{f}" for c, f in order["test"]]
    i = [str(n) for n in train.names].index("cat/big.png")
    src = Image.open(tmp_path / "in" / "train" / "cat" / "big.png").convert("RGB")
    want = np.asarray(resize_center_crop(src, 16), np.float64)
    assert np.abs(train.image(i).astype(np.float64) - want).mean() < 2


def test_workers_chunking_and_a_kill_give_identical_bytes(tmp_path):
    dataset(tmp_path / "in", per_class=4)
    assert prep("--input", tmp_path / "in", "--out", tmp_path / "w1") == 0
    assert prep("--input", tmp_path / "in", "--out", tmp_path / "w2", workers=2) == 0
    assert digest_tree(tmp_path / "w1") == digest_tree(tmp_path / "w2")
    cmd = [sys.executable, "-m", "data_prep", "images", "--input", str(tmp_path / "in"),
           "--out", str(tmp_path / "k"), "--chunk-size", "2", "--workers", "1"]
    env = dict(os.environ, PYTHONPATH=REPO)
    killed = [sys.executable, os.path.join(REPO, "tests", "prep_killed.py"), "3", *cmd[3:]]
    assert subprocess.run(killed, env=env, capture_output=True, cwd=REPO).returncode == \
        -signal.SIGKILL
    assert os.path.isdir(tmp_path / "k" / "train" / ".parts")
    assert subprocess.run(cmd, env=env, capture_output=True, cwd=REPO).returncode == 0
    assert digest_tree(tmp_path / "w1") == digest_tree(tmp_path / "k")


def one_line_error(capsys, *args):
    assert prep(*args) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("alexnet prep images: ")
    return err


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert prep("--input", tmp_path / "nope", "--out", tmp_path / "o") == 2   # a bad command line
    assert "--input" in capsys.readouterr().err
    os.makedirs(tmp_path / "notrain" / "val" / "cat")
    assert "has no train/ folder" in one_line_error(capsys, "--input", tmp_path / "notrain",
                                                    "--out", tmp_path / "o")
    dataset(tmp_path / "in")
    os.makedirs(tmp_path / "in" / "train" / "bird")
    err = one_line_error(capsys, "--input", tmp_path / "in", "--out", tmp_path / "o")
    assert f"{tmp_path / 'in' / 'train' / 'bird'} holds no images" in err
    write(tmp_path / "in" / "train" / "bird", "0.png", image(1))
    os.makedirs(tmp_path / "in" / "test" / "frog")
    write(tmp_path / "in" / "test" / "frog", "0.png", image(1))
    err = one_line_error(capsys, "--input", tmp_path / "in", "--out", tmp_path / "o")
    assert "only in train/: bird; only in test/: frog" in err
    for c in ("bird", "frog"):
        write(tmp_path / "in" / "train" / c, "0.png", image(1))
        write(tmp_path / "in" / "test" / c, "0.png", image(1))
    write(tmp_path / "in" / "train" / "dog", "odd.png", image(2, w=11, h=10))
    err = one_line_error(capsys, "--input", tmp_path / "in", "--out", tmp_path / "o")
    assert f"{tmp_path / 'in' / 'train' / 'dog' / 'odd.png'} is 11x10 pixels" in err
    assert "are 12x10" in err and "--size N" in err
    assert not os.path.exists(tmp_path / "o")  # refused before any work
    assert prep("--input", tmp_path / "in", "--out", tmp_path / "o", "--size", 8) == 0
    with pytest.raises(SystemExit) as e:  # a bad command line: argparse's exit status 2
        prep("--input", tmp_path / "in", "--out", tmp_path / "o", "--size", 0)
    assert e.value.code == 2


def test_unreadable_files_go_through_the_failure_budget(tmp_path, capsys):
    dataset(tmp_path / "in")
    (tmp_path / "in" / "train" / "cat" / "notes.txt").write_text("not an image")
    assert prep("--input", tmp_path / "in", "--out", tmp_path / "o") == 1
    assert "cat/notes.txt: rejected: not an image" in capsys.readouterr().err
    assert prep("--input", tmp_path / "in", "--out", tmp_path / "o", "--max-failures", 1) == 0
    train = PreparedSplit(tmp_path / "o" / "train")
    assert train.manifest["prep"]["counts"]["rejected"] == 1 and len(train) == 9

