"""Hostile inputs (RELIABILITY.md): tar members that try to escape or are not files, damaged tars,
decompression bombs and broken images, malformed or hostile YAML, manifests whose file names
escape their directory, pickles in checkpoints and .npz files. Each gets a clear error naming the
file, or is skipped/rejected and listed in the manifest; nothing is written outside the output
directory (its parent is snapshotted before and after); no code in a loaded file runs (a payload
would create a marker file). Already covered elsewhere and not repeated: '../', absolute, symlink
and device members and hard-linked class tars (tests/test_prep_imagenet.py), pickles in
checkpoints via torch.load (tests/test_checkpoint.py, tests/test_train.py), bad YAML values and
overrides (tests/test_config.py), broken image bytes one by one (tests/test_anomalies.py)."""
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from data_prep import shards, synthetic
from data_prep.__main__ import main as prep_main
from data_prep.verify import verify
from conftest import make_prepared
from faults import REPO, SMALL_NET, child_env, snapshot, write_recipe


class Payload:
    """Creates `marker` when unpickled: stands for arbitrary code in a loaded file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def add(tar, name, data=b"", **fields):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def jpeg(seed, side=40):
    buf = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def official(folder, classes=3, per_class=3):
    synthetic.generate(folder, classes=classes, train_per_class=per_class, val_per_class=1,
                       layout="tars")
    return folder


def prep(raw, out, *extra):
    return prep_main(["imagenet", "--input", str(raw), "--out", str(out), "--workers", "1",
                      "--chunk-size", "4", *map(str, extra)])


# --------------------------------------------------------------------------- tar members

def test_hostile_members_of_the_val_tar_are_skipped_and_nothing_escapes(tmp_path, capsys):
    """A flat val tar with a FIFO, a hard link, Windows-absolute and nested '..' names, a PAX
    header with a long escaping name, a symlink to a directory: all skipped and listed; the
    directory above the output is unchanged except for the output itself."""
    raw = official(tmp_path / "box" / "raw")
    names = sorted(os.listdir(raw))
    good = dict()
    with tarfile.open(raw / "ILSVRC2012_img_val.tar") as t:
        for m in t:
            good[m.name] = t.extractfile(m).read()
    hostile = {"fifo.JPEG": dict(type=tarfile.FIFOTYPE),
               "hard.JPEG": dict(type=tarfile.LNKTYPE, linkname=sorted(good)[0]),
               "C:\\Windows\\evil.JPEG": {},
               "a/b/../../../evil.JPEG": {},
               "../" * 40 + "pax.JPEG": {},
               "dirlink.JPEG": dict(type=tarfile.SYMTYPE, linkname="/tmp")}
    with tarfile.open(raw / "ILSVRC2012_img_val.tar", "w", format=tarfile.PAX_FORMAT) as t:
        for name, data in good.items():
            add(t, name, data)
        for name, fields in hostile.items():
            add(t, name, jpeg(1) if not fields else b"", **fields)
    box = tmp_path / "box"
    before = snapshot(box)
    assert prep(raw, box / "out") == 1                       # budget 0: stops, lists them
    assert "fifo.JPEG: skipped" in capsys.readouterr().err
    assert prep(raw, box / "out", "--max-failures", len(hostile)) == 0
    after = {k: v for k, v in snapshot(box).items() if not k.startswith("out")}
    assert after == before and sorted(os.listdir(raw)) == names
    val = shards.PreparedSplit(box / "out" / "val")
    listed = {a["name"]: a["reason"] for a in val.manifest["anomalies"]}
    assert set(listed) == set(hostile)
    assert "device or FIFO" in listed["fifo.JPEG"] and "link" in listed["hard.JPEG"]
    assert all("absolute or parent-relative" in listed[n] for n in list(hostile)[2:5])
    assert len(val) == len(good) and not os.path.exists("/tmp/pax.JPEG")


def _truncate_at_member_boundary(path):
    """Cut a tar right after a member's data: what a download stopped between two files gives."""
    with tarfile.open(path) as t:
        members = t.getmembers()
    middle = members[len(members) // 2]
    end = middle.offset_data + (middle.size + 511) // 512 * 512
    data = path.read_bytes()
    path.write_bytes(data[:end])


@pytest.mark.parametrize("damage", ["train tar truncated mid-member",
                                    "train tar truncated between members",
                                    "train tar of random bytes", "val tar truncated between members",
                                    "devkit not gzip", "devkit gzip truncated"])
def test_damaged_tar_files_are_refused_naming_the_file(tmp_path, capsys, damage):
    raw = official(tmp_path / "raw", classes=4)
    target = {"train": "ILSVRC2012_img_train.tar", "val": "ILSVRC2012_img_val.tar",
              "devkit": "ILSVRC2012_devkit_t12.tar.gz"}[damage.split()[0]]
    path = raw / target
    data = path.read_bytes()
    if "mid-member" in damage or damage == "devkit gzip truncated":
        path.write_bytes(data[:len(data) // 2 + 100])
    elif "between members" in damage:
        _truncate_at_member_boundary(path)
    else:
        path.write_bytes(np.random.default_rng(0).bytes(len(data) // 4))
    assert prep(raw, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert target in err and ("damaged" in err or "truncated" in err), err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "train" / shards.MANIFEST).exists()


# --------------------------------------------------------------------------- image files

def png_claiming(width, height):
    """A small valid PNG whose header claims width x height (a decompression bomb)."""
    raw = zlib.compress(b"\x00" * 4)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_bombs_truncated_and_random_images_are_rejected_and_listed(tmp_path):
    """Class folders holding a 100000x100000 PNG bomb, a truncated JPEG and random bytes named
    .JPEG: each is rejected with its reason in the manifest (the bomb from its header, in no
    time), the others prepared."""
    raw = tmp_path / "raw"
    for split, per in (("train", 3), ("val", 1)):
        for c, wnid in enumerate(("n00000001", "n00000002")):
            (raw / split / wnid).mkdir(parents=True)
            for k in range(per):
                (raw / split / wnid / f"{wnid}_{k}.JPEG").write_bytes(jpeg(10 * c + k))
    bad = raw / "train" / "n00000001"
    (bad / "bomb.JPEG").write_bytes(png_claiming(100_000, 100_000))
    (bad / "cut.JPEG").write_bytes(jpeg(99, side=200)[:700])
    (bad / "noise.JPEG").write_bytes(np.random.default_rng(1).bytes(5000))
    start = time.monotonic()
    assert prep(raw, tmp_path / "out", "--max-failures", 3) == 0
    assert time.monotonic() - start < 60
    train = shards.PreparedSplit(tmp_path / "out" / "train")
    listed = {a["name"]: (a["kind"], a["reason"]) for a in train.manifest["anomalies"]}
    assert listed["bomb.JPEG"][0] == "rejected" and "decompression bomb" in listed["bomb.JPEG"][1]
    assert listed["cut.JPEG"][0] == "rejected" and "truncated" in listed["cut.JPEG"][1]
    assert listed["noise.JPEG"] == ("rejected", listed["noise.JPEG"][1])
    assert "not an image" in listed["noise.JPEG"][1]
    assert len(train) == 6 and train.manifest["prep"]["counts"]["rejected"] == 3


# --------------------------------------------------------------------------- YAML and configs

def test_yaml_with_python_tags_runs_nothing(tmp_path, capsys):
    """A recipe asking YAML to construct Python objects (os.system) is refused by safe_load with
    the file named; the payload never runs."""
    from paper_alexnet.train import main
    marker = tmp_path / "pwned"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"model:\n  arch: !!python/object/apply:os.system [\"touch '{marker}'\"]\n")
    assert main(["--config", str(recipe), "--data", str(tmp_path), "--run-dir",
                 str(tmp_path / "run")]) == 2
    assert "evil.yaml is not valid YAML" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    """'Billion laughs': nine levels of nine aliases (9^9 leaves if expanded)."""
    from paper_alexnet import config
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    lines.append("model: {devices: *a8}")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(config.ConfigError, match="unknown key"):
        config.load(bomb)
    assert time.monotonic() - start < 10


def test_tampered_run_config_is_refused_on_resume(tmp_path, capsys):
    """RUN/config.yaml edited to a wrong type: resuming stops with the key and the file named."""
    from paper_alexnet.train import main
    data = make_prepared(tmp_path / "data")
    run = tmp_path / "run"
    recipe = write_recipe(tmp_path / "r.yaml", SMALL_NET + ["train.epochs=1",
                                                            "train.steps_per_epoch=1"])
    assert main(["--config", str(recipe), "--data", data, "--run-dir", str(run)]) == 0
    text = (run / "config.yaml").read_text().replace("epochs: 1", "epochs: one")
    (run / "config.yaml").write_text(text)
    capsys.readouterr()
    assert main(["--data", data, "--run-dir", str(run)]) == 2     # cannot start: nothing written
    err = capsys.readouterr().err
    assert "train.epochs: expected an integer" in err and "config.yaml" in err


# --------------------------------------------------------------------------- escaping paths

def test_manifest_file_names_that_escape_the_split_are_refused(tmp_path):
    """A manifest naming '../secret.bin' as a shard (or an extra file): reading the split fails
    naming the entry, and verify reports it, before anything outside the split is read."""
    make_prepared(tmp_path / "data")
    (tmp_path / "data" / "secret.bin").write_bytes(b"outside the split" * 1000)
    split = tmp_path / "data" / "val"
    manifest = json.loads((split / shards.MANIFEST).read_text())
    for field in ("shards", "files"):
        hostile = json.loads(json.dumps(manifest))
        if field == "shards":
            hostile["shards"][0]["file"] = "../secret.bin"
        else:
            hostile["files"]["/etc/passwd"] = "0" * 64
        (split / shards.MANIFEST).write_text(json.dumps(hostile))
        with pytest.raises(shards.FormatError, match="escapes"):
            shards.PreparedSplit(split)
        assert any("escapes" in p for p in verify(split)[str(split)])


def test_pruning_a_symlinked_checkpoint_never_touches_its_target(tmp_path):
    """A checkpoint name that is a symlink to a file outside the run: pruning removes the link
    only; the outside file is unchanged."""
    from paper_alexnet.run import checkpoint
    outside = tmp_path / "precious.bin"
    outside.write_bytes(b"keep me")
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "ckpt-000000001.pt").symlink_to(outside)
    for step in (2, 3):
        checkpoint.save(tmp_path / "run", {"step": step}, step, keep_last=1)
    assert outside.read_bytes() == b"keep me"
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path / "run")] == [3]


# --------------------------------------------------------------------------- pickles

def test_malicious_checkpoint_given_to_eval_runs_nothing(tmp_path, capsys):
    """`alexnet eval --checkpoint evil.pt` where evil.pt (with a matching digest) would run a
    command when unpickled: exit 1 naming the file; the payload never runs."""
    from paper_alexnet.run import checkpoint
    from paper_alexnet.evaluate import main as eval_main
    data = make_prepared(tmp_path / "data")
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"model": Payload(marker), "config": {}}, evil)
    (tmp_path / "evil.pt.sha256").write_text(f"{checkpoint.sha256_file(evil)}  evil.pt\n")
    code = eval_main(["--checkpoint", str(evil), "--data", data, "--out",
                      str(tmp_path / "r.json")])
    assert code == 1
    assert "evil.pt was refused by torch.load(weights_only=True)" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("target", ["index.npz", "stats.npz", "prep chunk"])
def test_pickled_objects_in_npz_files_are_refused(tmp_path, target):
    """index.npz / stats.npz of a prepared split, or a chunk .npz that a resumed prep would
    merge, holding an object array whose unpickling runs code: refused (np.load with
    allow_pickle=False); the payload never runs."""
    from data_prep import stats
    marker = tmp_path / "pwned"
    evil = {"label": np.array([Payload(marker)], dtype=object)}
    if target == "prep chunk":
        raw = official(tmp_path / "raw")
        cmd = [sys.executable, "-m", "data_prep", "imagenet", "--input", str(raw), "--out",
               str(tmp_path / "out"), "--workers", "1", "--chunk-size", "4"]
        killed = subprocess.run([sys.executable, os.path.join(REPO, "tests", "prep_killed.py"),
                                 "1", *cmd[3:]], env=child_env(), cwd=REPO, capture_output=True)
        assert killed.returncode == -9                   # SIGKILLed after its first chunk
        np.savez(tmp_path / "out" / "train" / ".parts" / "chunk-000000.npz", **evil,
                 length=np.array([1]))
        resumed = subprocess.run(cmd, env=child_env(), cwd=REPO, capture_output=True, text=True)
        assert resumed.returncode == 1 and "Traceback" not in resumed.stderr, resumed.stderr
        assert "chunk-000000.npz" in resumed.stderr
    else:
        root = make_prepared(tmp_path / "data")
        path = tmp_path / "data" / "train" / target
        np.savez(path, **evil, mean=np.array([Payload(marker)], dtype=object))
        with pytest.raises((shards.FormatError, ValueError), match="pickle|Object arrays"):
            if target == "index.npz":
                shards.PreparedSplit(tmp_path / "data" / "train")
            else:
                stats.load(root)
        if target == "index.npz":   # (this tiny ROOT's stats.npz is not in its manifest)
            problems = verify(root)[str(tmp_path / "data" / "train")]
            assert any("sha256 differs" in p for p in problems)
    assert not marker.exists()
