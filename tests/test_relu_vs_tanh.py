"""Figure 1 (experiments/relu_vs_tanh.py, relu_factors.py): crossings read two ways, seed
aggregation, the race's halving and the factor table on hand-computed numbers; the stop at 25%
inside the training loop; seeds, given rates, the race and the factor report end to end on tiny
generated data."""
import json
from pathlib import Path

import pytest

from experiments import cli, generated, recipes, relu_factors, relu_vs_tanh
from experiments.runner import train_run
from paper_alexnet.run import checkpoint, metrics

TINY = ["train.steps_per_epoch=2", "optim.batch_size=8", "eval.batch_size=16", "data.workers=0",
        "train.log_every=1"]


# ------------------------------------------------------------------------------ pure functions

def test_crossing_first_epoch_and_interpolated():
    # 30, 25.09, 24.07 % after epochs 8, 9, 10: first at or below 25% is 10, the line between
    # epochs 9 and 10 meets 25% at 9 + 0.09 / 1.02
    errors = [0.6, 0.5, 0.45, 0.4, 0.36, 0.33, 0.31, 0.30, 0.2509, 0.2407]
    first, interpolated = relu_vs_tanh.crossing(errors, 0.25)
    assert first == 10
    assert interpolated == pytest.approx(9.0882352941, abs=1e-9)
    assert relu_vs_tanh.crossing([0.3, 0.25, 0.2]) == (2, 1.0 + 1.0)          # exactly on it
    assert relu_vs_tanh.crossing([0.2, 0.1]) == (1, 1.0)                      # in the first epoch
    assert relu_vs_tanh.crossing([0.5, 0.3]) == (None, None)
    first, interpolated = relu_vs_tanh.crossing([0.3, 0.24, 0.26, 0.2])     # the first crossing
    assert first == 2 and interpolated == pytest.approx(1 + 0.05 / 0.06)


def test_aggregate_seeds_hand_computed():
    relu = {0: [0.40, 0.30, 0.20],            # first 3, interpolated 2 + 0.05/0.10 = 2.5
            1: [0.40, 0.20],                  # first 2, interpolated 1 + 0.15/0.20 = 1.75
            2: [0.50, 0.30, 0.28],            # not reached
            3: None}                          # diverged
    tanh = {0: [0.5, 0.4, 0.3, 0.28, 0.26, 0.24],   # first 6, interpolated 5 + 0.01/0.02 = 5.5
            1: [0.5, 0.4, 0.3, 0.2],                # first 4, interpolated 3 + 0.05/0.10 = 3.5
            2: [0.5, 0.4, 0.3, 0.25]}               # first 4, interpolated 3 + 0.05/0.05 = 4.0
    agg = relu_vs_tanh.aggregate_seeds(relu, tanh)
    r, t = agg["relu"], agg["tanh"]
    assert (r["runs"], r["reached"], t["runs"], t["reached"]) == (4, 2, 3, 3)
    assert r["first"]["per_seed"] == {0: 3, 1: 2, 2: None, 3: None}
    assert (r["first"]["mean"], r["first"]["min"], r["first"]["max"]) == (2.5, 2, 3)
    assert r["interpolated"]["mean"] == pytest.approx(2.125)
    assert (r["interpolated"]["min"], r["interpolated"]["max"]) == pytest.approx((1.75, 2.5))
    assert t["first"]["mean"] == pytest.approx(14 / 3)
    assert t["interpolated"]["mean"] == pytest.approx(13 / 3)
    assert (t["interpolated"]["min"], t["interpolated"]["max"]) == pytest.approx((3.5, 5.5))
    s = agg["speedup"]
    assert s["paired"] == [0, 1]                       # seeds 2 and 3: ReLU never got there
    assert s["first"] == pytest.approx({"ratio": 10 / 5, "min": 2.0, "max": 2.0})
    assert s["interpolated"]["ratio"] == pytest.approx(9 / 4.25)       # (5.5 + 3.5) / (2.5 + 1.75)
    assert (s["interpolated"]["min"], s["interpolated"]["max"]) == pytest.approx((2.0, 2.2))
    none = relu_vs_tanh.aggregate_seeds({0: [0.5]}, {0: [0.2]})
    assert none["speedup"]["first"]["ratio"] is None and none["relu"]["first"]["mean"] is None


def test_race_keeps_the_better_half_and_never_a_diverged_rate():
    trials = {0.001: [0.8, 0.7], 0.003: [0.6, 0.5], 0.01: [0.7, 0.6], 0.03: None,
              0.1: [0.9, 0.85]}
    assert relu_vs_tanh.race_survivors(trials) == [0.003, 0.01]      # 4 alive -> 2
    assert relu_vs_tanh.race_survivors({0.001: [0.8], 0.003: [0.6], 0.01: [0.7]}) == \
        [0.003, 0.01]                                                  # 3 -> 2 (rounded up)
    # reaching the target beats a lower mean error
    assert relu_vs_tanh.race_survivors({0.003: [0.6, 0.2], 0.01: [0.27, 0.26]}) == [0.003]
    assert relu_vs_tanh.race_survivors({0.03: None}) == []


def test_factor_rows_borrow_the_baseline_for_an_activation_not_run():
    base = {"relu": {0: [0.4, 0.2], 1: [0.4, 0.3, 0.2]},       # interpolated 1.75, 2.5
            "tanh": {0: [0.5, 0.4, 0.3, 0.2], 1: [0.5, 0.4, 0.3, 0.2]}}   # 3.5, 3.5
    bias = {"relu": {0: [0.2], 1: [0.3, 0.2]}, "tanh": {}}     # 1.0, 1.5
    scaled = {"relu": {}, "tanh": {0: [0.3, 0.2], 1: [0.3, 0.2]}}       # 1.5, 1.5
    rows = relu_factors.factor_rows([("base", base), ("bias", bias), ("scaled", scaled)])
    assert [r["borrowed"] for r in rows] == [[], ["tanh"], ["relu"]]
    speed = [r["stats"]["speedup"]["interpolated"]["ratio"] for r in rows]
    assert speed == pytest.approx([7 / 4.25, 7 / 2.5, 3 / 4.25])
    assert rows[1]["stats"]["tanh"]["interpolated"]["mean"] == pytest.approx(3.5)
    assert relu_factors.closest_to(rows, 6.0)["label"] == "bias"
    assert relu_factors.closest_to(rows, 0.5)["label"] == "scaled"


# ------------------------------------------------------------------- the stop inside the loop

def _curve(run_dir: Path) -> list[float]:
    return relu_vs_tanh.curve(run_dir)


def test_stop_at_target_stops_at_that_epoch_checkpoints_and_a_rerun_trains_no_further(
        data_root, tmp_path):
    def cfg(epochs):
        return recipes.load_recipe("relu_vs_tanh", [
            "model.input_size=72", "model.num_classes=4", "optim.lr=0.0003", "train.log_every=1",
            "optim.batch_size=8", "eval.batch_size=16", "data.workers=0",
            "train.steps_per_epoch=3", f"train.epochs={epochs}"])

    assert train_run(cfg(4), data_root, tmp_path / "whole", quiet=True)
    whole = _curve(tmp_path / "whole")
    # a target first reached after epoch k > 1: just below the best error of the epochs before
    k = next(i for i in range(1, 4) if whole[i] < min(whole[:i]))
    target = whole[k]
    assert relu_vs_tanh.crossing(whole, target)[0] == k + 1
    run = tmp_path / "stopped"
    assert train_run(cfg(4), data_root, run, quiet=True,
                     callbacks=[relu_vs_tanh.StopAtTarget(target)])
    assert _curve(run) == whole[:k + 1]
    _, state = checkpoint.load_latest(run)
    assert (state["epoch"], state["step"]) == (k + 1, 0)
    stops = [r for r in metrics.read_metrics(run, "event") if r.get("event") == "stopped"]
    assert len(stops) == 1 and f"after epoch {k + 1}" in stops[0]["reason"]
    newest = checkpoint.list_checkpoints(run)[-1][0]
    assert train_run(cfg(4), data_root, run, quiet=True,
                     callbacks=[relu_vs_tanh.StopAtTarget(target)])
    assert checkpoint.list_checkpoints(run)[-1][0] == newest
    assert _curve(run) == whole[:k + 1]


# ---------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    from data_prep.__main__ import main as prep
    base = tmp_path_factory.mktemp("cifar")
    generated.write_cifar10(base / "raw", train=40, test=16)
    assert prep(["cifar10", "--input", str(base / "raw"), "--out", str(base / "root")]) == 0
    return base / "root"


def _cells(text: str, start: str) -> list[str]:
    for line in text.splitlines():
        if line.startswith(f"| {start}"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no table row starting with {start!r}")


def test_seeds_given_rates_race_and_factor_table_end_to_end(cifar_root, tmp_path, capsys):
    base = tmp_path / "base"
    assert cli.main(["relu-vs-tanh", "--data", str(cifar_root), "--runs", str(base), "--quiet",
                     "--lr", "relu=0.01", "--search", "race", "--lrs", "0.01,0.03,0.003",
                     "--search-epochs", "1", "--epochs", "2", "--seeds", "0,1", *TINY]) == 0
    exp = base / "relu_vs_tanh"
    manifest = json.loads((exp / "experiment.json").read_text())
    assert manifest["fixed_lrs"] == {"relu": 0.01} and "relu" not in manifest["searched"]
    rounds = manifest["race"]["tanh"]
    assert [r["epochs"] for r in rounds] == [1, 2] and len(rounds[0]["rates"]) == 3
    assert len(rounds[1]["rates"]) == 2               # 3 -> 2 -> 1 left: the race ends
    chosen = manifest["chosen"]["tanh"]
    assert chosen in rounds[1]["rates"]
    assert not (exp / "search" / "relu").exists()     # a given rate is not searched
    text = (exp / "report" / "report.md").read_text()
    for act, lr in (("relu", 0.01), ("tanh", chosen)):
        for seed in (0, 1):
            run = relu_vs_tanh.full_run_dir(exp, act, lr, seed)
            assert run.name == f"lr{lr:g}" + ("_seed1" if seed else "")
            assert recipes.load_recipe(run / "config.yaml").train.seed == seed
            errors = relu_vs_tanh.curve(run)
            assert len(errors) == 2                   # not at 25%: ran to --epochs
            row = _cells(text, f"{act} | {lr:g} | {seed} | 2 |")
            assert row[4:7] == ["not reached", "—", f"{100 * errors[-1]:.2f}"]
        assert _cells(text, f"{act} | 2 | 0 |")       # the aggregate table: 2 runs, 0 reached
    a, b = (relu_vs_tanh.curve(relu_vs_tanh.full_run_dir(exp, "relu", 0.01, s)) for s in (0, 1))
    assert a != b                                     # the seeds are different runs
    assert "Learning-rate race" in text and "No training-time ratio" in text
    assert "not measurable" in text and str(tmp_path) not in text

    # a ReLU-only factor, then the table: its tanh column is the baseline's
    bias = tmp_path / "bias"
    assert cli.main(["relu-vs-tanh", "--data", str(cifar_root), "--runs", str(bias), "--quiet",
                     "--lr", "relu=0.01", "--activations", "relu", "--epochs", "2", "--seeds",
                     "0,1", *TINY, "model.init_bias=0.1"]) == 0
    cfg = recipes.load_recipe(relu_vs_tanh.full_run_dir(bias / "relu_vs_tanh", "relu", 0.01, 1)
                              / "config.yaml")
    assert (cfg.model.init_bias, cfg.model.activation) == (0.1, "relu")
    assert not (bias / "relu_vs_tanh" / "full" / "tanh").exists()
    out = tmp_path / "factors"
    assert cli.main(["relu-factors", "--out", str(out), f"baseline={exp}",
                     f"init bias 0.1={bias / 'relu_vs_tanh'}"]) == 0
    table = (out / "report.md").read_text()
    row = _cells(table, "init bias 0.1")
    assert "model.init_bias=0.1" in row[1] and "rates given: relu 0.01" in row[1]
    assert row[2] == "not reached" and row[4] == "not reached (baseline)"
    assert "weight decay" in table and str(tmp_path) not in table

    # a row joining a ReLU-only and a tanh-only experiment borrows nothing; two ReLUs: exit 2
    scaled = tmp_path / "scaled"
    assert cli.main(["relu-vs-tanh", "--data", str(cifar_root), "--runs", str(scaled), "--quiet",
                     "--lr", "tanh=0.01", "--activations", "tanh", "--epochs", "2", "--seeds",
                     "0,1", *TINY, "model.tanh_scale=[1.7159, 0.6667]"]) == 0
    assert cli.main(["relu-factors", "--out", str(out), f"baseline={exp}",
                     f"joined={bias / 'relu_vs_tanh'}+{scaled / 'relu_vs_tanh'}"]) == 0
    row = _cells((out / "report.md").read_text(), "joined")
    assert row[1] == ("model.init_bias=0.1; rates given: relu 0.01 + "
                      "model.tanh_scale=[1.7159, 0.6667]; rates given: tanh 0.01")
    assert "(baseline)" not in " ".join(row)
    assert cli.main(["relu-factors", "--out", str(out), f"baseline={exp}",
                     f"twice={bias / 'relu_vs_tanh'}+{exp}"]) == 2
    assert "relu also ran in another experiment of the same row" in capsys.readouterr().err


def test_relu_factors_bad_folders_exit_2_naming_the_file(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["relu-factors", "--out", str(out), f"base={tmp_path / 'none'}"]) == 2
    assert "none holds no experiment.json" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "experiment.json").write_text('{"kind": "relu_vs')
    assert cli.main(["relu-factors", "--out", str(out), f"base={damaged}"]) == 2
    err = capsys.readouterr().err
    assert f"{damaged / 'experiment.json'} is not valid JSON" in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--lr", "relu=0"], "--lr 'relu=0': expected ACTIVATION=RATE"),
    (["--lr", "sigmoid=0.1"], "expected ACTIVATION=RATE"),
    (["--seeds", "0,x"], "--seeds '0,x': expected comma-separated integers"),
    (["--activations", "relu,relu"], "--activations 'relu,relu'"),
    (["train.seed=3"], "give the seeds with --seeds only"),
])
def test_relu_vs_tanh_bad_options_exit_2_before_anything(tmp_path, capsys, argv, message):
    assert cli.main(["relu-vs-tanh", "--data", str(tmp_path / "none"), "--runs",
                     str(tmp_path / "runs"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_make_examples_relu_factors_end_to_end_and_resumable(tmp_path):
    """The script target of the seeded and factor runs, on 100 generated JPEGs in class folders
    (CIFAR-10's layout), runs capped at 2 epochs of 2 steps; run twice: the second run trains
    nothing (every run is finished or at its target) and writes the same tables."""
    import os
    import subprocess
    import sys

    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, per in (("train", 8), ("test", 2)):
        for c in range(10):
            folder = tmp_path / "jpeg" / split / f"class{c}"
            folder.mkdir(parents=True)
            for k in range(per):
                img = np.clip(rng.normal(25 * c, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{k}.jpg", quality=90)
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHON=sys.executable, REPORTS=str(tmp_path / "reports"),
               RELU_CAP="2", RELU_EXTRA="train.steps_per_epoch=2 optim.batch_size=8 "
               "eval.batch_size=10 train.log_every=1")
    command = ["sh", str(root / "experiments/reports/make_examples.sh"), "relu-factors",
               str(tmp_path / "work"), str(tmp_path / "jpeg")]

    def checkpoints():
        return sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "work").rglob("ckpt-*.pt"))

    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    first = checkpoints()
    table = (tmp_path / "reports" / "relu_factors_cifar10_cpu" / "report.md").read_text()
    seeds = (tmp_path / "reports" / "relu_vs_tanh_seeds_cifar10_cpu" / "report.md").read_text()
    for label in ("layers-80sec", "ReLU initial bias 0.1", "ReLU initial bias 1",
                  "ReLU rate ÷10", "ReLU rate raced", "tanh as 1.7159", "tanh rate ÷10",
                  "each its own rate drop"):
        assert f"| {label}" in table
    assert "| tanh | 0.01 | 2 | 2 |" in seeds                    # seed 2 of tanh ran 2 epochs
    for row in ("bias0.1", "bias1", "drop8", "race", "lecun_tanh", "drop30_tanh"):
        assert (tmp_path / "reports" / "relu_factors_cifar10_cpu" / row / "report.md").is_file()
    runs = tmp_path / "work" / "relu_runs"
    cfg = recipes.load_recipe(runs / "drop8/relu_vs_tanh/full/relu/lr0.0017_seed1/config.yaml")
    assert (cfg.schedule.kind, cfg.schedule.milestones) == ("milestones", (8,))
    cfg = recipes.load_recipe(runs / "lecun_tanh/relu_vs_tanh/full/tanh/lr0.01/config.yaml")
    assert cfg.model.tanh_scale == (1.7159, 0.6667)
    again = subprocess.run(command, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert checkpoints() == first
    assert (tmp_path / "reports" / "relu_factors_cifar10_cpu" / "report.md").read_text() == table


def test_search_heading_says_epoch_or_epochs(tmp_path):
    from experiments.relu_vs_tanh import _search_section
    for n, heading in ((1, "## Learning-rate search (1 epoch per trial)"),
                       (3, "## Learning-rate search (3 epochs per trial)")):
        lines = _search_section(tmp_path, {"search_epochs": n, "lrs": [0.01]}, "grid")
        assert lines[0] == heading
