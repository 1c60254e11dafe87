"""Faults during §2 preparation (RELIABILITY.md): `alexnet prep imagenet` SIGKILLed at random
moments many times in a row, then finished, gives output that verifies and is byte-identical to an
uninterrupted run; a full disk while merging stops with a clear message and a resumable state.
(One deterministic SIGKILL after k chunks, and ENOSPC while writing chunks, are in
tests/test_prep_resume.py; not repeated here.)"""
import errno
import os
import random
import subprocess
import sys
import time

import pytest

from data_prep import pipeline, shards, synthetic
from data_prep.__main__ import main
from data_prep.verify import digest_tree, verify
from faults import REPO, child_env

CHUNK = 3


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """The official ILSVRC-2012 tar layout, 4 classes, with a PNG, a CMYK and a grayscale image."""
    folder = tmp_path_factory.mktemp("raw")
    synthetic.generate(folder, classes=4, train_per_class=9, val_per_class=3, layout="tars",
                       anomalies=True)
    return folder


def prep_args(raw, out, workers=1):
    return ["imagenet", "--input", str(raw), "--out", str(out), "--chunk-size", str(CHUNK),
            "--workers", str(workers), "--shard-mb", "1"]


@pytest.fixture(scope="module")
def reference(raw, tmp_path_factory):
    """(digest of an uninterrupted prep, its wall time in a subprocess)."""
    out = tmp_path_factory.mktemp("whole") / "out"
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "data_prep", *prep_args(raw, out)],
                          env=child_env(), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return digest_tree(out), time.monotonic() - start


def phase(out) -> str:
    """Where a killed prep stood: per split, chunks done / merging / complete."""
    states = []
    for split in ("train", "val"):
        folder = os.path.join(out, split)
        parts = os.path.join(folder, pipeline.PARTS)
        if not os.path.isdir(folder):
            states.append(f"{split}:not started")
        elif os.path.isdir(parts):
            done = len([n for n in os.listdir(parts) if n.endswith(".npz")])
            merging = any(n.startswith("shard-") for n in os.listdir(folder))
            states.append(f"{split}:{'merging' if merging else f'{done} chunks'}")
        elif os.path.exists(os.path.join(folder, shards.MANIFEST)):
            states.append(f"{split}:complete")
        else:
            states.append(f"{split}:started")
    return " ".join(states)


def kill_prep_repeatedly(raw, out, kills, seconds, workers, rng):
    """Start prep, SIGKILL it after a random delay in [0, seconds), again and again, `kills`
    times; then let it finish. Returns the phases the kills landed in."""
    phases = []
    cmd = [sys.executable, "-m", "data_prep", *prep_args(raw, out, workers)]
    while len(phases) < kills:
        proc = subprocess.Popen(cmd, env=child_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            proc.wait(timeout=rng.uniform(0.0, seconds))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)       # SIGKILL: the prep process and its workers, if any
            proc.wait()
            phases.append(phase(out))
            continue
        assert proc.returncode == 0, proc.stderr.read()
        break                            # finished before the kill: next round starts over below
    final = subprocess.run(cmd, env=child_env(), cwd=REPO, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    return phases


@pytest.mark.parametrize("kills,workers", [
    pytest.param(3, 1, id="3x-1worker"),
    pytest.param(40, 1, id="40x-1worker", marks=pytest.mark.slow),
    pytest.param(40, 2, id="40x-2workers", marks=pytest.mark.slow)])
def test_prep_killed_at_random_moments_then_finished_is_byte_identical(raw, reference, tmp_path,
                                                                      kills, workers):
    want, seconds = reference
    seed = random.SystemRandom().randrange(1 << 30)
    rng, phases, rounds = random.Random(seed), [], 0
    while len(phases) < kills:     # a round ends when a run completes before its kill
        out = tmp_path / f"round{rounds}"
        phases += kill_prep_repeatedly(raw, out, kills - len(phases), seconds, workers, rng)
        assert all(p == [] for p in verify(out).values()), f"seed {seed}"
        assert digest_tree(out) == want, f"seed {seed}, kills at {phases}"
        rounds += 1
    print(f"{len(phases)} SIGKILLs of prep ({workers} worker(s), seed {seed}, {rounds} rounds), "
          f"landing in: {sorted(set(phases))}")


def _enospc_after(n):
    calls = []

    def hook(*args, **kwargs):
        calls.append(1)
        if len(calls) > n:
            raise OSError(errno.ENOSPC, "No space left on device")
    return hook


@pytest.mark.parametrize("where", ["shard", "stats", "index"])
def test_full_disk_while_merging_stops_clearly_and_resumes(raw, reference, tmp_path,
                                                           monkeypatch, capsys, where):
    """ENOSPC in the merge (writing a shard, stats.npz, or index/manifest): exit 1 with 'disk
    full … re-run the same command'; the split has no manifest (so training refuses it with
    'was prep interrupted?'); re-running finishes with byte-identical output."""
    out = tmp_path / "out"
    if where == "shard":
        real = shards.ShardWriter.add
        fail = _enospc_after(10)

        def add(self, *a):
            fail()
            real(self, *a)
        monkeypatch.setattr(pipeline.ShardWriter, "add", add)
    elif where == "stats":
        monkeypatch.setattr(pipeline.stats, "save", _enospc_after(0))
    else:
        real_write = shards.write_atomic
        fail = _enospc_after(0)

        def write_atomic(path, data):
            if os.path.basename(path) in (shards.INDEX, shards.MANIFEST):
                fail()
            real_write(path, data)
        monkeypatch.setattr(shards, "write_atomic", write_atomic)
    assert main(prep_args(raw, out)) == 1
    err = capsys.readouterr().err
    assert "disk full" in err and "re-run the same command" in err, err
    assert not (out / "train" / shards.MANIFEST).exists()
    with pytest.raises(shards.FormatError, match="was prep interrupted"):
        shards.PreparedSplit(out / "train")
    monkeypatch.undo()
    assert main(prep_args(raw, out)) == 0
    assert digest_tree(out) == reference[0]


def test_killed_while_removing_the_parts_then_rerun_completes(raw, reference, tmp_path,
                                                              monkeypatch):
    """The last step of a split, removing .parts after the manifest is written, cut short
    (a chunk's .bin gone, its .npz still there): re-running finishes the cleanup instead of
    failing on the missing chunk, and the output is byte-identical."""
    out = tmp_path / "out"

    def interrupted_rmtree(path, *a, **k):
        os.remove(os.path.join(path, "chunk-000001.bin"))
        raise OSError("killed while removing the parts (simulated)")
    monkeypatch.setattr(pipeline.shutil, "rmtree", interrupted_rmtree)
    assert main(prep_args(raw, out)) == 1
    assert (out / "train" / shards.MANIFEST).exists() and (out / "train" / ".parts").is_dir()
    monkeypatch.undo()
    assert main(prep_args(raw, out)) == 0
    assert digest_tree(out) == reference[0]
