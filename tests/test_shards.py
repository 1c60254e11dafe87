"""The prepared-split format: writer/reader round trips, errors, and verify catching damage."""
import io
import json
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from data_prep.shards import FormatError, PreparedSplit, ShardWriter, write_split
from data_prep.verify import verify, verify_split

CLASSES = [("n0", "zero"), ("n1", "one"), ("n2", "two")]


def raw_split(path, n=10, shape=(4, 5, 3), shard_bytes=200, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
    labels = [i % 3 for i in range(n)]
    write_split(path, ((im, lab, f"img{i}") for i, (im, lab) in enumerate(zip(images, labels))),
                encoding="raw", image_shape=shape, classes=CLASSES,
                prep_params={"source": "test"}, shard_bytes=shard_bytes)
    return images, labels


@pytest.mark.parametrize("shape", [(4, 5, 3), (7, 6, 1)])
def test_raw_round_trip_across_shards(tmp_path, shape):
    images, labels = raw_split(tmp_path / "s", shape=shape, shard_bytes=3 * int(np.prod(shape)))
    split = PreparedSplit(tmp_path / "s")
    assert len(split) == 10 and split.encoding == "raw" and split.image_shape == shape
    assert split.labels.dtype == np.int64 and split.labels.tolist() == labels
    assert split.classes == CLASSES
    assert len(split.manifest["shards"]) == 4  # 3 + 3 + 3 + 1 records
    assert split.manifest["per_class"] == [4, 3, 3]
    for i, im in enumerate(images):
        assert np.array_equal(split.image(i), im)
        assert split.read(i) == im.tobytes()


def test_jpeg_round_trip_and_pickle(tmp_path):
    rng = np.random.default_rng(1)
    ims = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(4)]
    blobs = []
    for im in ims:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "JPEG", quality=95)
        blobs.append(buf.getvalue())
    write_split(tmp_path / "j", [(b, 1) for b in blobs], encoding="jpeg",
                image_shape=(16, 16, 3), classes=CLASSES)
    split = PreparedSplit(tmp_path / "j")
    split.read(0)  # opens a descriptor, which must not travel through pickle
    clone = pickle.loads(pickle.dumps(split))
    assert clone._fds == {}
    for i, b in enumerate(blobs):
        assert clone.read(i) == b
        assert np.array_equal(clone.image(i), np.asarray(Image.open(io.BytesIO(b))))


def test_reader_works_in_a_spawned_process(tmp_path):
    import multiprocessing
    images, _ = raw_split(tmp_path / "s")
    split = PreparedSplit(tmp_path / "s")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.map(split.read, range(len(split)))
    assert got == [im.tobytes() for im in images]


def test_writer_rejects_wrong_shape_and_label(tmp_path):
    w = ShardWriter(tmp_path / "w", "raw", (2, 2, 3), CLASSES)
    with pytest.raises(ValueError, match=r"uint8 \(2, 2, 3\)"):
        w.add(np.zeros((2, 2, 1), np.uint8), 0)
    with pytest.raises(ValueError, match="label 3"):
        w.add(np.zeros((2, 2, 3), np.uint8), 3)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        ShardWriter(tmp_path / "x", "raw", (2, 2, 2), CLASSES)


def test_missing_and_half_written_directories_say_what_to_do(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        PreparedSplit(tmp_path / "nothing")
    raw_split(tmp_path / "s")
    os.remove(tmp_path / "s" / "manifest.json")
    with pytest.raises(FormatError, match="no manifest.json: was prep interrupted"):
        PreparedSplit(tmp_path / "s")


def test_truncated_shard_is_an_error_on_read(tmp_path):
    raw_split(tmp_path / "s", shard_bytes=10_000)
    shard = tmp_path / "s" / "shard-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-30])
    split = PreparedSplit(tmp_path / "s")
    split.read(0)
    with pytest.raises(FormatError, match="truncated"):
        split.read(9)


def test_verify_detects_a_flipped_byte_and_a_missing_shard(tmp_path):
    raw_split(tmp_path / "root" / "train")
    raw_split(tmp_path / "root" / "val", seed=1)
    assert all(p == [] for p in verify(tmp_path / "root", decode=True).values())
    shard = tmp_path / "root" / "train" / "shard-00001.bin"
    data = bytearray(shard.read_bytes())
    data[7] ^= 0x01
    shard.write_bytes(bytes(data))
    problems = verify_split(str(tmp_path / "root" / "train"))
    assert len(problems) == 1 and "shard-00001.bin: sha256" in problems[0]
    os.remove(tmp_path / "root" / "val" / "shard-00002.bin")
    problems = verify(tmp_path / "root")[str(tmp_path / "root" / "val")]
    assert len(problems) == 1 and "shard-00002.bin: missing" in problems[0]


def test_verify_detects_an_edited_index_and_manifest(tmp_path):
    raw_split(tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    manifest["per_class"] = [5, 3, 2]
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    assert any("histogram" in p for p in verify_split(str(tmp_path / "s")))
    (tmp_path / "s" / "index.npz").write_bytes(b"garbage")
    assert any("index.npz: sha256" in p for p in verify_split(str(tmp_path / "s")))


def test_verify_decode_names_each_record_that_is_not_an_image_of_the_split(tmp_path):
    """Checksums cannot see a record stored broken from the start; decode=True names it."""
    def jpeg(size):
        buf = io.BytesIO()
        Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(buf, "JPEG")
        return buf.getvalue()
    items = [(jpeg(8), 0, "good"), (b"not a jpeg", 1, "broken"), (jpeg(9), 2, "too big")]
    write_split(tmp_path / "j", items, encoding="jpeg", image_shape=(8, 8, 3), classes=CLASSES)
    assert verify_split(str(tmp_path / "j")) == []
    problems = verify_split(str(tmp_path / "j"), decode=True)
    assert len(problems) == 2
    assert "record 1 (broken) does not decode" in problems[0]
    assert "record 2 (too big) does not decode" in problems[1] and "(8,8,3)" in problems[1]


def test_verify_cli_exit_code(tmp_path):
    from data_prep.__main__ import main
    raw_split(tmp_path / "s")
    assert main(["verify", str(tmp_path / "s")]) == 0
    os.remove(tmp_path / "s" / "shard-00000.bin")
    assert main(["verify", str(tmp_path / "s")]) == 1


@pytest.mark.parametrize("shape", [(5, 4, 3), (5, 4, 1)])
def test_write_split_computes_stats_of_the_stored_pixels(tmp_path, shape):
    from data_prep import stats
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(6)]
    m = write_split(tmp_path / "train", [(im, 0) for im in images], encoding="raw",
                    image_shape=shape, classes=CLASSES, compute_stats=True)
    assert "stats.npz" in m["files"] and verify_split(str(tmp_path / "train")) == []
    s = stats.load(tmp_path)
    x = np.stack(images).astype(np.float64)
    np.testing.assert_allclose(s["mean"], x.mean(axis=0), atol=1e-12)
    cov = np.atleast_2d(np.cov(x.reshape(-1, shape[2]).T, bias=True))
    np.testing.assert_allclose(s["cov"], cov, rtol=1e-12)
    assert s["eigval"].shape == (shape[2],) and s["eigvec"].shape == (shape[2], shape[2])
