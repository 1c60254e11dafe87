"""`alexnet eval` as a user meets it (docs/training.md, "Evaluation"): bad command lines exit 2 in
one line before any image is evaluated; no result is ever lost (--no-ten-crop keeps the ten-crop
numbers, a replaced result goes to the history); a damaged newest checkpoint is named loudly and
recorded; results are printed before they are written, with progress (rate, ETA); the run's own
network is used and said; ensembles may differ in how they load data, not in what they see."""
import errno
import json
import shutil

import pytest

from conftest import make_prepared
from faults import SMALL_NET
from paper_alexnet import config
from paper_alexnet.run import checkpoint, preflight, results
from paper_alexnet.evaluate import evaluate, main
from paper_alexnet.train import train


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    """A finished run of 2 epochs × 2 steps with a checkpoint at every step (1, 2, 3, 4)."""
    run = tmp_path_factory.mktemp("eval") / "run"
    cfg = config.load(None, SMALL_NET + ["train.epochs=2", "train.steps_per_epoch=2",
                                         "train.checkpoint_every=1", "train.keep_last=10"])
    train(cfg, data_root, run, quiet=True)
    return run


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


def read(path):
    return json.loads(path.read_text())


def exit_status(argv) -> int:
    """main's return value, or the status argparse exits with."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "0"], ["argument --batch-size: 0 is not a positive number of images"]),
    (["--batch-size", "-5"], ["-5 is not a positive number of images (e.g. --batch-size 128)"]),
    (["--out", "{run}/config.yaml/result.json"], ["config.yaml is a file, so nothing can be "
                                                   "written under it", "choose another path"]),
    (["--out", "{run}"], ["is a folder, not a file"]),
    (["model.lrn=off"], ["model.lrn=off: alexnet eval takes only ", "data.workers"]),
    (["--device", "cuda:3"], ["'cuda:3' does not exist"]),
    (["--data", "{data}/val"], ["pass ROOT, not ROOT/val"]),
    (["--data", "{three}"], ["is a 4-class network (its model.num_classes) but",
                             "lists 3 classes: evaluate it on the dataset it was trained on"]),
])
def test_a_bad_command_line_exits_2_in_one_line_before_evaluating(run, data_root, tmp_path,
                                                                   capsys, args, words):
    three = make_prepared(tmp_path / "three", classes=3, train_per_class=2, val_per_class=1)
    args = [a.format(run=run, data=data_root, three=three) for a in args]
    assert exit_status(["--run-dir", str(run), "--data", data_root, *args]) == 2
    captured = capsys.readouterr()
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("alexnet eval: ") and all(w in last for w in words), last
    assert "Traceback" not in captured.err and "img/s" not in captured.out   # nothing evaluated
    assert not (run / "result.json").exists()


def test_no_ten_crop_keeps_the_ten_crop_numbers_and_nothing_is_lost(run, data_root, capsys):
    assert main(["--run-dir", str(run), "--data", data_root, "eval.ten_crop=true"]) == 0
    full = read(run / "result.json")
    assert main(["--run-dir", str(run), "--data", data_root, "--no-ten-crop"]) == 0
    assert "kept ten_crop from the earlier evaluation" in capsys.readouterr().out
    merged = read(run / "result.json")
    assert merged["ten_crop"] == full["ten_crop"] and merged["center"] == full["center"]
    assert merged["kept_from_earlier"] == ["ten_crop"] and merged["final"] is True
    # a result of another checkpoint replaces it, and the replaced one goes to the history
    older = checkpoint.checkpoint_path(run, 2)
    assert main(["--checkpoint", str(older), "--data", data_root, "--out",
                 str(run / "result.json")]) == 0
    assert read(run / "result.json")["checkpoints"] == [str(older)]
    history = [json.loads(line) for line in results.history_path(run / "result.json")
               .read_text().splitlines()]
    assert history == [merged]


def test_a_damaged_newest_checkpoint_is_named_and_recorded(run, data_root, capsys):
    newest = checkpoint.checkpoint_path(run, 4)
    newest.write_bytes(newest.read_bytes()[:300])
    assert main(["--run-dir", str(run), "--data", data_root, "--no-ten-crop"]) == 0
    captured = capsys.readouterr()
    warning = ("the newest checkpoint ckpt-000000004.pt is unreadable: evaluated "
               "ckpt-000000003.pt (step 3, in epoch 2 of 2) instead, which is NOT the run's "
               "final state")
    assert f"alexnet eval: WARNING: {warning}" in captured.err
    result = read(run / "result.json")
    assert result["final"] is False and result["checkpoint_note"] == warning
    assert result["checkpoints"] == [str(checkpoint.checkpoint_path(run, 3))]


def test_results_are_printed_before_writing_with_progress(run, data_root, capsys, monkeypatch):
    def full_disk(out, result):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(results, "write_result", full_disk)
    assert main(["--run-dir", str(run), "--data", data_root, "eval.ten_crop=true"]) == 1
    captured = capsys.readouterr()
    assert "with the run's own network: cifar10_4layer, one tower, 64 px, 4 classes" in \
        captured.out
    assert "  center: 16/16 images (100%)" in captured.out and " img/s ETA " in captured.out
    assert "  ten_crop  top-1 error" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "the results above could not be written" in err[0]


@pytest.fixture(scope="module")
def resized(data_root, tmp_path_factory):
    """A finished run on resized images (data.geometry=resize, as the relu_vs_tanh recipe), whose
    config says eval.ten_crop=false."""
    run = tmp_path_factory.mktemp("resized") / "run"
    cfg = config.load(None, SMALL_NET + ["data.geometry=resize", "train.epochs=1",
                                         "train.steps_per_epoch=1"])
    train(cfg, data_root, run, quiet=True)
    return run


def test_eval_follows_the_runs_own_eval_settings(resized, run, data_root, capsys):
    assert main(["--run-dir", str(resized), "--data", data_root]) == 0
    assert "center" in read(resized / "result.json") and \
        "ten_crop" not in read(resized / "result.json")
    # the crop run's config also says eval.ten_crop=false; key=value asks for ten crops
    assert main(["--run-dir", str(run), "--data", data_root]) == 0
    assert "ten_crop" not in read(run / "result.json")
    assert main(["--run-dir", str(run), "--data", data_root, "eval.ten_crop=true"]) == 0
    assert "ten_crop" in read(run / "result.json")
    capsys.readouterr()
    # ten crops of resized images: refused in one line naming what a user types
    assert exit_status(["--run-dir", str(resized), "--data", data_root,
                        "eval.ten_crop=true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-ten-crop" in err[0] and "view=" not in err[0], err
    assert exit_status(["--run-dir", str(run), "--data", data_root, "--no-ten-crop",
                        "eval.ten_crop=yes"]) == 2
    assert "--no-ten-crop contradicts eval.ten_crop=true" in capsys.readouterr().err


def test_eval_uses_the_runs_own_network(run, data_root, capsys):
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("arch: cifar10_4layer", "arch: alexnet"))
    assert main(["--run-dir", str(run), "--data", data_root]) == 2
    line = capsys.readouterr().err.strip()
    assert "holds another network than" in line and "--checkpoint" in line


def test_settings_and_device_change_how_not_what(run, data_root):
    path = checkpoint.checkpoint_path(run, 4)
    plain = evaluate([path], data_root, ten_crop=False)
    assert main(["--checkpoint", str(path), "--data", data_root, "--out", str(run / "o.json"),
                 "--device", "cpu", "data.workers=0", "eval.batch_size=3",
                 "--no-ten-crop"]) == 0
    assert read(run / "o.json")["center"] == plain["center"]


def test_ensemble_members_may_differ_in_loading_not_in_pixels(run, data_root, tmp_path):
    """Members that differ in data.workers, data.backend, eval.batch_size (and training details)
    form an ensemble; one that subtracts the mean differently (data.mean) is refused."""
    path = checkpoint.checkpoint_path(run, 4)
    state = checkpoint.load(path)

    def member(name, **changes):
        s = dict(state, config=config.to_dict(config.build_with_overrides(
            config.RunConfig, state["config"], [f"{k.replace('__', '.')}={v}"
                                                for k, v in changes.items()])))
        return checkpoint.save(tmp_path / name, s, 4, keep_last=1)
    other = member("other", data__workers=1, eval__batch_size=5, data__backend="gpu",
                   train__seed=3)
    both = evaluate([path, other], data_root, ten_crop=False)
    assert both["center"]["members"][0] == both["center"]["members"][1]
    aligned = member("aligned", data__mean="aligned")
    with pytest.raises(preflight.StartError, match=r"differs from .* in data.mean \('aligned' vs "
                                                   r"'center'\): ensemble members must see the "
                                                   r"same pixels"):
        evaluate([path, aligned], data_root, ten_crop=False)
