"""§2 preparation in the corners of real inputs, where a user must be told: the central crop of an
odd margin, label files that do not match the images, an empty class, inputs changed under a
resumed prep, identical files under two names, and --max-pixels above PIL's own limit."""
import os

import numpy as np
import pytest
from PIL import Image

from data_prep import pipeline
from data_prep.anomalies import Rejected, decode
from data_prep.resize import resize_center_crop
from data_prep.shards import PreparedSplit
from data_prep.verify import digest_tree
from raw_imagenet import WNIDS, dataset, jpeg, prep, tar_bytes, val_truth, write_folders, \
    write_tars
from test_anomalies import RGB, encode, png_with_declared_size


# --- the central crop: an odd margin drops its extra pixel on the right / at the bottom ---------

@pytest.mark.parametrize("long_side,first", [(300, 22), (301, 22), (257, 0), (258, 1)])
def test_central_crop_of_an_odd_margin_keeps_the_top_left_pixel(long_side, first):
    """margin = long - 256; offset = margin // 2: 301 keeps rows 22..277, dropping 22 above and
    23 below. Scale 1 (shorter side already 256), so this is the crop alone, in both axes."""
    a = np.random.default_rng(long_side).integers(0, 256, (long_side, 256, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(resize_center_crop(Image.fromarray(a))),
                                  a[first:first + 256])
    b = np.ascontiguousarray(a.transpose(1, 0, 2))  # the same along the width
    np.testing.assert_array_equal(np.asarray(resize_center_crop(Image.fromarray(b))),
                                  b[:, first:first + 256])


# --- labels that do not match the images ---------------------------------------------------------

def flat_val(tmp_path, data):
    """train/<wnid>/ folders and a flat val/ folder (labels must come from a file)."""
    write_folders(tmp_path / "raw", {"train": data["train"]})
    os.makedirs(tmp_path / "raw" / "val")
    for name, w in val_truth(data):
        (tmp_path / "raw" / "val" / name).write_bytes(data["val"][w][name])
    return tmp_path / "raw"


def test_ilsvrc2010_test_labels_shorter_or_longer_than_the_test_set(tmp_path, capsys):
    data = dataset(n_val=1)
    raw = tmp_path / "raw"
    val = write_tars(raw, data, year=2010)
    (raw / "ILSVRC2010_images_test.tar").write_bytes(
        tar_bytes([(n.replace("val", "test"), b) for n, b in val]))
    (tmp_path / "v.txt").write_text("".join(f"{w}\n" for _, w in val_truth(data)))
    truth = raw / "ILSVRC2010_test_ground_truth.txt"
    for ids, word in (([1, 2], "2 labels for 3 test images"),
                      ([1, 2, 3, 1], "4 labels for 3 test images")):
        truth.write_text("".join(f"{i}\n" for i in ids))
        assert prep(["--input", raw, "--out", tmp_path / "out",
                     "--val-labels", tmp_path / "v.txt"]) == 1
        err = capsys.readouterr().err
        assert f"{truth}: {word}" in err and len(err.strip().splitlines()) == 1


def test_val_image_listed_but_absent_is_a_counted_failure(tmp_path, capsys):
    data = dataset()
    raw = flat_val(tmp_path, data)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{n} {w}\n" for n, w in val_truth(data))
                      + f"ILSVRC2012_val_00000099.JPEG {WNIDS[1]}\n")
    args = ["--input", raw, "--out", tmp_path / "out", "--val-labels", labels]
    assert prep(args) == 1
    assert "ILSVRC2012_val_00000099.JPEG: missing: listed in" in capsys.readouterr().err
    assert prep(args + ["--max-failures", "1"]) == 0
    val = PreparedSplit(tmp_path / "out" / "val")
    assert val.manifest["prep"]["counts"]["missing"] == 1 and len(val) == len(val_truth(data))
    assert val.manifest["anomalies"] == [dict(
        name="ILSVRC2012_val_00000099.JPEG", kind="missing",
        reason=f"listed in {labels} (line 7, {WNIDS[1]}) but not in the image folder or tar")]


def test_labels_file_lines_that_conflict_are_an_error_and_repeats_are_not(tmp_path, capsys):
    data = dataset()
    raw = flat_val(tmp_path, data)
    truth = val_truth(data)
    labels = tmp_path / "labels.txt"
    name, wnid = truth[2]
    other = WNIDS[(WNIDS.index(wnid) + 1) % 3]
    labels.write_text("".join(f"{n} {w}\n" for n, w in truth) + f"{name} {other}\n")
    assert prep(["--input", raw, "--out", tmp_path / "x", "--val-labels", labels]) == 1
    err = capsys.readouterr().err
    assert f"'{name}' is {wnid} on line 3 and {other} on line 7" in err
    labels.write_text("".join(f"{n} {w}\n" for n, w in truth) + f"{name} {wnid}\n")
    assert prep(["--input", raw, "--out", tmp_path / "ok", "--val-labels", labels]) == 0
    val = PreparedSplit(tmp_path / "ok" / "val")
    assert [(str(n), WNIDS[i]) for n, i in zip(val.names, val.labels)] == truth


def test_empty_train_class_folder_is_an_error_not_a_class_without_data(tmp_path, capsys):
    data = dataset()
    data["train"][WNIDS[1]] = {}
    data["val"][WNIDS[1]] = {}
    write_folders(tmp_path / "raw", data)
    os.makedirs(tmp_path / "raw" / "train" / WNIDS[1], exist_ok=True)
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "out"]) == 1
    err = capsys.readouterr().err
    assert f"train class {WNIDS[1]} has no images ({tmp_path / 'raw' / 'train' / WNIDS[1]}" in err
    assert not os.path.exists(tmp_path / "out")


# --- resuming after the inputs changed ------------------------------------------------------------

@pytest.mark.parametrize("change", ["mtime", "size"])
def test_resume_refuses_inputs_changed_since_the_interrupted_run(tmp_path, monkeypatch, capsys,
                                                                 change):
    write_folders(tmp_path / "raw", dataset())
    real_merge = pipeline.merge

    def interrupted(*a, **k):
        raise OSError("injected: killed before the merge")
    monkeypatch.setattr(pipeline, "merge", interrupted)
    args = ["--input", tmp_path / "raw", "--out", tmp_path / "out"]
    assert prep(args) == 1  # every chunk finished, nothing merged
    monkeypatch.setattr(pipeline, "merge", real_merge)
    victim = tmp_path / "raw" / "train" / WNIDS[0] / f"{WNIDS[0]}_1.JPEG"
    st = os.stat(victim)
    if change == "mtime":  # same bytes, touched: the docs promise size OR modification time
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    else:
        victim.write_bytes(jpeg(999))
    capsys.readouterr()
    assert prep(args) == 1
    err = capsys.readouterr().err
    assert f"input {victim} ({victim.name}) changed (then {st.st_size} bytes" in err
    assert "delete" in err and ".parts" in err
    # as the message says: delete the unfinished work, and the new inputs are prepared
    import shutil
    shutil.rmtree(tmp_path / "out" / "train" / pipeline.PARTS)
    assert prep(args) == 0
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "fresh"]) == 0
    assert digest_tree(tmp_path / "out") == digest_tree(tmp_path / "fresh")


# --- identical files under two names --------------------------------------------------------------

def test_identical_files_under_two_names_are_reported_and_kept(tmp_path):
    data = dataset()
    train_file = data["train"][WNIDS[0]][f"{WNIDS[0]}_0.JPEG"]
    data["train"][WNIDS[2]][f"{WNIDS[2]}_copy.JPEG"] = train_file  # in another class
    first_val = val_truth(data)[0]
    data["val"][first_val[1]][first_val[0]] = train_file           # a val image seen in training
    write_folders(tmp_path / "raw", data)
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "out"]) == 0  # not failures
    train = PreparedSplit(tmp_path / "out" / "train")
    assert len(train) == 13 and train.manifest["prep"]["counts"]["duplicate"] == 1
    assert dict(name=f"{WNIDS[2]}_copy.JPEG", kind="duplicate",
                reason=f"same file bytes as {WNIDS[0]}_0.JPEG (both kept)") in \
        train.manifest["anomalies"]
    val = PreparedSplit(tmp_path / "out" / "val")
    assert len(val) == 6 and val.manifest["anomalies"] == [dict(
        name=first_val[0], kind="duplicate",
        reason=f"same file bytes as train/{WNIDS[0]}_0.JPEG (both kept)")]


# --- --max-pixels above PIL's own decompression-bomb limit ----------------------------------------

def test_max_pixels_above_pils_own_limit_is_honoured(monkeypatch):
    data = encode(Image.fromarray(RGB), "PNG")  # 32x24 = 768 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # PIL alone: an error above 600
    im, _ = decode(data, "x.png", max_pixels=1000)
    np.testing.assert_array_equal(np.asarray(im), RGB)
    assert Image.MAX_IMAGE_PIXELS == 300  # PIL's global is restored
    with pytest.raises(Rejected, match="768 pixels > limit 700"):
        decode(data, "x.png", max_pixels=700)
    # at PIL's real default: a header of 15000x12000 = 180 M pixels (PIL alone refuses it above
    # 178,956,970) is let through to decoding with --max-pixels 200 M; it then fails as the
    # truncated file it is, not as a bomb
    monkeypatch.undo()
    with pytest.raises(Rejected, match="truncated or corrupt"):
        decode(png_with_declared_size(15_000, 12_000), "big.png", max_pixels=200_000_000)
