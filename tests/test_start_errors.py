"""`alexnet train` before its first step (docs/training.md, "Exit codes"): a command that cannot
start exits 2 with ONE line naming the problem and the fix, and leaves the run directory and the
data as they were; a start that failed never locks the run directory against the corrected
command; a resume may change the rate only when asked, and says where it stands as the progress
line does."""
import re

import pytest

from faults import SMALL_NET, AtStep, snapshot, write_recipe
from paper_alexnet import config, resume
from paper_alexnet.run import checkpoint, metrics
from paper_alexnet.train import main, train

BASE = SMALL_NET + ["train.epochs=1", "train.steps_per_epoch=2"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    return str(write_recipe(tmp_path_factory.mktemp("recipe") / "recipe.yaml", BASE))


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alexnet train: "), err
    return err[0]


@pytest.mark.parametrize("overrides, words", [
    (["model.devices=[cuda:3]"], ["'cuda:3' does not exist", "use model.devices=[auto]"]),
    (["model.devices=[mps]"], ["'mps' does not exist", "[cpu]"]),
    (["model.devices=[gpu]"], ["'gpu' is not a device name", "a GPU is 'cuda'"]),
    (["optim.batch_size=1000"], ["has 64 training images, fewer than one batch",
                                 "set optim.batch_size=64 or less"]),
    (["optim.lr=0"], ["optim.lr: 0.0 must be above 0.0; the default is 0.01",
                      "(from the command line: optim.lr=0)"]),
    (["optim.momentum=5"], ["optim.momentum: 5.0 must be below 1.0; the default is 0.9",
                            "(from the command line: optim.momentum=5)"]),
    (["model.num_classes=1000"], ["model.num_classes=1000 but", "classes.tsv lists 4 classes",
                                  "set model.num_classes=4"]),
    (["model.num_classes=3"], ["labels beyond the output layer", "set model.num_classes=4"]),
])
def test_a_start_that_cannot_work_is_one_line_and_writes_nothing(data_root, recipe, tmp_path,
                                                                 capsys, overrides, words):
    run = tmp_path / "run"
    before = snapshot(data_root)
    assert main(["--config", recipe, "--data", data_root, "--run-dir", str(run), *overrides]) == 2
    line = one_line(capsys)
    assert all(w in line for w in words), line
    assert not run.exists() and snapshot(data_root) == before


def test_data_given_as_one_split_or_as_raw_images_is_named(data_root, recipe, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--config", recipe, "--data", f"{data_root}/train", "--run-dir", str(run)]) == 2
    assert f"pass ROOT, not ROOT/train (here: --data {data_root})" in one_line(capsys)
    raw = tmp_path / "raw"
    (raw / "train" / "n01440764").mkdir(parents=True)
    (raw / "train" / "n01440764" / "n01440764_1.JPEG").write_bytes(b"\xff\xd8\xff")
    assert main(["--config", recipe, "--data", str(raw), "--run-dir", str(run)]) == 2
    line = one_line(capsys)
    assert "looks like raw images" in line
    assert f"run 'alexnet prep imagenet --input {raw} --out PREPARED' once" in line
    assert not run.exists()


def test_raw_class_folders_of_any_dataset_suggest_prep_images(recipe, tmp_path, capsys):
    """train/ and test/ of CIFAR-size JPEGs by class name: `prep images` (native size, test/
    becomes val/), not `prep imagenet` (which would upscale them to 256 and write no val/)."""
    raw, run = tmp_path / "cifar_folders", tmp_path / "run"
    for split in ("train", "test"):
        (raw / split / "airplane").mkdir(parents=True)
        (raw / split / "airplane" / "0001.jpg").write_bytes(b"\xff\xd8\xff")
    assert main(["--config", recipe, "--data", str(raw), "--run-dir", str(run)]) == 2
    line = one_line(capsys)
    assert f"run 'alexnet prep images --input {raw} --out PREPARED' once" in line, line
    # the ILSVRC official tars still suggest `prep imagenet`
    tars = tmp_path / "tars"
    tars.mkdir()
    (tars / "ILSVRC2012_img_train.tar").write_bytes(b"")
    assert main(["--config", recipe, "--data", str(tars), "--run-dir", str(run)]) == 2
    assert "alexnet prep imagenet --input" in one_line(capsys)
    assert not run.exists()


def test_a_failed_start_never_locks_the_run_directory(data_root, recipe, tmp_path, capsys):
    """Before the first checkpoint nothing computed is kept, so the corrected command runs in the
    same directory: after a start that failed its checks (nothing written), and after a NaN at
    step 2, before any checkpoint (config.yaml written, replaced by the corrected config)."""
    run = tmp_path / "run"
    args = ["--config", recipe, "--data", data_root, "--run-dir", str(run),
            "train.steps_per_epoch=4"]
    assert main(args + ["model.num_classes=3"]) == 2 and not run.exists()
    capsys.readouterr()
    assert main(args + ["optim.lr=1e30"]) == 1
    line = one_line(capsys)
    assert "No checkpoint was written before it, so the run directory is not locked" in line
    assert "run the same command with a lower rate (e.g. optim.lr=1e+29)" in line
    assert (run / "config.yaml").is_file() and checkpoint.list_checkpoints(run) == []
    assert main(args + ["optim.lr=0.001"]) == 0
    assert "is from a start that saved no checkpoint: replaced by the config given now" in \
        capsys.readouterr().out
    assert config.load(run / "config.yaml").optim.lr == 0.001


def test_a_resume_refuses_another_network_in_one_line_and_changes_nothing(data_root, recipe,
                                                                          tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--config", recipe, "--data", data_root, "--run-dir", str(run)]) == 0
    capsys.readouterr()
    before = snapshot(run)
    assert main(["--config", recipe, "--data", data_root, "--run-dir", str(run),
                 "model.arch=alexnet"]) == 2
    line = one_line(capsys)
    assert "model.arch: saved 'cifar10_4layer', given 'alexnet'" in line
    assert "start a new --run-dir" in line
    # config.yaml gone, another network asked for: the checkpoint's own config is the reference
    saved = (run / "config.yaml").read_text()
    (run / "config.yaml").unlink()
    assert main(["--config", recipe, "--data", data_root, "--run-dir", str(run),
                 "model.arch=alexnet"]) == 2
    assert "the newest checkpoint in" in one_line(capsys)
    # config.yaml edited by hand to another network: the checkpoint does not fit it
    (run / "config.yaml").write_text(saved.replace("arch: cifar10_4layer", "arch: alexnet"))
    assert main(["--data", data_root, "--run-dir", str(run)]) == 2
    line = one_line(capsys)
    assert "holds another network than the config describes" in line
    assert "model.arch='cifar10_4layer' in the checkpoint, 'alexnet' in the config" in line
    (run / "config.yaml").write_text(saved)
    assert snapshot(run) == before


def test_a_checkpoint_whose_tensors_do_not_fit_the_network_is_one_start_error(data_root,
                                                                              tmp_path):
    """Past the config check (the same config, its checkpoint's weights of another shape, as a
    hand-edited or foreign file would hold): restoring it names the file and both ways out."""
    from pathlib import Path
    from paper_alexnet.run import distributed, preflight
    cfg = config.load(None, BASE)
    run = resume.start(cfg, data_root, tmp_path / "run", distributed.World())
    state = {"model": {k: v[:1] for k, v in run.model.state_dict().items()}}
    with pytest.raises(preflight.StartError, match=r"(?s)^ckpt\.pt does not fit the network of "
                       r"this config \(.+\): resume with the config that trained it, or start "
                       r"a new --run-dir$"):
        resume.restore(run, Path("ckpt.pt"), state)


class Kill(Exception):
    pass


def test_allow_change_resumes_with_a_new_rate_and_records_it(data_root, tmp_path, capsys):
    """A rate change on resume is refused (exit 2, naming --allow-change) unless asked for; with
    --allow-change optim.lr the steps after the checkpoint use the new rate, and metrics.jsonl,
    config.yaml and the next checkpoint record it. The resume message counts epochs as the
    progress line does."""
    run = tmp_path / "run"
    cfg = config.load(None, SMALL_NET + ["train.epochs=2", "train.steps_per_epoch=2",
                                         "train.log_every=1", "train.checkpoint_every=1"])

    def kill_at_3(step):
        if step == 3:
            raise Kill
    with pytest.raises(Kill):
        train(cfg, data_root, run, callbacks=[AtStep(kill_at_3)], quiet=True)
    resume_args = ["--data", data_root, "--run-dir", str(run), "optim.lr=0.0005"]
    assert main(resume_args) == 2
    assert "add --allow-change optim.lr (recorded in metrics.jsonl)" in one_line(capsys)
    assert main(["--allow-change", "optim.lr", *resume_args]) == 0
    out = capsys.readouterr().out
    resumed = re.search(r"resumed from .*ckpt-000000003\.pt: (epoch \d+/\d+ step \d+/\d+)", out)
    progress = re.search(r"^(epoch \d+/\d+ step \d+/\d+) loss", out, re.M)
    assert resumed.group(1) == "epoch 2/2 step 3/4" and progress.group(1) == "epoch 2/2 step 4/4"
    assert "optim.lr 0.001 -> 0.0005" in out
    lrs = {r["step"]: r["lr"] for r in metrics.read_metrics(run, "train")}
    assert lrs == {1: 0.001, 2: 0.001, 3: 0.001, 4: 0.0005}
    event, = metrics.read_metrics(run, "event")
    assert event["changes"] == {"optim.lr": [0.001, 0.0005]}
    assert event["allowed_by"] == ["--allow-change optim.lr"]
    assert config.load(run / "config.yaml").optim.lr == 0.0005
    state = checkpoint.load_latest(run)[1]
    assert state["schedule"]["base_lr"] == 0.0005 and state["config"]["optim"]["lr"] == 0.0005


def test_resume_position_and_nan_advice_wording(tmp_path):
    assert resume.position(1, 3, 13, 10, 5) == "epoch 2/5 step 13/50 (3 of the epoch's 10 steps done)"
    assert resume.position(2, 0, 20, 10, 5) == "epoch 2/5 done, step 20/50; next: epoch 3"
    assert resume.position(5, 0, 50, 10, 5).startswith("all 5 epochs done")
    none = resume.diverged(7, "before the optimiser step", tmp_path, "ROOT", 0.01)
    assert "at step 7" in none and "not locked" in none and "newest checkpoint" not in none
    checkpoint.save(tmp_path, {"x": 1}, 5, keep_last=1)
    some = resume.diverged(7, "before the optimiser step", tmp_path, "ROOT", 0.01)
    assert "The newest checkpoint (step 5) is the last good state" in some
    assert f"alexnet train --run-dir {tmp_path} --data ROOT --allow-change optim.lr " \
           f"optim.lr=0.001" in some


def test_a_finished_run_run_again_says_nothing_was_left_to_train(data_root, recipe, tmp_path,
                                                                  capsys):
    run = tmp_path / "run"
    assert main(["--config", recipe, "--data", data_root, "--run-dir", str(run)]) == 0
    assert " images/s (training only)" in capsys.readouterr().out
    assert main(["--config", recipe, "--data", data_root, "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "done: nothing left to train (1 epoch, 2 steps, done before)" in out
    assert "nan" not in out
