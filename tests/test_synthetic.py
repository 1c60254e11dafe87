"""docs/paper.md §1: the synthetic ImageNet-shaped dataset (data_prep.synthetic, its images from
data_prep.synthetic_images), both raw layouts, through the real prep."""
import colorsys
import gzip
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep import matfile, synthetic
from data_prep.__main__ import main as prep_main
from data_prep.shards import PreparedSplit
from data_prep.synthetic_images import class_design, image_bytes, render

SMALL = dict(classes=3, train_per_class=4, val_per_class=2)


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def members(data: bytes) -> dict:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}


@pytest.mark.parametrize("layout", ["folders", "tars"])
def test_deterministic_byte_identical(tmp_path, layout):
    tiny = dict(classes=2, train_per_class=3, val_per_class=1, layout=layout, anomalies=True)
    a = synthetic.generate(tmp_path / "a", seed=5, **tiny)
    synthetic.generate(tmp_path / "b", seed=5, workers=2, **tiny)  # any number of processes
    synthetic.generate(tmp_path / "c", seed=6, **tiny)
    ta, tb, tc = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert ta == tb
    train = sorted(k for k in ta if k.startswith("train") or k.endswith("_train.tar"))
    assert train and all(k in tc for k in train)
    assert all(ta[k] != tc[k] for k in train)  # another seed, other images
    assert a["train"] == 6 and a["val"] == 2


def test_folders_layout_counts_names_and_sizes(tmp_path):
    synthetic.generate(tmp_path, classes=3, train_per_class=5, val_per_class=2, seed=1)
    wnids = ["n00000001", "n00000002", "n00000003"]
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == wnids
    sizes, val_names = [], []
    for w in wnids:
        train = sorted((tmp_path / "train" / w).iterdir())
        assert [p.name for p in train] == sorted(f"{w}_{k}.JPEG" for k in range(1, 6))
        val = sorted((tmp_path / "val" / w).iterdir())
        assert len(val) == 2
        val_names += [p.name for p in val]
        for p in train + val:
            with Image.open(p) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                sizes.append(im.size)
    assert sorted(val_names) == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 7)]
    w, h = np.array(sizes).T
    assert w.min() >= 180 and h.min() >= 180 and w.max() <= 500 and h.max() <= 500
    assert (w > h).any() and (h > w).any() and len(set(sizes)) > len(sizes) // 2
    names = (tmp_path / "synset_words.txt").read_text().splitlines()
    assert [n.split()[0] for n in names] == wnids


def test_tars_layout_is_the_official_one(tmp_path):
    synthetic.generate(tmp_path, layout="tars", seed=2, **SMALL)
    outer = members((tmp_path / "ILSVRC2012_img_train.tar").read_bytes())
    assert sorted(outer) == ["n00000001.tar", "n00000002.tar", "n00000003.tar"]
    for name, data in outer.items():
        wnid = name[:-4]
        assert sorted(members(data)) == sorted(f"{wnid}_{k}.JPEG" for k in range(1, 5))
    val = members((tmp_path / "ILSVRC2012_img_val.tar").read_bytes())
    assert sorted(val) == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 7)]
    devkit = members(gzip.decompress((tmp_path / "ILSVRC2012_devkit_t12.tar.gz").read_bytes()))
    truth = devkit["ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"]
    ids = [int(x) for x in truth.split()]
    assert sorted(ids) == [1, 1, 2, 2, 3, 3]
    # meta.mat read by data_prep.matfile (written independently of our writer)
    synsets = matfile.loadmat(devkit["ILSVRC2012_devkit_t12/data/meta.mat"])["synsets"]
    leaves = [s for s in synsets if int(s["num_children"].ravel()[0]) == 0]
    assert [(int(s["ILSVRC2012_ID"].ravel()[0]), s["WNID"]) for s in leaves] == \
        [(1, "n00000001"), (2, "n00000002"), (3, "n00000003")]
    assert leaves[0]["words"] == class_design(0, 3)["name"]
    # the labels the devkit gives are those of the images: same bytes as image_bytes(class, k)
    order = synthetic.val_order(2, 3, 2)
    for i, (c, k) in enumerate(order):
        assert ids[i] == c + 1
        assert val[f"ILSVRC2012_val_{i + 1:08d}.JPEG"] == image_bytes(2, "val", c, k, 3)


def test_mat_writer_bytes_follow_the_format():
    """A 1x1 struct, one double field, byte for byte as the MAT-file level 5 spec lays it out."""
    data = synthetic.mat_struct_array("s", [{"a": 2.5}])
    assert data[:10] == b"MATLAB 5.0" and data[124:128] == b"\x00\x01IM" and len(data) % 8 == 0
    def el(kind, payload):
        return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)
    double = el(14, el(6, struct.pack("<II", 6, 0)) + el(5, struct.pack("<2i", 1, 1)) + el(1, b"")
                + el(9, struct.pack("<d", 2.5)))
    body = (el(6, struct.pack("<II", 2, 0)) + el(5, struct.pack("<2i", 1, 1)) + el(1, b"s")
            + struct.pack("<HHi", 5, 4, 32) + el(1, b"a".ljust(32, b"\0")) + double)
    assert data[128:] == el(14, body)


def test_anomalies_are_the_real_kinds(tmp_path):
    summary = synthetic.generate(tmp_path, anomalies=True, seed=3, **SMALL)
    assert sorted(summary["anomalies"].values()) == ["cmyk", "cmyk", "grayscale", "png"]
    kinds = {}
    for p in tmp_path.rglob("*.JPEG"):
        with Image.open(p) as im:
            kinds[(im.format, im.mode)] = kinds.get((im.format, im.mode), 0) + 1
    assert kinds == {("JPEG", "RGB"): 14, ("PNG", "RGB"): 1, ("JPEG", "CMYK"): 2, ("JPEG", "L"): 1}
    with Image.open(tmp_path / "train" / "n00000001" / "n00000001_1.JPEG") as im:
        assert im.format == "PNG"


def test_each_class_carries_its_hue():
    """The class signal is there: the dominant hue of saturated pixels is the class's hue."""
    hits = total = 0
    for c in range(10):
        want = class_design(c, 10)["hue"]
        for k in range(2):
            rng = np.random.default_rng([0, 0, c, k])
            h, w = (int(x) for x in rng.integers(180, 501, size=2))
            img = render(rng, class_design(c, 10), h, w).astype(float) / 255
            centre = img[h // 2 - 20:h // 2 + 20, w // 2 - 20:w // 2 + 20].reshape(-1, 3)
            hsv = np.array([colorsys.rgb_to_hsv(*px) for px in centre[::4]])
            sat = hsv[hsv[:, 1] > 0.45]
            hue = np.angle(np.exp(2j * np.pi * sat[:, 0]).mean()) / (2 * np.pi) % 1.0
            dist = min(abs(hue - want), 1 - abs(hue - want))
            hits += dist < 0.5 / 5  # closer to its own hue than to a neighbouring class hue
            total += 1
    assert hits >= 0.9 * total


def test_designs_are_distinct_and_flip_safe():
    for n in (2, 3, 10, 25):
        designs = [class_design(c, n) for c in range(n)]
        keys = {(round(d["hue"], 6), d["family"], d["angle"], d["period_scale"]) for d in designs}
        assert len(keys) == n
        assert all(0 <= d["angle"] < 90 for d in designs)


@pytest.mark.parametrize("layout", ["folders", "tars"])
def test_raw_to_prepared_through_the_real_prep(tmp_path, layout):
    raw, out = tmp_path / "raw", tmp_path / "out"
    assert prep_main(["synthetic", str(raw), "--classes", "3", "--train-per-class", "4",
                      "--val-per-class", "2", "--layout", layout, "--seed", "4",
                      "--anomalies"]) == 0
    assert prep_main(["imagenet", "--input", str(raw), "--out", str(out), "--workers", "1"]) == 0
    train, val = PreparedSplit(out / "train"), PreparedSplit(out / "val")
    assert len(train) == 12 and len(val) == 6 and train.image_shape == (256, 256, 3)
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert sorted(val.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert [w for w, _ in train.classes] == ["n00000001", "n00000002", "n00000003"]
    assert train.classes[1][1] == class_design(1, 3)["name"]
    # val labels (from class folders, or from the devkit) are those the images were made for
    truth = {f"ILSVRC2012_val_{i + 1:08d}.JPEG": c for i, (c, _) in
             enumerate(synthetic.val_order(4, 3, 2))}
    assert {str(n): int(y) for n, y in zip(val.names, val.labels)} == truth
    assert train.image(5).shape == (256, 256, 3) and val.image(0).dtype == np.uint8
    counts = train.manifest["prep"]["counts"], val.manifest["prep"]["counts"]
    assert counts[0]["converted"] == 3 and counts[1]["converted"] == 1
    assert counts[0]["rejected"] == counts[1]["rejected"] == 0
    notes = " ".join(str(a) for a in train.manifest["anomalies"])
    assert "PNG" in notes and "CMYK" in notes and "grayscale" in notes


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert synthetic.main([str(tmp_path), "--classes", "1"]) == 2
    assert "classes=1" in capsys.readouterr().err
