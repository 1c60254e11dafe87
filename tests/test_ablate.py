"""experiments/ablate.py and runner.py: every requested variant is in the ablation table, with its
status when it has no numbers (a diverged no_lrn run was once left out of the table); reports name
no absolute local path; a preempted experiment exits 75 like `alexnet train`."""
import json
from pathlib import Path

import pytest

from experiments import ablate, cli, recipes, report, runner
import fault_hook
from conftest import prepared_synthetic
from paper_alexnet import config

SCALE = ["train.epochs=3", "optim.batch_size=32", "data.workers=0", "model.num_classes=10"]


def _row(text: str, variant: str) -> list[str]:
    for line in text.splitlines():
        if line.startswith(f"| {variant} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no table row for {variant!r} in:\n{text}")


def _fake_run(run_dir: Path, variant: str, epochs_done: int, result: dict | None = None,
              events: list[dict] = ()) -> None:
    """A run directory as train.py and evaluate.py leave it: config.yaml, metrics.jsonl with
    `epochs_done` epochs of 50 steps, result.json when given."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config.dump(recipes.load_recipe(variant, SCALE)))
    records = []
    for e in range(1, epochs_done + 1):
        records += [{"kind": "train", "step": 50 * e, "epoch": e, "time": 100.0 * e, "loss": 2.0,
                     "error": 0.8, "lr": 0.01, "train_time_s": 30.0 * e},
                    {"kind": "val", "step": 50 * e, "epoch": e, "time": 100.0 * e + 5,
                     "top1": 0.7, "top5": 0.1}]
    records += list(events)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if result is not None:
        (run_dir / "result.json").write_text(json.dumps(result))


def _result(top1: float, top5: float, split: str = "val") -> dict:
    return {"split": split, "images": 200, "checkpoints": ["ckpt-000000150.pt"],
            "center": {"top1": top1 + 0.01, "top5": top5}, "ten_crop": {"top1": top1, "top5": top5}}


def test_every_requested_variant_has_a_row_with_its_status(tmp_path):
    exp = tmp_path / "runs" / "ablate"
    _fake_run(exp / "paper" / "seed0", "paper", 3, _result(0.515, 0.0))
    _fake_run(exp / "remove_conv3" / "seed0", "remove_conv3", 3, _result(0.505, 0.0))
    # the bug: no_lrn diverged in epoch 2 (no result.json) and its row was missing
    _fake_run(exp / "no_lrn" / "seed0", "no_lrn", 1)
    (exp / "no_lrn" / "seed0" / runner.DIVERGED).write_text(
        "the training loss or a gradient was NaN or infinite at step 96 (detected before the "
        "optimiser step); ...\n")
    _fake_run(exp / "no_pca" / "seed0", "no_pca", 1,
              events=[{"kind": "event", "step": 70, "epoch": 2, "event": "preempted",
                       "signal": "SIGTERM"}])
    _fake_run(exp / "no_dropout" / "seed0", "no_dropout", 0)
    (exp / "no_dropout" / "seed0" / runner.FAILED).write_text(
        "Traceback (most recent call last):\n  ...\nOSError: [Errno 28] No space left on device\n")
    _fake_run(exp / "pooling_z2" / "seed0", "pooling_z2", 3, _result(0.5, 0.0, split="test"))
    variants = ["remove_conv3", "no_lrn", "no_pca", "no_dropout", "pooling_z2", "one_tower_half"]
    manifest = {"kind": "ablate", "data": str(tmp_path / "data" / "prepared"),
                "variants": variants, "seeds": [0], "overrides": SCALE, "split": "val",
                "ten_crop": True, "note": ""}
    text = ablate.write_report(exp, manifest).read_text()

    assert _row(text, "paper")[2] == "51.50" and _row(text, "paper")[7] == "finished"
    conv3 = _row(text, "remove_conv3")
    assert conv3[1:5] == ["1", "50.50", "0.00", "-1.00"] and conv3[7] == "finished"
    for variant in variants[1:]:
        assert _row(text, variant)[1:4] == ["0", "—", "—"], variant
    assert "diverged at epoch 2 (NaN or infinite loss at step 96)" in _row(text, "no_lrn")[7]
    assert "unfinished (1 of 3 epochs done, preempted by SIGTERM at step 70): resume with the " \
        "same `alexnet experiment ablate` command" in _row(text, "no_pca")[7]
    assert "failed: OSError: [Errno 28] No space left on device" in _row(text, "no_dropout")[7]
    assert "evaluated on split 'test', not 'val'" in _row(text, "pooling_z2")[7]
    assert "not started" in _row(text, "one_tower_half")[7]
    assert "Status: diverged at epoch 2" in text           # the run's own section says it too
    # item: no absolute local path (the data root, the run directories) in the report
    assert str(tmp_path) not in text and "Data: `prepared`" in text


def test_report_without_a_baseline_still_lists_the_variants(tmp_path):
    exp = tmp_path / "ablate"
    _fake_run(exp / "no_lrn" / "seed0", "no_lrn", 3, _result(0.6, 0.1))
    manifest = {"kind": "ablate", "data": "prepared", "variants": ["no_lrn"], "seeds": [0, 1],
                "overrides": [], "split": "val", "ten_crop": True, "note": ""}
    text = ablate.write_report(exp, manifest).read_text()
    assert "No evaluated baseline run yet" in text
    assert _row(text, "paper")[7] == "seed 0: not started: the same `alexnet experiment " \
        "ablate` command runs it; seed 1: not started: the same `alexnet experiment ablate` " \
        "command runs it"
    row = _row(text, "no_lrn")
    assert row[1:5] == ["1", "60.00", "10.00", "—"]
    assert row[7].startswith("seed 1: not started")


def test_shown_path_keeps_only_the_last_component(tmp_path):
    assert report.shown_path(tmp_path / "data" / "imagenet_demo") == "imagenet_demo"
    assert report.shown_path("data/imagenet_demo/") == "imagenet_demo"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A prepared synthetic ImageNet-shaped set: 2 classes, 2 train and 1 val image each."""
    return prepared_synthetic(tmp_path_factory.mktemp("imagenet"), classes=2)


TINY = ["train.epochs=1", "train.steps_per_epoch=2", "optim.batch_size=2", "eval.batch_size=2",
        "eval.ten_crop=false", "data.workers=0", "train.log_every=1", "model.num_classes=2",
        "model.input_size=99"]


def test_preempted_experiment_exits_75_and_reports_the_stop(tiny_root, tmp_path, monkeypatch):
    """SIGTERM during the baseline's first step (the test-only fault hook sends it): the step's
    checkpoint is written, the report says so, the command exits 75 (resumable)."""
    fault_hook.install(monkeypatch, "sigterm:1")
    runs = tmp_path / "runs"
    code = cli.main(["ablate", "--data", str(tiny_root), "--runs", str(runs), "--quiet",
                     "--variants", "no_lrn", *TINY])
    assert code == 75
    text = (runs / "ablate" / "report" / "report.md").read_text()
    assert "unfinished (0 of 1 epochs done, preempted by SIGTERM at step 1)" in \
        _row(text, "paper")[7]
    assert "not started" in _row(text, "no_lrn")[7]
    assert not (runs / "ablate" / "paper" / "seed0" / runner.FAILED).exists()
    assert str(tmp_path) not in text and str(tiny_root) not in text


def test_a_failed_run_is_recorded_and_the_command_exits_1(tiny_root, tmp_path, monkeypatch,
                                                          capsys):
    fault_hook.install(monkeypatch, "crash:1")    # every run crashes at its first step
    runs = tmp_path / "runs"
    assert cli.main(["ablate", "--data", str(tiny_root), "--runs", str(runs), "--quiet",
                     "--variants", "no_lrn", *TINY]) == 1
    assert "2 run(s) failed (paper seed 0, no_lrn seed 0)" in capsys.readouterr().err
    text = (runs / "ablate" / "report" / "report.md").read_text()
    for variant in ("paper", "no_lrn"):
        assert "failed: " in _row(text, variant)[7] and "InjectedCrash" in _row(text, variant)[7]
        assert (runs / "ablate" / variant / "seed0" / runner.FAILED).is_file()


def test_sigterm_between_runs_exits_75_before_the_next_run(tiny_root, tmp_path, monkeypatch):
    """SIGTERM while the baseline is being evaluated (outside training): the evaluation finishes,
    the next run does not start, the command exits 75; the same command then finishes the rest."""
    import os
    import signal
    evaluate_into = runner.evaluate_into

    def evaluate_then_sigterm(*args, **kwargs):
        result = evaluate_into(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)         # as a scheduler would, at this moment
        return result
    monkeypatch.setattr(runner, "evaluate_into", evaluate_then_sigterm)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    runs = tmp_path / "runs"
    command = ["ablate", "--data", str(tiny_root), "--runs", str(runs), "--quiet",
               "--variants", "no_lrn", *TINY]
    assert cli.main(command) == 75
    assert (runs / "ablate" / "paper" / "seed0" / "result.json").is_file()
    assert not (runs / "ablate" / "no_lrn").exists()
    assert "not started" in _row((runs / "ablate" / "report" / "report.md").read_text(),
                                 "no_lrn")[7]
    assert {s: signal.getsignal(s) for s in handlers} == handlers   # the handlers are put back
    monkeypatch.setattr(runner, "evaluate_into", evaluate_into)
    assert cli.main(command) == 0
    assert _row((runs / "ablate" / "report" / "report.md").read_text(), "no_lrn")[7] == "finished"


# ------------------------------------------------- another base recipe, and baseline-only seeds

def test_variant_on_another_recipe_is_that_recipe_plus_the_one_change():
    for name in ("remove_conv3", "remove_conv4", "no_lrn"):
        assert recipes.load_variant("paper", name) == recipes.load_recipe(name)
        on_woof = recipes.config_diff(recipes.load_variant("imagewoof", name))
        assert on_woof == {**recipes.config_diff(recipes.load_recipe("imagewoof")),
                           **recipes.config_diff(recipes.load_recipe(name))}
    assert recipes.load_variant("imagewoof", "imagewoof") == recipes.load_recipe("imagewoof")
    assert recipes.describe(recipes.load_variant("imagewoof", "remove_conv3")) == \
        "imagewoof + model.removed_layer=conv3"


def test_report_pairs_by_seed_and_shows_the_baseline_seed_spread(tmp_path):
    exp = tmp_path / "runs" / "ablate_imagewoof"
    _fake_run(exp / "imagewoof" / "seed0", "imagewoof", 3, _result(0.40, 0.10))
    _fake_run(exp / "imagewoof" / "seed1", "imagewoof", 3, _result(0.43, 0.12))
    _fake_run(exp / "remove_conv3" / "seed0", "remove_conv3", 3, _result(0.41, 0.10))
    manifest = {"kind": "ablate", "data": "imagewoof_root", "variants": ["remove_conv3"],
                "seeds": [0], "baseline_seeds": [0, 1], "overrides": [], "split": "val",
                "ten_crop": True, "note": "Imagewoof: 10 ILSVRC-2012 dog classes.",
                "base": "imagewoof"}
    text = ablate.write_report(exp, manifest).read_text()
    base = _row(text, "imagewoof")
    assert base[1:4] == ["2", "41.50", "11.00"] and base[7] == "finished"
    # the variant is paired with seed 0 only: +1.00, not +1 - 1.5 (the baseline's mean)
    assert _row(text, "remove_conv3")[1:6] == ["1", "41.00", "10.00", "+1.00", "+0.00"]
    assert "lie 3.00 points apart in top-1 and 2.00 in top-5" in text
    assert "seed 0: 40.00 / 10.00, seed 1: 43.00 / 12.00" in text
    assert "Baseline: recipe `imagewoof`; each variant is that recipe" in text
    assert "Imagewoof: 10 ILSVRC-2012 dog classes." in text
    assert "### imagewoof, seed 1" in text
    assert ablate.seed_spread({0: {"top1": 0.4, "top5": 0.1}}) is None


def test_ablate_on_imagewoof_recipe_with_a_second_baseline_seed(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    tiny = [t for t in TINY if not t.startswith("train.steps_per_epoch")] + \
        ["train.steps_per_epoch=1", "data.holdout=1"]
    note = "Generated stand-in data: says nothing about Imagewoof."
    assert cli.main(["ablate", "--config", "imagewoof", "--data", str(tiny_root), "--runs",
                     str(runs), "--quiet", "--variants", "remove_conv3,remove_conv4", "--seeds",
                     "0", "--baseline-seeds", "1", "--note", note, *tiny]) == 0
    exp = runs / "ablate_imagewoof"
    done = sorted(str(p.parent.relative_to(exp)) for p in exp.glob("*/seed*/result.json"))
    assert done == ["imagewoof/seed0", "imagewoof/seed1", "remove_conv3/seed0",
                    "remove_conv4/seed0"]
    for folder, removed, seed in (("imagewoof/seed1", "none", 1),
                                  ("remove_conv4/seed0", "conv4", 0)):
        cfg = config.load(exp / folder / "config.yaml")
        assert (cfg.model.removed_layer, cfg.train.seed, cfg.schedule.signal_split,
                cfg.train.keep_last) == (removed, seed, "train_holdout", 1)
    text = (exp / "report" / "report.md").read_text()
    assert _row(text, "imagewoof")[1] == "2" and _row(text, "remove_conv4")[1] == "1"
    assert note in text and "Seed to seed:" in text
    # the per-epoch curve is the holdout the schedule watched, and says so
    assert "| epoch | train top-1 % (running) | train_holdout top-1 % (centre) |" in text
    before = text                     # `alexnet report` regenerates it from experiment.json
    (exp / "report" / "report.md").unlink()
    from experiments import report_cli
    assert report_cli.main([str(exp)]) == 0
    assert (exp / "report" / "report.md").read_text() == before


def test_ablate_refuses_a_bad_base_or_seeds_before_any_run(tmp_path, capsys):
    runs = tmp_path / "runs"
    for extra, said in ((["--config", "imagewolf"], "no recipe of that name"),
                        (["--baseline-seeds", "one"], "--baseline-seeds 'one': expected")):
        assert cli.main(["ablate", "--data", str(tmp_path), "--runs", str(runs),
                         "--variants", "remove_conv3", *extra]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1
    assert not runs.exists()


def test_a_report_keeps_its_record_and_an_experiment_finishes_from_a_copied_record(tiny_root,
                                                                                    tmp_path):
    """`alexnet report --out` keeps what the report was made from, without checkpoints or local
    paths; the report is regenerated from that copy; an experiment given the copied record of a
    run counts the run as done (nothing is trained again) unless its config differs."""
    from experiments import report_cli
    command = ["ablate", "--data", str(tiny_root), "--quiet", "--variants", "remove_conv3", *TINY]
    assert cli.main([*command, "--runs", str(tmp_path / "runs")]) == 0
    exp, out = tmp_path / "runs" / "ablate", tmp_path / "committed"
    assert report_cli.main([str(exp), "--out", str(out)]) == 0
    record = out / "record" / "ablate"
    kept = sorted(str(p.relative_to(record)) for p in record.rglob("*") if p.is_file())
    assert kept == ["experiment.json", *[f"{v}/seed0/{f}" for v in ("paper", "remove_conv3")
                                         for f in ("config.yaml", "metrics.jsonl",
                                                   "result.json")]]
    for path in (out / "record").rglob("*.json*"):
        assert str(tmp_path) not in path.read_text(), path
    result = json.loads((record / "paper/seed0/result.json").read_text())
    assert result["checkpoints"][0].startswith("checkpoints/")
    report_md = (out / "report.md").read_text()
    (out / "report.md").unlink()
    assert report_cli.main([str(record), "--out", str(out)]) == 0
    assert (out / "report.md").read_text() == report_md

    elsewhere = tmp_path / "elsewhere"        # another machine: the baseline's record copied in
    rundir_copy = elsewhere / "ablate" / "paper" / "seed0"
    rundir_copy.parent.mkdir(parents=True)
    import shutil
    shutil.copytree(record / "paper" / "seed0", rundir_copy)
    assert cli.main([*command, "--runs", str(elsewhere)]) == 0
    assert not (rundir_copy / "checkpoints").exists()            # not trained again
    assert list((elsewhere / "ablate" / "remove_conv3" / "seed0" / "checkpoints").iterdir())
    assert _row((elsewhere / "ablate" / "report" / "report.md").read_text(), "paper") == \
        _row(report_md, "paper")

    # a record of another config is not taken for this run: that run fails, and says why
    assert cli.main([*command, "optim.lr=0.02", "--runs", str(elsewhere)]) == 1
    failed = (rundir_copy / runner.FAILED).read_text()
    assert "holds the record of a run with another config (optim.lr: recorded 0.01" in failed


def test_records_of_runs_with_the_same_name_are_kept_apart(tmp_path):
    from experiments import report_cli
    runs = [tmp_path / "ablate" / v / "seed0" for v in ("paper", "no_lrn")]
    assert report_cli.record_names(runs) == ["paper/seed0", "no_lrn/seed0"]
    assert report_cli.record_names([tmp_path / "a" / "seed0", tmp_path / "seed1"]) == \
        ["seed0", "seed1"]


def test_a_record_of_a_shorter_run_or_another_config_is_not_the_run_asked_for(tmp_path):
    run = tmp_path / "paper" / "seed0"
    _fake_run(run, "paper", 3, _result(0.4, 0.1))
    asked = recipes.load_recipe("paper", SCALE)
    assert runner.recorded_result(asked, run, "val")["ten_crop"]["top1"] == 0.4
    assert runner.recorded_result(asked, run, "test") is None       # evaluated on another split
    for change in ("train.epochs=4", "optim.lr=0.02"):
        with pytest.raises(config.ConfigError, match=change.split("=")[0] + ": recorded"):
            runner.recorded_result(recipes.load_recipe("paper", [*SCALE, change]), run, "val")
    for change in ("train.log_every=7", "data.workers=1"):     # how it ran, not what it trained
        assert runner.recorded_result(recipes.load_recipe("paper", [*SCALE, change]), run, "val")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "ckpt-000000150.pt").write_bytes(b"")
    assert runner.recorded_result(asked, run, "val") is None   # a run directory, not a record
