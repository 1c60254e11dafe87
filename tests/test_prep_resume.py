"""§2 ImageNet preparation is parallel, resumable and deterministic: any number of workers and any
chunking, a SIGKILL, a full disk or a failure during the merge, then a rerun: identical bytes."""
import io
import os
import signal
import subprocess
import sys

import pytest
from PIL import Image

from data_prep.__main__ import main
from data_prep.verify import digest_tree
from faults import REPO
from raw_imagenet import dataset, prep, write_folders


def test_one_and_two_workers_and_any_chunking_give_identical_bytes(tmp_path):
    """The images are 40 to 90 pixels a side: every one is enlarged (the cubic path)."""
    data = dataset()
    assert all(max(Image.open(io.BytesIO(b)).size) < 256
               for split in data.values() for files in split.values() for b in files.values())
    write_folders(tmp_path / "raw", data)
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "w1"]) == 0
    assert main(["imagenet", "--input", str(tmp_path / "raw"), "--out", str(tmp_path / "w2"),
                 "--chunk-size", "3", "--workers", "2"]) == 0  # chunking does not matter either
    assert digest_tree(tmp_path / "w1") == digest_tree(tmp_path / "w2")


def test_sigkill_then_rerun_gives_identical_bytes(tmp_path):
    write_folders(tmp_path / "raw", dataset())
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "whole"]) == 0
    cmd = [sys.executable, "-m", "data_prep", "imagenet", "--input", str(tmp_path / "raw"),
           "--out", str(tmp_path / "killed"), "--chunk-size", "2", "--workers", "1"]
    env = dict(os.environ, PYTHONPATH=REPO)
    killed = [sys.executable, os.path.join(REPO, "tests", "prep_killed.py"), "3", *cmd[3:]]
    run = subprocess.run(killed, env=env, capture_output=True, cwd=REPO)
    assert run.returncode == -signal.SIGKILL
    parts = tmp_path / "killed" / "train" / ".parts"
    assert len([f for f in os.listdir(parts) if f.endswith(".npz")]) == 3
    assert subprocess.run(cmd, env=env, capture_output=True, cwd=REPO).returncode == 0
    assert digest_tree(tmp_path / "whole") == digest_tree(tmp_path / "killed")


def test_full_disk_stops_with_a_clear_message_and_resumes(tmp_path, monkeypatch, capsys):
    import errno

    from data_prep import pipeline
    write_folders(tmp_path / "raw", dataset())
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "whole"]) == 0
    real, calls = pipeline.write_atomic, []

    def full_after_4(path, data):
        calls.append(path)
        if len(calls) > 4:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real(path, data)
    monkeypatch.setattr(pipeline, "write_atomic", full_after_4)
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "full"]) == 1
    assert "disk full" in capsys.readouterr().err
    monkeypatch.setattr(pipeline, "write_atomic", real)
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "full"]) == 0
    assert digest_tree(tmp_path / "whole") == digest_tree(tmp_path / "full")


def test_failure_during_the_merge_then_rerun_gives_identical_bytes(tmp_path, monkeypatch, capsys):
    from data_prep import pipeline
    write_folders(tmp_path / "raw", dataset())
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "whole"]) == 0
    real_add, added = pipeline.ShardWriter.add, []

    def crash_after_5(self, *a):
        added.append(1)
        if len(added) > 5:
            raise OSError("injected failure in the middle of a shard")
        real_add(self, *a)
    monkeypatch.setattr(pipeline.ShardWriter, "add", crash_after_5)
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "x"]) == 1
    assert not (tmp_path / "x" / "train" / "manifest.json").exists()
    monkeypatch.setattr(pipeline.ShardWriter, "add", real_add)
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "x"]) == 0
    assert digest_tree(tmp_path / "whole") == digest_tree(tmp_path / "x")
    capsys.readouterr()
    assert prep(["--input", tmp_path / "raw", "--out", tmp_path / "x"]) == 0  # nothing to do
    assert "already complete" in capsys.readouterr().out
    assert digest_tree(tmp_path / "whole") == digest_tree(tmp_path / "x")


@pytest.mark.parametrize("size", ["0", "8421505"])
def test_a_chunk_size_the_int32_statistic_sums_cannot_hold_is_a_bad_command_line(
        tmp_path, size, capsys):
    """A chunk adds its per-pixel statistic sums in int32 (data_prep.stats): at most 8,421,504
    images of 255 each; 0 would be no chunk at all. Exit 2, nothing written."""
    with pytest.raises(SystemExit) as e:
        main(["imagenet", "--input", str(tmp_path), "--out", str(tmp_path / "out"),
              "--chunk-size", size])
    assert e.value.code == 2
    assert f"--chunk-size: {size}: must be 1 to 8,421,504 images" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
