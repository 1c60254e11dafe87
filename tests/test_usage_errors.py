"""The corners a new user hits (RELIABILITY.md, "Bad command lines and foreign files"): an output
place that cannot be written, a mistyped --input or --run-dir, raw images given to `prep verify`,
a file that is not a checkpoint, checkpoint warnings, SIGTERM to prep and eval. Each is one line
naming the problem and the fix, with a fixed exit status, and nothing written."""
import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from faults import REPO, SMALL_NET, child_env, snapshot, write_recipe
from data_prep.__main__ import main as prep
from paper_alexnet import config
from paper_alexnet.run import checkpoint
from paper_alexnet import evaluate as evaluate_module
from paper_alexnet.train import main as train_main, train

# Every prep verb that writes, with an existing input (an empty folder: nothing is read before
# the output is checked) and the output folder OUT.
PREP_VERBS = {
    "imagenet": lambda inp, out: ["imagenet", "--input", inp, "--out", out, "--workers", "1"],
    "images": lambda inp, out: ["images", "--input", inp, "--out", out, "--workers", "1"],
    "cifar10": lambda inp, out: ["cifar10", "--input", inp, "--out", out],
    "fashion-mnist": lambda inp, out: ["fashion-mnist", "--input", inp, "--out", out],
    "synthetic": lambda inp, out: ["synthetic", out, "--classes", "2", "--workers", "1"],
}


@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """A folder in which opening a file for writing fails as on a read-only file system (EROFS).
    The tests run as root here, for whom permission bits do not stop writes (os.access says yes):
    the output checks open a real probe file (os.open), so os.open answers as a read-only mount
    would."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    (folder / "result.json").write_text("{}\n")
    real = os.open

    def open_(path, flags, *args, **kwargs):
        inside = os.path.abspath(path).startswith(str(folder))
        if inside and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, "open", open_)
    return folder


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("verb", PREP_VERBS)
def test_every_prep_verb_refuses_a_read_only_output_before_any_work(verb, read_only, tmp_path,
                                                                    capsys):
    """Before: `prep cifar10` and `prep fashion-mnist` failed with an OSError traceback (or
    read their input first and failed on it), exit 1."""
    (tmp_path / "in").mkdir()
    out = read_only / "ROOT"
    assert prep(PREP_VERBS[verb](str(tmp_path / "in"), str(out))) == 2
    line = one_line(capsys.readouterr().err)
    assert "not writable" in line and "choose another folder" in line, line
    assert not out.exists()


@pytest.mark.parametrize("verb", ["imagenet", "images", "cifar10", "fashion-mnist"])
def test_a_missing_input_is_a_bad_command_line(verb, tmp_path, capsys):
    """Exit 2 (as `train --data` with a folder that does not exist), one line naming --input,
    nothing written. Before: exit 1 for prep imagenet, images, cifar10, fashion-mnist."""
    out = tmp_path / "ROOT"
    assert prep(PREP_VERBS[verb](str(tmp_path / "no-such-folder"), str(out))) == 2
    line = one_line(capsys.readouterr().err)
    assert "--input" in line and "does not exist" in line, line
    assert not out.exists()


def test_train_refuses_an_unwritable_run_directory_up_front(data_root, read_only, tmp_path,
                                                            capsys):
    """A fresh run in a read-only place: exit 2, one line naming --run-dir; it never says that a
    checkpoint exists. Before: exit 1, "the newest checkpoint in DIR is intact"."""
    recipe = write_recipe(tmp_path / "small.yaml", SMALL_NET)
    for run in (read_only / "run", tmp_path / "recipe-file-as-folder" / "run"):
        if "recipe-file" in str(run):
            run.parent.write_text("a file, not a folder\n")
        code = train_main(["--config", str(recipe), "--data", data_root, "--run-dir", str(run)])
        line = one_line(capsys.readouterr().err)
        assert code == 2 and f"--run-dir {run}" in line, line
        assert "checkpoint" not in line, line


def test_eval_refuses_a_result_file_it_cannot_write_before_evaluating(data_root, read_only,
                                                                     tmp_path, capsys):
    """The same probe and the same words as prep and train, for a new result file in a read-only
    folder and for an existing one."""
    checkpoint.save(tmp_path / "run", {}, 1, keep_last=1)
    for out in (read_only / "new.json", read_only / "result.json"):
        code = evaluate_module.main(["--checkpoint", str(checkpoint.checkpoint_path(
            tmp_path / "run", 1)), "--data", data_root, "--out", str(out)])
        line = one_line(capsys.readouterr().err)
        assert code == 2 and f"--out {out}: " in line and "is not writable (Read-only file " \
            "system): choose another path" in line, line
    assert sorted(os.listdir(read_only)) == ["result.json"]


def test_a_failed_fresh_run_does_not_claim_a_checkpoint(data_root, tmp_path, monkeypatch,
                                                        capsys):
    """A disk error before the first checkpoint: exit 1, and the message says that there is no
    checkpoint yet (before: "the newest checkpoint in RUN is intact")."""
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(checkpoint, "save", full)
    recipe = write_recipe(tmp_path / "small.yaml", SMALL_NET + ["train.epochs=1",
                                                                "train.steps_per_epoch=1"])
    run = tmp_path / "run"
    assert train_main(["--config", str(recipe), "--data", data_root, "--run-dir", str(run)]) == 1
    line = one_line(capsys.readouterr().err)
    assert "holds no checkpoint yet" in line and "is intact" not in line, line


def test_eval_of_a_run_directory_that_does_not_exist(data_root, tmp_path, capsys):
    """Before: "… holds no checkpoint: train it first"."""
    missing = tmp_path / "does" / "not" / "exist"
    assert evaluate_module.main(["--run-dir", str(missing), "--data", data_root]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"--run-dir {missing} does not exist" in line, line
    assert not missing.exists()


def test_prep_verify_of_raw_class_folders_says_so(tmp_path, capsys):
    """`prep verify` of the raw dataset (train/<class>/*.jpg, val/…) instead of the prepared ROOT:
    each split says it holds raw images, not "was prep interrupted?"."""
    from PIL import Image
    for split in ("train", "val"):
        folder = tmp_path / "raw" / split / "cat"
        folder.mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / "a.jpg")
    assert prep(["verify", str(tmp_path / "raw")]) == 1
    out = capsys.readouterr().out
    assert out.count("holds raw images or archives") == 2, out
    assert "interrupted" not in out and "alexnet prep images --input" in out, out


def test_random_bytes_with_a_matching_digest_are_not_a_checkpoint(data_root, tmp_path, capsys):
    """20 files of random bytes, each with a correct .sha256: "not a checkpoint of this
    project", never torch's advice to load with weights_only=False; `alexnet eval` says it in one
    line. Before: "holds objects other than tensors … possibly malicious" and torch's six lines."""
    rng = np.random.default_rng(7)
    for k in range(20):
        path = tmp_path / f"random-{k}.pt"
        path.write_bytes(rng.integers(0, 256, 1000 * (k + 1), dtype=np.uint8).tobytes())
        (tmp_path / f"random-{k}.pt.sha256").write_text(f"{checkpoint.sha256_file(path)}  "
                                                        f"{path.name}\n")
        with pytest.raises(checkpoint.CheckpointError) as info:
            checkpoint.load(path)
        assert "is not a checkpoint of this project" in str(info.value)
        assert "weights_only=False" not in str(info.value).replace(" ", "")
    code = evaluate_module.main(["--checkpoint", str(tmp_path / "random-0.pt"), "--data",
                                 data_root, "--out", str(tmp_path / "r.json")])
    line = one_line(capsys.readouterr().err)
    assert code == 1 and "random-0.pt is not a checkpoint of this project" in line, line
    assert "weights_only" not in line and not (tmp_path / "r.json").exists()


def test_checkpoint_warnings_are_one_line(data_root, tmp_path, capsys):
    """A warning of checkpoint.py (here: a checkpoint without its .sha256, given to `alexnet
    eval`) prints as "alexnet eval: WARNING: …", not as Python's "…/checkpoint.py:183:
    UserWarning: …" followed by the source line."""
    from paper_alexnet.app import cli
    run = tmp_path / "run"
    train(config.load(None, SMALL_NET + ["train.epochs=1", "train.steps_per_epoch=2"]),
          data_root, run, quiet=True)
    path, _ = checkpoint.load_latest(run)
    os.remove(f"{path}.sha256")
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(path), "--data", data_root, "--out",
                     str(tmp_path / "r.json"), "--no-ten-crop"]) == 0
    err = capsys.readouterr().err
    assert f"alexnet eval: WARNING: checkpoint {path} has no {path.name}.sha256" in err, err
    assert "UserWarning" not in err and "warnings.warn" not in err, err


def test_sigterm_during_eval_writes_nothing_and_exits_75(data_root, tmp_path, monkeypatch,
                                                         capsys):
    """SIGTERM while eval evaluates: one line, exit 75, no result file (before: killed by the
    signal, status -15)."""
    run = tmp_path / "run"
    train(config.load(None, SMALL_NET + ["train.epochs=1", "train.steps_per_epoch=2"]),
          data_root, run, quiet=True)

    def evaluating(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)                   # the signal ends this at once
        raise AssertionError("SIGTERM did not stop the evaluation")
    def not_handled(signum, frame):      # what eval's own handling must take over
        raise AssertionError("eval left SIGTERM to the handler it found")
    monkeypatch.setattr(evaluate_module, "evaluate", evaluating)
    before = snapshot(run)
    previous = signal.signal(signal.SIGTERM, not_handled)
    try:
        assert evaluate_module.main(["--run-dir", str(run), "--data", data_root]) == 75
        assert signal.getsignal(signal.SIGTERM) is not_handled
    finally:
        signal.signal(signal.SIGTERM, previous)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "stopped by SIGTERM; nothing was written" in line, line
    assert snapshot(run) == before


def test_group_sigterm_during_prep_with_workers_resumes_byte_identically(tmp_path):
    """SIGTERM to the process group of `alexnet prep images --workers 2` while its workers
    prepare chunks: exit 75 in one line; the same command then finishes, byte-identical to an
    uninterrupted prep. Before: prep died of the signal (status -15) with the workers."""
    from data_prep import synthetic
    from data_prep.verify import digest_tree
    synthetic.generate(tmp_path / "raw", classes=4, train_per_class=24, val_per_class=4)
    whole = tmp_path / "whole"
    assert prep(["images", "--input", str(tmp_path / "raw"), "--out", str(whole), "--size",
                 "64", "--workers", "1", "--chunk-size", "4"]) == 0
    args = [sys.executable, "-m", "paper_alexnet", "prep", "images", "--input",
            str(tmp_path / "raw"), "--out", str(tmp_path / "root"), "--size", "64", "--workers",
            "2", "--chunk-size", "4"]
    proc = subprocess.Popen(args, env=child_env(), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stderr:
        if line.startswith("prep: class folders"):       # the work starts
            os.killpg(proc.pid, signal.SIGTERM)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "stopped by SIGTERM; the finished chunks are kept" in err and "Traceback" not in err
    again = subprocess.run(args, env=child_env(), cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    for split in ("train", "val"):
        assert digest_tree(str(tmp_path / "root" / split)) == digest_tree(str(whole / split))


def test_a_second_ctrl_c_during_an_experiment_is_one_line_and_exit_130(monkeypatch, capsys,
                                                                       tmp_path):
    """The training loop and the between-runs handler answer a second Ctrl-C with
    KeyboardInterrupt; the experiment command says so in one line (no traceback), exit 130."""
    from experiments import cli as experiment_cli

    def second_ctrl_c(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(experiment_cli, "run", second_ctrl_c)
    code = experiment_cli.main(["generate", "cifar10", str(tmp_path / "gen")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130
    assert len(err) == 1 and err[0].startswith("alexnet experiment generate: aborted by a second "
                                               "Ctrl-C")


def test_prep_verify_of_raw_ilsvrc_folders_names_prep_imagenet(tmp_path, capsys):
    """The same finder as `train --data` (data_prep.files.raw_example): wnid folders are the
    ILSVRC layout, so verify suggests `prep imagenet`, not `prep images`."""
    from PIL import Image
    folder = tmp_path / "raw" / "train" / "n01440764"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "n01440764_1.JPEG")
    assert prep(["verify", str(tmp_path / "raw")]) == 1
    out = capsys.readouterr().out
    assert "holds raw images or archives" in out and "alexnet prep imagenet --input" in out, out
