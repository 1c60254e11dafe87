"""docs/paper.md §9, §10: CIFAR-10 and Fashion-MNIST readers, on small files written here in the
real formats (pickle protocol 2 dicts with bytes keys; idx with big-endian headers, gzipped or
not)."""
import gzip
import os
import pickle
import tarfile

import numpy as np
import pytest

from data_prep import small, stats
from data_prep.shards import PreparedSplit

CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
               b"ship", b"truck"]


def cifar_batch(rng, n, tag, old_numpy_name=False):
    """A CIFAR-10 batch as the official files hold it. With old_numpy_name the array is rebuilt by
    numpy.core.multiarray._reconstruct, as in the real (Python 2, numpy 1) files."""
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(x) for x in rng.integers(0, 10, size=n)]
    d = {b"batch_label": tag.encode(), b"labels": labels, b"data": data,
         b"filenames": [f"{tag}_{i}.png".encode() for i in range(n)]}
    raw = pickle.dumps(d, protocol=2)
    if old_numpy_name:
        assert b"numpy._core.multiarray\n_reconstruct" in raw
        raw = raw.replace(b"numpy._core.multiarray\n_reconstruct",
                          b"numpy.core.multiarray\n_reconstruct")
    return raw, data, labels


def write_cifar(folder, rng, per_batch=7):
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i, name in enumerate(small.CIFAR_BATCHES["train"] + small.CIFAR_BATCHES["val"]):
        raw, data, labels = cifar_batch(rng, per_batch + i, name, old_numpy_name=(i % 2 == 0))
        (folder / name).write_bytes(raw)
        truth[name] = (data, labels)
    (folder / small.CIFAR_META).write_bytes(pickle.dumps(
        {b"label_names": CIFAR_NAMES, b"num_cases_per_batch": 10000, b"num_vis": 3072},
        protocol=2))
    return truth


def expected_images(data):
    """The CIFAR-10 layout by hand: pixel (y, x) of channel c is data[c*1024 + 32y + x]."""
    out = np.zeros((len(data), 32, 32, 3), np.uint8)
    for n in range(len(data)):
        for c in range(3):
            for y in range(32):
                out[n, y, :, c] = data[n, c * 1024 + 32 * y: c * 1024 + 32 * y + 32]
    return out


def check_cifar_root(root, truth):
    train, val = PreparedSplit(root / "train"), PreparedSplit(root / "val")
    assert train.encoding == "raw" and train.image_shape == (32, 32, 3)
    assert [n for _, n in train.classes] == [n.decode() for n in CIFAR_NAMES]
    tdata = np.concatenate([truth[b][0] for b in small.CIFAR_BATCHES["train"]])
    tlabels = sum((truth[b][1] for b in small.CIFAR_BATCHES["train"]), [])
    assert len(train) == len(tdata) and train.labels.tolist() == tlabels
    want = expected_images(tdata)
    for i in range(len(train)):
        np.testing.assert_array_equal(train.image(i), want[i])
    vdata, vlabels = truth["test_batch"]
    assert len(val) == len(vdata) and val.labels.tolist() == vlabels
    np.testing.assert_array_equal(np.stack([val.image(i) for i in range(len(val))]),
                                  expected_images(vdata))
    assert train.names[0] == "data_batch_1_0.png"
    # statistics, the same definitions as for ImageNet: per-pixel mean, population RGB covariance
    s = stats.load(root)
    np.testing.assert_allclose(s["mean"], want.astype(np.float64).mean(0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(s["cov"], np.cov(want.reshape(-1, 3).T.astype(np.float64),
                                                bias=True), rtol=1e-9, atol=1e-9)
    assert not os.path.exists(root / "val" / "stats.npz")


def test_cifar10_folder_round_trip(tmp_path):
    truth = write_cifar(tmp_path / "in" / small.CIFAR_FOLDER, np.random.default_rng(0))
    argv = ["--input", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    assert small.main_cifar10(argv) == 0
    check_cifar_root(tmp_path / "out", truth)


def test_cifar10_archive_read_as_stream(tmp_path):
    folder = tmp_path / "src" / small.CIFAR_FOLDER
    truth = write_cifar(folder, np.random.default_rng(1))
    archive = tmp_path / small.CIFAR_ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=small.CIFAR_FOLDER)
    small.write_prepared(tmp_path / "out", small.load_cifar10(archive), "cifar10")
    check_cifar_root(tmp_path / "out", truth)
    # the directory holding the archive works too
    data = small.load_cifar10(tmp_path)
    assert data["val"][1].tolist() == truth["test_batch"][1]


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.parametrize("payload", [
    {b"data": Boom(), b"labels": []},
    {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": pickle.loads},
])
def test_cifar10_malicious_pickle_is_refused(tmp_path, payload):
    folder = tmp_path / small.CIFAR_FOLDER
    write_cifar(folder, np.random.default_rng(2), per_batch=2)
    (folder / "data_batch_3").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(small.SmallDataError, match=r"data_batch_3.*(posix|nt|os)\.system|"
                                                   r"data_batch_3.*pickle\.loads|"
                                                   r"data_batch_3.*_pickle\.loads"):
        small.load_cifar10(tmp_path)
    assert not (tmp_path / "pwned.txt").exists() and not os.path.exists("pwned.txt")


def test_cifar10_codec_other_than_latin1_is_refused(tmp_path):
    evil = (b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x03\x00\x00\x00hexq\x02"
            b"\x86q\x03Rq\x04.")
    with pytest.raises(small.SmallDataError, match="batch_x.*'hex' is not allowed"):
        small.load_pickle(evil, "batch_x")
    ok = evil.replace(b"X\x03\x00\x00\x00hex", b"X\x06\x00\x00\x00latin1")
    assert small.load_pickle(ok, "batch_y") == b"abc"


def test_cifar10_malformed_batches(tmp_path):
    folder = tmp_path / small.CIFAR_FOLDER
    write_cifar(folder, np.random.default_rng(3), per_batch=2)
    full = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(full[: len(full) // 2])
    with pytest.raises(small.SmallDataError, match="data_batch_2"):
        small.load_cifar10(folder)
    (folder / "data_batch_2").write_bytes(pickle.dumps(
        {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(small.SmallDataError, match=r"data_batch_2: b'data' must be uint8 \(N, 30"):
        small.load_cifar10(folder)
    (folder / "data_batch_2").write_bytes(pickle.dumps(
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, protocol=2))
    with pytest.raises(small.SmallDataError, match="data_batch_2: b'labels' must hold 2"):
        small.load_cifar10(folder)
    (folder / "data_batch_2").unlink()
    with pytest.raises(small.SmallDataError, match="missing data_batch_2"):
        small.load_cifar10(folder)
    with pytest.raises(small.SmallDataError, match="no CIFAR-10 found"):
        small.load_cifar10(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / small.CIFAR_ARCHIVE).write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(small.SmallDataError, match=small.CIFAR_ARCHIVE):
        small.load_cifar10(tmp_path / "bad")


# --------------------------------------------------------------------------------- Fashion-MNIST
def idx_bytes(array, magic):
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion(folder, rng, n_train=9, n_val=5, gz=(True, False, False, True)):
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    names = [small.FASHION_FILES["train"][0], small.FASHION_FILES["train"][1],
             small.FASHION_FILES["val"][0], small.FASHION_FILES["val"][1]]
    arrays = [rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train),
              rng.integers(0, 256, (n_val, 28, 28)), rng.integers(0, 10, n_val)]
    for name, arr, zipped in zip(names, arrays, gz):
        raw = idx_bytes(arr, small.IDX_IMAGES if arr.ndim == 3 else small.IDX_LABELS)
        if zipped:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
        truth[name] = arr.astype(np.uint8)
    return truth


def test_fashion_mnist_round_trip(tmp_path):
    truth = write_fashion(tmp_path / "in", np.random.default_rng(4))
    assert small.main_fashion_mnist(["--input", str(tmp_path / "in"),
                                     "--out", str(tmp_path / "out")]) == 0
    for split in ("train", "val"):
        images_name, labels_name = small.FASHION_FILES[split]
        ps = PreparedSplit(tmp_path / "out" / split)
        assert ps.encoding == "raw" and ps.image_shape == (28, 28, 1)
        assert ps.labels.tolist() == truth[labels_name].tolist()
        got = np.stack([ps.image(i)[..., 0] for i in range(len(ps))])
        np.testing.assert_array_equal(got, truth[images_name])
        assert [n for _, n in ps.classes][0] == "T-shirt/top" and len(ps.classes) == 10
    s = stats.load(tmp_path / "out")
    train = truth[small.FASHION_FILES["train"][0]].astype(np.float64)
    np.testing.assert_allclose(s["mean"][..., 0], train.mean(0), atol=1e-9)
    np.testing.assert_allclose(s["cov"][0, 0], train.var(), rtol=1e-9)


def test_fashion_mnist_torchvision_layout(tmp_path):
    write_fashion(tmp_path / "FashionMNIST" / "raw", np.random.default_rng(5),
                  gz=(False, True, True, False))
    data = small.load_fashion_mnist(tmp_path)
    assert data["train"][0].shape == (9, 28, 28, 1) and data["val"][0].shape == (5, 28, 28, 1)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: (0x00000802).to_bytes(4, "big") + raw[4:],
     r"magic number 0x00000802, expected 0x00000803"),
    (lambda raw: raw[:-5], r"header says 9x28x28 = 7056 bytes of data, the file holds 7051"),
    (lambda raw: raw + b"\0", r"the file holds 7057"),
    (lambda raw: raw[:10], r"truncated header"),
    (lambda raw: gzip.compress(raw)[:-12], r"cannot read"),
])
def test_fashion_mnist_malformed(tmp_path, damage, message):
    write_fashion(tmp_path, np.random.default_rng(6), gz=(False, False, False, False))
    path = tmp_path / small.FASHION_FILES["train"][0]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(small.SmallDataError, match=f"train-images-idx3-ubyte.*{message}"):
        small.load_fashion_mnist(tmp_path)


def test_fashion_mnist_inconsistent_and_missing(tmp_path):
    write_fashion(tmp_path, np.random.default_rng(7), gz=(False,) * 4)
    labels = tmp_path / small.FASHION_FILES["val"][1]
    labels.write_bytes(idx_bytes(np.zeros(4), small.IDX_LABELS))
    with pytest.raises(small.SmallDataError, match="5 images but .*t10k-labels-idx1-ubyte holds 4"):
        small.load_fashion_mnist(tmp_path)
    labels.unlink()
    with pytest.raises(small.SmallDataError, match="no t10k-labels-idx1-ubyte"):
        small.load_fashion_mnist(tmp_path)


def test_no_torch_import_and_no_download_by_default(tmp_path):
    """data_prep.small must not import torch (only --download does, lazily)."""
    import subprocess
    import sys
    code = ("import sys, data_prep.small, data_prep.synthetic; "
            "sys.exit(1 if 'torch' in sys.modules or 'torchvision' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    (tmp_path / "in").mkdir()
    assert small.main_cifar10(["--input", str(tmp_path / "in"), "--out", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "in" / small.CIFAR_ARCHIVE).exists()
