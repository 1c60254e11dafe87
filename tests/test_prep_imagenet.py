"""§2 ImageNet preparation end to end on tiny generated inputs in the real layouts: class folders,
the official ILSVRC-2012 and -2010 tars, the devkit (meta.mat, ground truth), flat val folders
with label files; malicious tar members and bad images."""
import importlib.util
import io
import os
import struct
import tarfile
import zlib

import numpy as np
import pytest
from PIL import Image

from data_prep import stats
from data_prep.exits import InputError
from data_prep.imagenet import discover
from data_prep.resize import resize_center_crop
from data_prep.shards import PreparedSplit
from data_prep.verify import verify
from raw_imagenet import (WNIDS, add, dataset, jpeg, prep, tar_bytes, val_truth, write_folders,
                          write_official, write_tars)


def check_prepared(out, data):
    assert all(p == [] for p in verify(out, decode=True).values())
    train = PreparedSplit(out / "train")
    assert [w for w, _ in train.classes] == WNIDS  # class index = sorted wnid order
    want = [(w, n) for w in WNIDS for n in sorted(data["train"][w])]
    assert [(WNIDS[lab], str(n)) for lab, n in zip(train.labels, train.names)] == want
    val = PreparedSplit(out / "val")
    assert [(str(n), WNIDS[lab]) for n, lab in zip(val.names, val.labels)] == val_truth(data)
    # each stored image is the §2 resize/crop of its source, JPEG-encoded once
    src = Image.open(io.BytesIO(data["train"][WNIDS[1]][str(train.names[5])])).convert("RGB")
    want_px = np.asarray(resize_center_crop(src), np.float64)
    assert np.abs(train.image(5).astype(np.float64) - want_px).mean() < 6
    s = stats.load(out)
    pixels = np.stack([train.image(i) for i in range(len(train))]).astype(np.float64)
    np.testing.assert_allclose(s["mean"], pixels.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(s["cov"], np.cov(pixels.reshape(-1, 3).T, bias=True), rtol=1e-9)
    return train


def test_class_folders(tmp_path):
    data = dataset()
    write_folders(tmp_path / "raw", data)
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "out"]) == 0
    check_prepared(tmp_path / "out", data)


def quantization(jpeg_bytes):
    with Image.open(io.BytesIO(jpeg_bytes)) as im:
        return im.quantization


def test_stored_jpegs_are_quality_95_by_default_as_the_author_stored_them(tmp_path, capsys):
    """cuda-convnet2's make-data encodes at JPEG_QUALITY 95: a fresh prep records 95 in its
    manifest and its records carry libjpeg's quality-95 quantisation tables."""
    data = dataset(n_train=1, n_val=1)
    write_folders(tmp_path / "raw", data)
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "out"]) == 0
    train = PreparedSplit(tmp_path / "out" / "train")
    assert train.manifest["prep"]["quality"] == 95
    q95 = io.BytesIO()
    Image.new("RGB", (16, 16)).save(q95, "JPEG", quality=95)
    assert quantization(train.read(0)) == quantization(q95.getvalue())
    for bad in ("0", "101"):  # libjpeg would clamp these silently: a command-line error
        with pytest.raises(SystemExit) as stop:
            prep(["--input", tmp_path / "raw", "--out", tmp_path / "bad", "--quality", bad])
        assert stop.value.code == 2
        assert f"argument --quality: {bad}: must be 1 to 100" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "bad")


def test_official_tars_with_devkit_and_val_labels_fallback(tmp_path, capsys):
    data = dataset()
    write_official(tmp_path / "raw", data)
    labels = tmp_path / "val.txt"
    labels.write_text("".join(f"{n} {w}\n" for n, w in val_truth(data)))
    # this devkit has no meta.mat: the error says what to do
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "x"]) == 1
    err = capsys.readouterr().err
    assert "data/meta.mat" in err and "--val-labels" in err
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "out",
                 "--val-labels", labels]) == 0
    check_prepared(tmp_path / "out", data)
    # the same images from folders give the same shard bytes
    write_folders(tmp_path / "folders", data)
    assert prep(["--input", tmp_path / "folders", "--out", tmp_path / "out2"]) == 0
    for split in ("train", "val"):
        a = PreparedSplit(tmp_path / "out" / split).manifest["shards"]
        b = PreparedSplit(tmp_path / "out2" / split).manifest["shards"]
        assert a == b


def mat_element(kind, data):
    return struct.pack("<II", kind, len(data)) + data + b"\0" * (-len(data) % 8)


def mat_matrix(cls, dims, body, name=b""):
    head = (mat_element(6, struct.pack("<II", cls, 0)) + mat_element(5, struct.pack(
        f"<{len(dims)}i", *dims)) + mat_element(1, name))
    return mat_element(14, head + body)


def meta_mat(synsets, compress):
    """A level-5 MAT-file with the devkit's `synsets` struct array, written from the spec."""
    fields = [b"ILSVRC2012_ID", b"WNID", b"words"]
    body = mat_element(5, struct.pack("<i", 32)) + mat_element(1, b"".join(
        f.ljust(32, b"\0") for f in fields))
    for ident, wnid, words in synsets:
        body += mat_matrix(6, (1, 1), mat_element(9, struct.pack("<d", ident)))
        for text in (wnid, words):
            body += mat_matrix(4, (1, len(text)), mat_element(4, text.encode("utf-16-le")))
    var = mat_matrix(2, (len(synsets), 1), body, b"synsets")
    if compress:
        var = struct.pack("<II", 15, len(z := zlib.compress(var))) + z
    return b"MATLAB 5.0 MAT-file".ljust(116) + b"\0" * 8 + struct.pack("<H", 0x100) + b"IM" + var


@pytest.mark.parametrize("compress", [False, True])
def test_devkit_meta_mat_read_without_scipy(tmp_path, compress):
    data = dataset()
    ids = write_official(tmp_path / "raw", data)
    synsets = [(i, w, f"words of {w}") for w, i in ids.items()] + [(1001, "n00001740", "entity")]
    mat = meta_mat(synsets, compress)
    if importlib.util.find_spec("scipy"):  # a second reader, where it is installed
        import scipy.io
        s = scipy.io.loadmat(io.BytesIO(mat), squeeze_me=True, struct_as_record=False)["synsets"]
        assert [(int(x.ILSVRC2012_ID), x.WNID) for x in s] == [t[:2] for t in synsets]
    dk = tmp_path / "raw" / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(dk) as t:
        truth = t.extractfile(
            "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt").read()
    with tarfile.open(dk, "w:gz") as t:
        add(t, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)
        add(t, "ILSVRC2012_devkit_t12/data/meta.mat", mat)
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "out"]) == 0
    train = check_prepared(tmp_path / "out", data)
    assert train.classes[0] == (WNIDS[0], f"words of {WNIDS[0]}")


@pytest.mark.parametrize("style", ["pairs", "wnid_per_line"])
def test_flat_val_folder_with_labels_file(tmp_path, style):
    data = dataset()
    write_folders(tmp_path / "raw", {"train": data["train"]})
    os.makedirs(tmp_path / "raw" / "val")
    for name, w in val_truth(data):
        (tmp_path / "raw" / "val" / name).write_bytes(data["val"][w][name])
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{n} {w}\n" if style == "pairs" else f"{w}\n"
                              for n, w in val_truth(data)))
    with pytest.raises(InputError, match="val images in .* have no labels: pass --val-labels"):
        discover(str(tmp_path / "raw"))
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "out"]) == 1  # no labels
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "out",
                 "--val-labels", labels]) == 0
    check_prepared(tmp_path / "out", data)


def test_no_known_layout_names_what_was_expected(tmp_path):
    with pytest.raises(InputError, match="(?s)ILSVRC2012_img_train.tar.*ILSVRC2010_images_train"):
        discover(str(tmp_path))


def test_malicious_tar_members_are_skipped_and_reported(tmp_path, capsys):
    data = dataset(n_val=1)
    raw = tmp_path / "in" / "raw"
    os.makedirs(raw)
    evil_inner = tarfile.open(fileobj=(buf := io.BytesIO()), mode="w")
    add(evil_inner, "../../escape.JPEG", jpeg(1))
    add(evil_inner, "/etc/abs.JPEG", jpeg(2))
    add(evil_inner, "link.JPEG", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
    add(evil_inner, "dev.JPEG", b"", type=tarfile.CHRTYPE)
    for name, b in data["train"][WNIDS[0]].items():
        add(evil_inner, name, b)
    evil_inner.close()
    with tarfile.open(raw / "ILSVRC2012_img_train.tar", "w") as outer:
        add(outer, f"{WNIDS[0]}.tar", buf.getvalue())
        for w in WNIDS[1:]:
            add(outer, f"{w}.tar", tar_bytes(sorted(data["train"][w].items())))
        add(outer, "../n09999999.tar", tar_bytes([("x.JPEG", jpeg(3))]))
        add(outer, "hardlink.tar", b"", type=tarfile.LNKTYPE, linkname="n01440764.tar")
    val = sorted((n, b) for files in data["val"].values() for n, b in files.items())
    (raw / "ILSVRC2012_img_val.tar").write_bytes(tar_bytes(val + [("../../v.JPEG", jpeg(4))]))
    labels = tmp_path / "in" / "val.txt"
    labels.write_text("".join(f"{n} {w}\n" for n, w in val_truth(data)))
    before = sorted(os.listdir(tmp_path))
    args = ["--input", raw, "--out", tmp_path / "out", "--val-labels", labels]
    assert prep(args) == 1  # default budget 0: the skipped members are listed
    assert "escape.JPEG: skipped" in capsys.readouterr().err
    assert prep(args + ["--max-failures", "6"]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(before + ["out"])
    assert not (tmp_path / "escape.JPEG").exists() and not os.path.exists("/etc/abs.JPEG")
    train = PreparedSplit(tmp_path / "out" / "train")
    reasons = {a["name"]: a["reason"] for a in train.manifest["anomalies"]}
    assert set(reasons) == {f"{WNIDS[0]}.tar/../../escape.JPEG", f"{WNIDS[0]}.tar//etc/abs.JPEG",
                            f"{WNIDS[0]}.tar/link.JPEG", f"{WNIDS[0]}.tar/dev.JPEG",
                            "../n09999999.tar", "hardlink.tar"}
    assert "link to '/etc/passwd'" in reasons[f"{WNIDS[0]}.tar/link.JPEG"]
    assert len(train) == 4 * len(WNIDS) and [w for w, _ in train.classes] == WNIDS
    assert PreparedSplit(tmp_path / "out" / "val").manifest["prep"]["counts"]["skipped"] == 1


def test_bad_images_converted_or_rejected_and_budgeted(tmp_path, capsys):
    data = dataset(n_val=1)
    cls = data["train"][WNIDS[0]]
    rgb = np.random.default_rng(5).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for name, image, fmt in [("cmyk.JPEG", Image.fromarray(rgb).convert("CMYK"), "JPEG"),
                             ("png.JPEG", Image.fromarray(rgb), "PNG"),
                             ("gray.JPEG", Image.fromarray(rgb[..., 0]), "JPEG")]:
        b = io.BytesIO()
        image.save(b, fmt)
        cls[name] = b.getvalue()
    cls["empty.JPEG"] = b""
    cls["text.JPEG"] = b"not an image"
    write_folders(tmp_path / "raw", data)
    args = ["--input", tmp_path / "raw", "--out", tmp_path / "out"]
    assert prep(args) == 1
    err = capsys.readouterr().err
    assert "2 inputs could not be prepared" in err and "empty.JPEG: rejected: empty file" in err
    assert prep(args + ["--max-failures", "2"]) == 0
    train = PreparedSplit(tmp_path / "out" / "train")
    kinds = {a["name"]: (a["kind"], a["reason"]) for a in train.manifest["anomalies"]}
    assert kinds["cmyk.JPEG"] == ("converted", "CMYK -> RGB")
    assert kinds["png.JPEG"] == ("converted", "format PNG named .JPEG")
    assert kinds["gray.JPEG"] == ("converted", "grayscale (L) -> RGB")
    assert kinds["empty.JPEG"][0] == kinds["text.JPEG"][0] == "rejected"
    assert train.manifest["prep"]["counts"] == dict(images=15, converted=3, rejected=2, skipped=0,
                                                  missing=0, duplicate=0)
    assert len(train) == 15 and "empty.JPEG" not in set(train.names)


def test_ilsvrc_2010_official_names_with_test_split(tmp_path):
    data = dataset(n_val=1)
    raw = tmp_path / "raw"
    val = write_tars(raw, data, year=2010)
    test = [(n.replace("val", "test"), b) for n, b in val]
    (raw / "ILSVRC2010_images_test.tar").write_bytes(tar_bytes(test))
    (tmp_path / "v.txt").write_text("".join(f"{w}\n" for _, w in val_truth(data)))
    (tmp_path / "t.txt").write_text("".join(f"{n.replace('val', 'test')} {w}\n"
                                            for n, w in val_truth(data)))
    assert prep(["--input", raw, "--out", tmp_path / "out", "--val-labels", tmp_path / "v.txt",
                 "--test-labels", tmp_path / "t.txt"]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["test", "train", "val"]
    assert all(p == [] for p in verify(tmp_path / "out").values())
    t = PreparedSplit(tmp_path / "out" / "test")
    assert t.manifest["prep"]["source"]["year"] == 2010
    assert [WNIDS[lab] for lab in t.labels] == [w for _, w in val_truth(data)]
