"""data_prep.files.AtomicFile, the one atomic write of every writer (prepared splits, checkpoints,
metrics, results, experiment records): a hidden temporary name, fsync of the file, rename, fsync
of the folder, and nothing left behind when the write is abandoned, whatever stops it."""
import hashlib
import json
import os
import stat

import pytest

from data_prep import files, shards
from experiments import runner
from paper_alexnet.run import metrics, results


def _record(monkeypatch, folder, name):
    """Records ('fsync', 'file'|'folder', what the folder lists) and ('replace', name) in order."""
    events, fsync, replace = [], os.fsync, os.replace

    def recording_fsync(fd):
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(("fsync", kind, sorted(n for n in os.listdir(folder) if name in n)))
        fsync(fd)

    def recording_replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        replace(src, dst)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    return events


WRITERS = {
    "write_atomic": ("f.bin", lambda folder: files.write_atomic(folder / "f.bin", b"data")),
    "results.write_result": ("result.json",
                             lambda folder: results.write_result(folder / "result.json", {"a": 1})),
    "runner.write_manifest": ("experiment.json",
                              lambda folder: runner.write_manifest(folder, {"kind": "k"})),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_a_write_is_fsynced_renamed_and_its_folder_fsynced(writer, tmp_path, monkeypatch):
    """Before, results and experiment records were never fsynced and no writer but the
    checkpoint fsynced the folder: after a power cut the rename could be lost."""
    name, write = WRITERS[writer]
    events = _record(monkeypatch, tmp_path, name)
    write(tmp_path)
    assert events == [("fsync", "file", [f".{name}.tmp"]), ("replace", name),
                      ("fsync", "folder", [name])], events


def test_metrics_rewrite_on_resume_is_an_atomic_write(tmp_path, monkeypatch):
    log = metrics.MetricsLog(tmp_path)
    for step in (1, 2, 3):
        log.log("train", step, loss=1.0)
    log.close()
    events = _record(monkeypatch, tmp_path, "metrics.jsonl")
    metrics.MetricsLog(tmp_path, resume_step=2).close()
    assert events[:3] == [("fsync", "file", [".metrics.jsonl.tmp", "metrics.jsonl"]),
                           ("replace", "metrics.jsonl"), ("fsync", "folder", ["metrics.jsonl"])]
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").open()] == [1, 2]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError])
def test_an_abandoned_write_keeps_the_old_file_and_leaves_no_temporary(stop, tmp_path,
                                                                       monkeypatch):
    """A second Ctrl-C or a full disk while the bytes are synced. Before, write_atomic removed
    its temporary file only after an OSError: a KeyboardInterrupt left f.bin.tmp."""
    path = tmp_path / "f.bin"
    files.write_atomic(path, b"old")

    def stopped(fd):
        raise stop()
    monkeypatch.setattr(os, "fsync", stopped)
    with pytest.raises(stop):
        files.write_atomic(path, b"new")
    assert os.listdir(tmp_path) == ["f.bin"] and path.read_bytes() == b"old"


def test_a_with_block_that_raises_discards_the_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with files.AtomicFile(tmp_path / "f.bin") as out:
            out.file.write(b"half")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_a_killed_writers_hidden_temporaries_are_its_own(tmp_path):
    """A prep killed while an AtomicFile was open leaves ".NAME.tmp" in its split: the same
    command finishes the split instead of calling those files someone else's data (WrittenOnce)."""
    split = tmp_path / "train"
    split.mkdir()
    for leftover in (".index.npz.tmp", ".shard-00000.bin.tmp", "shard-00001.bin.tmp"):
        (split / leftover).write_bytes(b"partial")
    assert shards.existing_split(split, lambda manifest: True) is None
    (split / ".notes.txt.tmp").write_bytes(b"someone's")
    with pytest.raises(shards.WrittenOnce, match=r"\.notes\.txt\.tmp"):
        shards.existing_split(split, lambda manifest: True)
    writer = shards.ShardWriter(split, "jpeg", (8, 8, 3), [("a", "a")])
    writer.abort()
    assert sorted(os.listdir(split)) == [".index.npz.tmp", ".notes.txt.tmp"]


def test_sha256_file_is_the_digest_of_all_the_bytes_read_in_blocks(tmp_path):
    """The one file digest (manifests, checkpoints' sidecars, sources, result files' data id):
    every block counts, the last short one included."""
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 3 + b"tail"
    path.write_bytes(data)
    assert files.sha256_file(path, block=100) == hashlib.sha256(data).hexdigest()
    assert files.sha256_file(str(path)) == hashlib.sha256(data).hexdigest()
