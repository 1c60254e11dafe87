"""The command line (docs/ARCHITECTURE.md decision 8): every option of every verb explains itself
and shows its default, `alexnet config` lists every key, a recipe is found by name from any
directory, and bad command lines are one line and exit 2 without touching anything."""
import argparse
import importlib
from pathlib import Path

import pytest

from paper_alexnet import config
from paper_alexnet.app import cli


class _Parsed(Exception):
    def __init__(self, parser):
        super().__init__(parser.prog)
        self.parser = parser


def _parsers(monkeypatch):
    """(prog, parser) of every verb, every `prep` verb and every `experiment` subcommand: each
    main is called until it parses its arguments, and the parser it built is taken there."""
    def capture(self, args=None, namespace=None):
        raise _Parsed(self)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    for var in ("ALEXNET_DATA", "ALEXNET_RUNS"):    # defaults read from the environment
        monkeypatch.delenv(var, raising=False)
    from data_prep import __main__ as prep
    mains = [(importlib.import_module(module).main, []) for verb, (module, _) in cli.VERBS.items()
             if verb != "prep"]
    mains += [(prep.main, [verb]) for verb in prep.VERBS]
    found = []
    for main, argv in mains:
        with pytest.raises(_Parsed) as caught:
            main(argv)
        todo = [caught.value.parser]
        while todo:
            parser = todo.pop()
            found.append((parser.prog, parser))
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    todo += list(action.choices.values())
    monkeypatch.undo()
    return found


def test_every_verb_and_subcommand_is_walked(monkeypatch):
    progs = {prog for prog, _ in _parsers(monkeypatch)}
    assert {"alexnet train", "alexnet eval", "alexnet config", "alexnet prep imagenet",
            "alexnet prep synthetic", "alexnet experiment ablate",
            "alexnet experiment generate", "alexnet report", "alexnet bench"} <= progs
    assert len(progs) >= len(cli.VERBS) - 1 + 7 + 6


def test_every_option_has_help_and_shows_its_default(monkeypatch):
    """Every argument has a help text; an option with a default names it ("default: X"); one
    without (None) says what happens when it is left out ("default: …"). Flags (store_true) are
    off unless given."""
    problems = []
    for prog, parser in _parsers(monkeypatch):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = "/".join(action.option_strings) or action.metavar or action.dest
            text = parser._get_formatter()._expand_help(action) if action.help else ""
            if not text.strip():
                problems.append(f"{prog} {name}: no help text")
                continue
            flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
            one_of = any(g.required and action in g._group_actions     # "--a X or --b Y"
                         for g in parser._mutually_exclusive_groups)
            if not action.option_strings or action.required or flag or one_of:
                continue
            if "default" not in text or (action.default not in (None, "", [])
                                         and str(action.default) not in text):
                problems.append(f"{prog} {name}: the help does not show the default "
                                f"{action.default!r}: {text!r}")
    assert not problems, "\n".join(problems)


def test_every_parser_and_subcommand_has_a_description(monkeypatch):
    parsers = _parsers(monkeypatch)
    assert [prog for prog, p in parsers if not (p.description or "").strip()] == []
    assert all(p.format_help() for _, p in parsers)     # `--help` renders (a stray % would not)
    # ... and shows no doubled %% (escaping meant for help=, not for description=)
    assert [prog for prog, p in parsers if "%%" in p.format_help()] == []
    for prog, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(a.help for a in action._choices_actions), prog


# ----------------------------------------------------------------------------- alexnet config

def test_config_lists_every_key_with_its_default_choices_and_section(capsys):
    from paper_alexnet.app.show_config import main
    assert main([]) == 0
    out = capsys.readouterr().out
    keys = config.flatten(config.to_dict(config.RunConfig()))
    for key in keys:
        assert f"  {key} = " in out, key
    assert "  optim.lr = 0.01\n      a number > 0.0\n      §5: initial learning rate" in out
    assert "  model.lrn = cuda-convnet\n      one of: cuda-convnet, as-printed, caffe, off\n      §3.3" in out
    assert "  model.devices = [auto]\n" in out and "  data.flip = true\n" in out
    assert "\n*" not in out                             # nothing differs from the paper


def test_config_shows_a_recipe_and_overrides_and_marks_what_differs(capsys, tmp_path,
                                                                     monkeypatch):
    from paper_alexnet.app.show_config import main
    monkeypatch.chdir(tmp_path)                        # the recipe is found from anywhere
    assert main(["--recipe", "no_lrn", "optim.lr=0.02", "model", "optim.lr"]) == 0
    out = capsys.readouterr().out
    assert "* model.lrn = off   (paper: cuda-convnet)" in out
    assert "* optim.lr = 0.02   (paper: 0.01)" in out
    assert "  model.arch = alexnet" in out
    assert "optim.momentum" not in out and "train.epochs" not in out     # only what was asked


@pytest.mark.parametrize("argv, message", [
    (["--recipe", "no_lrm"], "no recipe of that name; pass a YAML file or a recipe: "),
    (["optim.lr=-1"], "optim.lr: -1.0 must be above 0.0"),
    (["optim.lrr=1"], "unknown key(s) optim.lrr"),
    (["optimiser"], "unknown section or key 'optimiser'; sections: model, data, optim"),
])
def test_config_bad_command_line_is_one_line_and_exit_2(capsys, argv, message):
    from paper_alexnet.app.show_config import main
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err


# -------------------------------------------------------------------- recipes found by name

def test_config_files_and_recipe_names_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.find_config("paper") == config.RECIPE_DIR / "paper.yaml"
    assert config.find_config("no_lrn.yaml") == config.RECIPE_DIR / "no_lrn.yaml"
    assert config.load("no_lrn").model.lrn == "off"
    mine = tmp_path / "no_lrn.yaml"                   # a file given as a path wins over a name
    mine.write_text("model: {lrn: caffe}\n")
    assert config.load("no_lrn.yaml").model.lrn == "caffe"
    assert config.load(str(mine)).model.lrn == "caffe"
    with pytest.raises(config.ConfigError, match="cannot read config file .*sub.paper.yaml"):
        config.load(tmp_path / "sub" / "paper.yaml")  # a path is never taken for a name
    with pytest.raises(config.ConfigError, match="recipe: course_notes_fashion_mnist, "):
        config.load("papr")
    assert "demo" not in config.recipe_names() and "paper" in config.recipe_names()


def test_a_bad_value_is_blamed_on_where_it_came_from(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("model: {lrn: caffe}\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(recipe, ["optim.momentum=-1"])
    assert "optim.momentum: -1.0 is below" in str(err.value)
    assert str(err.value).endswith("(from the command line: optim.momentum=-1)")
    assert "mine.yaml" not in str(err.value)
    recipe.write_text("model: {lrn: sometimes}\n")
    with pytest.raises(config.ConfigError, match=r"'sometimes' .*\(from .*mine.yaml\)$"):
        config.load(recipe, ["optim.momentum=0.5"])


def test_train_takes_a_recipe_name_and_refuses_an_unknown_one(data_root, tmp_path, monkeypatch,
                                                              capsys):
    from paper_alexnet.train import main
    monkeypatch.chdir(tmp_path)
    small = ["model.input_size=64", "model.num_classes=4", "optim.batch_size=8",
             "data.workers=0", "eval.batch_size=16", "train.epochs=1", "train.steps_per_epoch=1"]
    run = tmp_path / "run"
    assert main(["--config", "no_lrm", "--data", data_root, "--run-dir", str(run), *small]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'no_lrm'" in err and "no_lrn" in err, err
    assert not run.exists()
    assert main(["--config", "relu_vs_tanh", "--data", data_root, "--run-dir", str(run),
                 *small]) == 0
    assert config.load(run / "config.yaml") == config.load("relu_vs_tanh", small)



# ------------------------------------------------ output paths, reports, prep's printed summary

def _tree(root):
    """{relative path: bytes} of every file under root: to show that nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _run_dir(path, evaluated=False):
    """A run directory as train.py leaves it (config, two log records), optionally evaluated."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(config.dump(config.load("no_lrn")))
    (path / "metrics.jsonl").write_text(
        '{"kind": "train", "step": 10, "epoch": 1, "error": 0.5, "loss": 1.0, "lr": 0.01, '
        '"train_time_s": 2.0, "time": 100.0}\n'
        '{"kind": "val", "step": 10, "epoch": 1, "top1": 0.4, "top5": 0.1, "time": 101.0}\n')
    if evaluated:
        (path / "result.json").write_text(
            '{"split": "val", "images": 40, "center": {"top1": 0.25, "top5": 0.05}, '
            '"ten_crop": {"top1": 0.2, "top5": 0.0}, "epochs": [1], "checkpoints": ["c"]}\n')
    return path


def test_report_of_runs_says_how_to_evaluate_one_without_result(tmp_path, capsys):
    from experiments.report_cli import main
    done, fresh = _run_dir(tmp_path / "done", True), _run_dir(tmp_path / "fresh")
    assert main([str(done), str(fresh)]) == 0
    text = (done / "report" / "report.md").read_text()      # default: the first run's report/
    assert "| done | no_lrn | val | 40 | 25.00 | 5.00 | 20.00 | 0.00 |" in text
    assert "Not evaluated yet (no result.json): fresh. `alexnet eval --run-dir RUN" in text
    err = capsys.readouterr().err
    assert f"note: {fresh} has no result.json" in err
    assert f"alexnet eval --run-dir {fresh} --data ROOT" in err


@pytest.mark.parametrize("case", ["dataset", "split", "out_in_dataset", "out_under_file",
                                  "not_a_run", "missing"])
def test_report_bad_command_line_is_exit_2_and_writes_nothing(tmp_path, capsys, case):
    from conftest import make_prepared
    from experiments.report_cli import main
    root = tmp_path / "prepared"
    make_prepared(root, classes=2, train_per_class=1, val_per_class=1, side=8)
    run = _run_dir(tmp_path / "run", True)
    (tmp_path / "a_file").write_text("x")
    argv, message = {
        "dataset": ([root], "is a prepared dataset, not a run directory"),
        "split": ([root / "train"], "is a prepared dataset, not a run directory"),
        "out_in_dataset": ([run, "--out", root / "report"], "lies in the prepared dataset"),
        "out_under_file": ([run, "--out", tmp_path / "a_file" / "r"], "is a file, so nothing"),
        "not_a_run": ([tmp_path / "run" / ".."], "holds neither experiment.json nor config.yaml"),
        "missing": ([tmp_path / "nowhere"], "is not a directory"),
    }[case]
    before = _tree(tmp_path)
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "alexnet report: " in err, err
    assert _tree(tmp_path) == before and not (root / "report").exists()
    assert not (run / "report").exists()


def test_unwritable_outputs_are_exit_2_before_any_work(tmp_path, capsys):
    """prep synthetic, prep imagenet, experiment generate / ablate, bench --json: an output under
    a file is refused in one line naming it, and nothing is created."""
    from data_prep.__main__ import main as prep
    from experiments.cli import main as experiment
    from experiments.bench import main as bench
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    target = blocker / "out"
    calls = [(prep, ["synthetic", str(target)], "alexnet prep synthetic: OUT"),
             (prep, ["imagenet", "--input", str(tmp_path), "--out", str(target)],
              "alexnet prep imagenet: --out"),
             (experiment, ["generate", "cifar10", str(target)], "alexnet experiment generate: OUT"),
             (experiment, ["ablate", "--data", str(tmp_path), "--runs", str(target)],
              "alexnet experiment ablate: --runs"),
             (bench, ["--json", str(blocker / "b.json")], "alexnet bench: --json")]
    for main, argv, start in calls:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(start), err
        assert f"{blocker} is a file, so nothing can be written under it: choose another" in err
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"] and blocker.read_text() == "keep me"


@pytest.mark.parametrize("argv, message", [
    (["ablate", "--variants", "no_lrn,no_lrm"], "--variants: no recipe 'no_lrm'; recipes: "),
    (["ablate", "--seeds", "0,one"], "--seeds '0,one': expected comma-separated integers"),
    (["ablate", "optim.lr=-1"], "optim.lr: -1.0 must be above 0.0; the default is 0.01 (from "
                                "the command line: optim.lr=-1)"),
    (["relu-vs-tanh", "--lrs", "0.1,0"], "--lrs '0.1,0': expected comma-separated positive"),
])
def test_experiment_bad_names_and_values_are_exit_2(tmp_path, capsys, argv, message):
    from experiments.cli import main
    runs = tmp_path / "runs"
    assert main([argv[0], "--data", str(tmp_path), "--runs", str(runs), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not runs.exists()


def test_unknown_reproduce_recipe_and_bench_batch_0_are_exit_2(tmp_path, capsys):
    from experiments.bench import main as bench
    from experiments.cli import main as experiment
    with pytest.raises(SystemExit) as stop:
        experiment(["reproduce", "--recipe", "no_lrn", "--data", "d", "--runs", str(tmp_path)])
    assert stop.value.code == 2
    assert "invalid choice: 'no_lrn' (choose from 'paper', 'ilsvrc2010')" in capsys.readouterr().err
    for batch in ("0", "-3"):
        assert bench(["--batch", batch, "--quick"]) == 2
        assert capsys.readouterr().err == f"alexnet bench: --batch {batch}: must be at least 1\n"


def test_prep_prints_a_readable_summary_and_stats_table(tmp_path, capsys):
    from conftest import prepared_synthetic
    from data_prep import stats
    from data_prep.__main__ import main as prep
    root = prepared_synthetic(tmp_path, classes=2)
    out = capsys.readouterr().out
    assert "train: 4 images of 2 classes in 1 shard(s)" in out and "{" not in out, out
    assert "0 converted to RGB, 0 rejected, 0 skipped; mean image and RGB PCA in stats.npz" in out
    assert prep(["stats", str(root)]) == 0
    table = capsys.readouterr().out
    ours, ref = stats.load(root), stats.load_reference()
    cmp = stats.compare(ours, ref)
    assert "ours (4 images)   Alex Krizhevsky (ILSVRC-2012 train)" in table
    assert (f"mean R (0-255){cmp['channel_mean'][0]:>34.3f}"
            f"{cmp['reference_channel_mean'][0]:>12.3f}") in table
    assert (f"PCA sqrt(eigval) 1{cmp['pca_stdevs'][2]:>30.3f}"
            f"{cmp['reference_pca_stdevs'][2]:>12.3f}") in table     # largest first
    assert "{" not in table


def test_config_header_names_the_file_used_when_a_file_shadows_a_recipe(capsys, tmp_path,
                                                                          monkeypatch):
    """A file named like a recipe wins (the documented rule): the header says which file."""
    from paper_alexnet.app.show_config import main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper").write_text("optim: {lr: 0.02}\n")
    assert main(["--recipe", "paper", "optim.lr"]) == 0
    out = capsys.readouterr().out
    assert "* optim.lr = 0.02   (paper: 0.01)" in out
    assert out.startswith("Config from the file paper (a file wins over the recipe paper)"), out
    assert main(["--recipe", "no_lrn", "model.lrn"]) == 0
    assert capsys.readouterr().out.startswith("Config from recipe no_lrn (no_lrn.yaml)")


def test_the_demos_settings_are_not_a_recipe_and_not_a_run_config(tmp_path, capsys):
    """demo.yaml lives beside the demo, out of the recipes: by name it is no recipe, and as a file
    its demo: section is an unknown key (one line, exit 2, nothing written)."""
    from paper_alexnet.train import main as train
    from paper_alexnet.app.show_config import main as show
    demo_yaml = str(Path(__file__).resolve().parent.parent / "experiments" / "demo.yaml")
    for given, said in (("demo", "no recipe of that name"), (demo_yaml, "unknown key(s) demo")):
        for run, argv in ((train, ["--config", given, "--data", str(tmp_path), "--run-dir",
                                   str(tmp_path / "run")]), (show, ["--recipe", given])):
            assert run(argv) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and said in err[0], err
    assert not (tmp_path / "run").exists()
