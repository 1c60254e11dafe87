"""experiments/: recipes, the pure functions behind the reports (learning-rate search, ablation
table, colour specificity, nearest neighbours, epoch curves), and every experiment end to end at
tiny scale on generated data, its report read back against result.json."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from experiments import ablate, cli, figures, generated, paper_numbers, recipes, relu_vs_tanh
from experiments import report, report_cli, rundir
from conftest import prepared_synthetic
from paper_alexnet import config

TINY = ["train.epochs=1", "train.steps_per_epoch=2", "optim.batch_size=4", "eval.batch_size=8",
        "data.workers=0", "train.log_every=1"]


# ------------------------------------------------------------------------------------ recipes

@pytest.mark.parametrize("name", config.recipe_names())
def test_every_recipe_loads_and_documents_itself(name):
    cfg = recipes.load_recipe(name)
    assert isinstance(cfg, config.RunConfig)
    head = recipes.header(name)
    for part in ("Tests:", "Launch:", "Cost:", "§", "alexnet experiment", "ESTIMATE"):
        assert part in head, f"{name}.yaml header lacks {part!r}"


def test_ablation_recipes_change_exactly_one_thing():
    expected = {"no_lrn": {"model.lrn": "off"}, "no_pca": {"data.pca_std": 0.0},
                "no_dropout": {"model.dropout": 0.0},
                "pooling_z2": {"model.pooling": "non_overlapping"},
                "one_tower_half": {"model.layout": "one_tower_half"}}
    expected.update({f"remove_conv{i}": {"model.removed_layer": f"conv{i}"} for i in range(1, 6)})
    for name, diff in expected.items():
        assert recipes.config_diff(recipes.load_recipe(name)) == diff, name
        assert recipes.match_recipe(recipes.load_recipe(name, TINY)) == name
        assert recipes.describe(recipes.load_recipe(name, [*TINY, "model.init=caffe"])) == \
            f"{name} + model.init=caffe"
    assert recipes.config_diff(recipes.load_recipe("paper")) == {}
    assert set(paper_numbers.DEFAULT_ABLATIONS) <= set(config.recipe_names())


def test_imagewoof_recipe_changes_only_the_keys_its_header_explains():
    """Every key the recipe changes from the paper is explained in its header, and every key the
    header explains is one the recipe sets (model.init: written out, still the paper's)."""
    cfg = recipes.load_recipe("imagewoof")
    explained = set(re.findall(r"^([a-z_]+\.[a-z_]+) ", recipes.header("imagewoof"), re.M))
    explained |= {"train.milestone_every"}           # explained on train.keep_last's line
    assert recipes.config_diff(cfg) == {
        "model.num_classes": 10, "schedule.signal_split": "train_holdout", "data.holdout": 500,
        "data.workers": 0, "train.epochs": 25, "train.keep_last": 1, "optim.lr": 0.001,
        "train.milestone_every": 1000, "eval.batch_size": 50}
    assert explained == set(recipes.config_diff(cfg)) | {"model.init"}
    assert cfg.model.init == "paper" and cfg.data.holdout < 9025
    assert recipes.match_recipe(recipes.load_recipe("imagewoof", TINY)) == "imagewoof"


def test_figure1_and_course_notes_recipes_have_no_regularisation():
    c = recipes.load_recipe("relu_vs_tanh")
    assert (c.model.arch, c.model.input_size, c.model.dropout) == ("cifar10_4layer", 32, 0.0)
    assert (c.optim.weight_decay, c.data.pca_std, c.data.flip, c.data.geometry) == \
        (0.0, 0.0, False, "resize")
    assert c.schedule.max_drops == 0
    n = recipes.load_recipe("course_notes_fashion_mnist")
    assert (n.model.layout, n.model.in_channels, n.model.lrn, n.model.conv1_padding) == \
        ("one_tower", 1, "off", "1")
    assert (n.optim.rule, n.optim.lr, n.optim.momentum, n.optim.batch_size, n.train.epochs) == \
        ("torch_sgd", 0.01, 0.0, 128, 10)


# ------------------------------------------------------------------------------ pure functions

def test_next_rates_extends_past_a_winning_edge_then_refines_once():
    slow, fast = [0.8, 0.7], [0.6, 0.5]
    # the lowest rate wins: one grid step below it (the ratio of the two lowest)
    assert relu_vs_tanh.next_rates({0.001: fast, 0.003: slow, 0.01: slow}, False) == \
        ("extend", [0.00033])
    # the highest wins: one step above; a diverged higher rate makes it interior
    assert relu_vs_tanh.next_rates({0.001: slow, 0.01: fast}, False) == ("extend", [0.1])
    assert relu_vs_tanh.next_rates({0.001: slow, 0.01: fast, 0.1: None}, True) == ("done", [])
    # inside: the geometric midpoints on both sides, once
    assert relu_vs_tanh.next_rates({0.001: slow, 0.003: fast, 0.01: slow}, False) == \
        ("refine", [0.0017, 0.0055])
    assert relu_vs_tanh.next_rates({0.001: slow, 0.003: fast, 0.01: slow}, True) == ("done", [])
    # every rate diverged: go lower
    assert relu_vs_tanh.next_rates({0.01: None, 0.03: None}, False) == ("extend", [0.0033])


def test_pick_fastest_scripted_case():
    trials = {
        0.001: [0.80, 0.60, 0.45, 0.35, 0.30],     # never reaches 25%
        0.003: [0.70, 0.40, 0.24, 0.20, 0.15],     # epoch 3
        0.01: [0.60, 0.30, 0.25, 0.10, 0.05],      # epoch 3 too, lower mean error: wins the tie
        0.03: [0.50, 0.20, math.nan, 0.9, 0.9],    # fastest on paper, but diverged
        0.1: None,                                 # diverged before logging an epoch
    }
    best, rows = relu_vs_tanh.pick_fastest(trials)
    assert best == 0.01
    assert [r["lr"] for r in rows] == [0.01, 0.003, 0.001, 0.03, 0.1]
    assert rows[0]["epochs_to_target"] == 3 and rows[2]["epochs_to_target"] is None
    assert rows[3]["diverged"] and rows[4]["diverged"]
    assert rows[0]["mean_error"] == pytest.approx((0.6 + 0.3 + 0.25 + 0.1 + 0.05) / 5)
    # nobody reaches the target: the fastest-falling curve (lowest mean error) wins
    assert relu_vs_tanh.pick_fastest({1: [0.9, 0.5], 2: [0.8, 0.6]})[0] == 1
    assert relu_vs_tanh.epochs_to_target([0.3, 0.26, 0.25, 0.1]) == 3
    assert relu_vs_tanh.epochs_to_target([0.3, 0.26]) is None


def test_ablation_table_hand_checked():
    errors = {"paper": {0: {"top1": 0.40, "top5": 0.18}, 1: {"top1": 0.42, "top5": 0.20}},
              "no_lrn": {0: {"top1": 0.41, "top5": 0.19}, 1: {"top1": 0.45, "top5": 0.20}},
              "no_pca": {1: {"top1": 0.43, "top5": 0.21}}}
    rows = {r["variant"]: r for r in ablate.ablation_table(errors)}
    assert list(rows) == ["paper", "no_lrn", "no_pca"]
    r = rows["no_lrn"]                     # per-seed differences: top-1 0.01, 0.03; top-5 0.01, 0
    assert r["top1_mean"] == pytest.approx(0.43)
    assert r["top1_std"] == pytest.approx(math.sqrt(((0.41 - 0.43) ** 2 + (0.45 - 0.43) ** 2)))
    assert r["top1_diff"] == pytest.approx(0.02)
    assert r["top1_diff_std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert r["top5_diff"] == pytest.approx(0.005)
    assert r["top5_diff_std"] == pytest.approx(math.sqrt(2) * 0.005)
    p = rows["no_pca"]                     # one seed in common: a difference, no spread
    assert (p["paired"], p["top1_diff_std"]) == ([1], None)
    assert p["top1_diff"] == pytest.approx(0.01)
    assert rows["paper"]["top1_diff"] == 0.0
    with pytest.raises(ValueError, match="baseline"):
        ablate.ablation_table({"no_lrn": errors["no_lrn"]})


def test_colour_specificity_reference_cases():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((11, 11))
    grey = np.stack([f, f, f])[None]
    opponent = np.stack([f, -f, 0 * f])[None]
    single = np.stack([f, 0 * f, 0 * f])[None]
    blue = np.stack([0 * f, 0 * f, np.abs(f)])[None]
    scores = figures.colour_specificity(np.concatenate([grey, opponent, single, blue]))
    np.testing.assert_allclose(scores, [0.0, 1.0, 2.0 / 3.0, 2.0 / 3.0], atol=1e-12)
    # random kernels, the §5 initialisation: 0 on average at any size (the old score gave 2/3,
    # the same as a one-channel kernel); one-channel kernels of random patterns stay at 2/3
    for side, tolerance in ((11, 0.006), (5, 0.012)):
        noise = figures.colour_specificity(0.01 * rng.standard_normal((2000, 3, side, side)))
        assert abs(noise.mean()) < tolerance and np.percentile(noise, 99) < 0.35
    red_noise = rng.standard_normal((50, 3, 11, 11)) * np.array([1.0, 0, 0])[None, :, None, None]
    np.testing.assert_allclose(figures.colour_specificity(red_noise), 2 / 3, atol=1e-12)
    # a colour-opponent kernel with a little noise on top stays near 1
    noisy = opponent + 0.1 * rng.standard_normal((20, 3, 11, 11))
    assert figures.colour_specificity(noisy).min() > 0.85
    assert figures.noise_anisotropy(121) == pytest.approx(0.1137, abs=1e-4)
    with pytest.raises(ValueError, match="expected"):
        figures.colour_specificity(np.zeros((4, 1, 11, 11)))


def test_tower_comparison_and_distribution_are_hand_checked():
    d = figures.distribution(np.array([0.0, 0.1, 0.2, 0.3, 1.0]))
    assert d == {"kernels": 5, "mean": pytest.approx(0.32), "q1": pytest.approx(0.1),
                 "median": pytest.approx(0.2), "q3": pytest.approx(0.3)}
    rng = np.random.default_rng(2)
    apart = figures.mean_difference_p(rng.normal(0.6, 0.1, 48), rng.normal(0.1, 0.1, 48), 2000)
    assert apart == pytest.approx(1 / 2001)          # no random deal comes close
    same = figures.mean_difference_p(rng.normal(0, 0.1, 48), rng.normal(0, 0.1, 48), 2000)
    assert same > 0.05


def test_initial_model_is_the_weights_training_starts_from(data_root, tmp_path):
    """Figure 3's "initial" kernels: the run's seed and config rebuild exactly the network that
    `alexnet train` starts from (resume.start builds it; nothing is written)."""
    import torch
    from paper_alexnet import resume
    from paper_alexnet.run import distributed
    cfg = config.load(None, [*TINY, "model.num_classes=4", "model.input_size=64",
                             "train.seed=7"])
    started = resume.start(cfg, data_root, tmp_path / "run", distributed.World()).model
    rebuilt = figures.initial_model(cfg)
    for (name, a), (_, b) in zip(started.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), name
    other = figures.initial_model(config.load(None, ["train.seed=8", "model.num_classes=4"]))
    assert not torch.equal(other.towers[0].conv1.weight, rebuilt.towers[0].conv1.weight)
    assert not (tmp_path / "run").exists()


def test_eval_batches_limit_spreads_over_a_class_sorted_split(data_root):
    from paper_alexnet import data as data_lib
    cfg = config.load(None, ["data.workers=0", "eval.batch_size=3", "model.input_size=64"])
    seen = np.concatenate([i for _, _, i in data_lib.eval_batches(data_root, "train", cfg,
                                                                  limit=4)])
    np.testing.assert_array_equal(seen, [0, 21, 42, 63])          # 4 classes of 16, sorted
    everything = np.concatenate([i for _, _, i in data_lib.eval_batches(data_root, "val", cfg,
                                                                        limit=100)])
    np.testing.assert_array_equal(everything, np.arange(16))


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(1)
    q, pool = rng.standard_normal((4, 7)), rng.standard_normal((30, 7))
    dist, idx = figures.nearest(q, pool, 3)
    for i in range(4):
        d = np.sqrt(((pool - q[i]) ** 2).sum(1))
        np.testing.assert_array_equal(idx[i], np.argsort(d)[:3])
        np.testing.assert_allclose(dist[i], np.sort(d)[:3], rtol=1e-9)


def test_epoch_curves_weight_by_steps_and_sum_sessions():
    records = [
        {"kind": "train", "step": 1, "error": 1.0, "loss": 3.0, "lr": 0.1, "train_time_s": 1.0},
        {"kind": "train", "step": 4, "error": 0.5, "loss": 2.0, "lr": 0.1, "train_time_s": 4.0},
        {"kind": "val", "step": 4, "top1": 0.6, "top5": 0.2},
        # resumed session: the clock restarts
        {"kind": "train", "step": 8, "error": 0.25, "loss": 1.0, "lr": 0.01, "train_time_s": 2.0},
        {"kind": "val", "step": 8, "top1": 0.4, "top5": 0.1, "time": 10.0},
    ]
    c = rundir.epoch_curves(records)
    assert c["epoch"] == [1, 2]
    assert c["train_error"] == pytest.approx([(1 * 1.0 + 3 * 0.5) / 4, 0.25])
    assert c["val_top1"] == [0.6, 0.4] and c["lr"] == [0.1, 0.01]
    assert c["train_time_s"] == [4.0, 6.0]
    t = rundir.timing(records, batch_size=16)
    assert (t["train_time_s"], t["images"], t["images_per_s"]) == (6.0, 128.0, 128.0 / 6.0)


def test_generated_cifar10_is_the_real_format(tmp_path):
    import pickle
    folder = generated.write_cifar10(tmp_path, train=50, test=20)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["batches.meta"] + [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    with open(folder / "data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    assert d[b"data"].shape == (10, 3072) and d[b"data"].dtype == np.uint8
    assert len(d[b"labels"]) == 10
    x, y = generated.images(0, 70, 32, 3, 3.0)   # train + test, drawn together
    np.testing.assert_array_equal(d[b"data"][3].reshape(3, 32, 32).transpose(1, 2, 0), x[3])


# ------------------------------------------------------------------------- end to end, tiny

def _numbers(text: str, label: str) -> list[str]:
    """The cells of the first markdown table row that starts with `label`."""
    for line in text.splitlines():
        if line.startswith(f"| {label}"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no table row starting with {label!r}")


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    """A prepared synthetic ImageNet-shaped set: 4 classes, 2 train and 1 val image each."""
    return prepared_synthetic(tmp_path_factory.mktemp("imagenet"), classes=4)


def test_ablate_reproduce_ensemble_figures_end_to_end(imagenet_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    # 99-pixel crops keep every code path (random crops, ten crops, two towers) but make fc6 9x
    # smaller (pool5 is 2x2): the checkpoints and the steps are what cost time on a CPU.
    tiny = [*TINY, "model.num_classes=4", "model.input_size=99"]
    assert cli.main(["ablate", "--data", str(imagenet_root), "--runs", str(runs), "--quiet",
                     "--variants", "no_lrn", "--seeds", "0", *tiny]) == 0
    text = (runs / "ablate" / "report" / "report.md").read_text()
    base = json.loads((runs / "ablate" / "paper" / "seed0" / "result.json").read_text())
    var = json.loads((runs / "ablate" / "no_lrn" / "seed0" / "result.json").read_text())
    row = _numbers(text, "no_lrn")
    assert row[2] == f"{100 * var['ten_crop']['top1']:.2f}"
    assert row[4] == f"{100 * (var['ten_crop']['top1'] - base['ten_crop']['top1']):+.2f}"
    assert "+1.4 / +1.2" in row[6] and row[7] == "finished"
    assert str(tmp_path) not in text and str(imagenet_root) not in text   # no local paths
    one = _numbers(text, "one_crop")
    assert one[4] == f"{100 * (base['center']['top1'] - base['ten_crop']['top1']):+.2f}"

    # reproduce: take the baseline run as it is, and evaluate both runs as an ensemble
    members = [runs / "ablate" / v / "seed0" for v in ("paper", "no_lrn")]
    capsys.readouterr()
    assert cli.main(["reproduce", "--data", str(imagenet_root), "--runs", str(runs),
                     "--run-dir", str(members[0]), "--ensemble", *map(str, members)]) == 0
    printed = capsys.readouterr().out          # the numbers, without opening the report
    ens = json.loads((runs / "reproduce_paper" / "ensemble_result.json").read_text())
    for result in (base, ens):
        for crops, view in (("1 crop ", "center"), ("10 crops", "ten_crop")):
            assert (f"  {crops}  top-1 error {100 * result[view]['top1']:.2f}%   top-5 error "
                    f"{100 * result[view]['top5']:.2f}%") in printed, printed
    assert "the paper, 1 CNN (Table 2), ILSVRC-2012 val, 10 crop(s): top-1 40.7%" in printed
    text = (runs / "reproduce_paper" / "report" / "report.md").read_text()
    ours = _numbers(text, "ours: seed0")
    assert ours[3:5] == [f"{100 * base['center']['top1']:.2f}", f"{100 * base['center']['top5']:.2f}"]
    assert len(ens["checkpoints"]) == 2
    assert _numbers(text, "ours: ensemble of 2")[3] == f"{100 * ens['center']['top1']:.2f}"
    assert "| 1 CNN (Table 2) [§6 Table 2] | ILSVRC-2012 val | 10 | 40.7 | 18.2 |" in text
    assert "42.9" in text and "43.5" in text
    assert str(tmp_path) not in text   # no local paths

    # `alexnet report EXP` regenerates the same report from the files
    before = text
    (runs / "reproduce_paper" / "report" / "report.md").unlink()
    assert report_cli.main([str(runs / "reproduce_paper")]) == 0
    assert (runs / "reproduce_paper" / "report" / "report.md").read_text() == before

    # `alexnet report RUN RUN`: the plain report of runs, each matched to its recipe
    assert report_cli.main([*map(str, members), "--out", str(tmp_path / "plain")]) == 0
    plain = (tmp_path / "plain" / "report.md").read_text()
    row = _numbers(plain, "seed0 | no_lrn + model.input_size=99")
    assert row[6] == f"{100 * var['ten_crop']['top1']:.2f}"
    row = _numbers(plain, "seed0 | paper + model.input_size=99")
    assert row[4] == f"{100 * base['center']['top1']:.2f}"
    n = base["images"]       # each run's result with its intervals and the ten-crop gain
    assert f"Evaluation on {n:,} val images (95% Wilson intervals): centre crop top-1 " \
        f"{report.interval_text(base['center']['top1'], n)}" in plain
    gain = 100 * (base["ten_crop"]["top1"] - base["center"]["top1"])
    assert f"ten crops − centre crop: {gain:+.2f} / " in plain and "37.5 − 39.0 = -1.5" in plain

    # Figures 3 and 4 of the baseline
    assert cli.main(["figures", "--run-dir", str(members[0]), "--data", str(imagenet_root),
                     "--queries", "2", "--neighbours", "3", "--max-train", "3",
                     "--note", "Generated stand-in data."]) == 0
    fig = (members[0] / "report" / "figures.md").read_text()
    assert (members[0] / "report" / "figure3_conv1.png").is_file()
    assert (members[0] / "report" / "figure4_neighbours.png").is_file()
    assert (members[0] / "report" / "figure3_colour.png").is_file()
    for tower in ("tower_a", "tower_b"):
        initial = _numbers(fig, f"{tower} | initial | 48 |")
        assert abs(float(initial[3])) < 0.03                 # random kernels: about 0
        assert re.search(rf"\| {tower} \| trained \| 48 \| -?\d\.\d{{3}} \|", fig)
    assert re.search(r"Trained, tower_[ab]'s kernels are the more colour-specific: mean "
                     r"-?\d\.\d{3} against -?\d\.\d{3}", fig)
    assert "3 of the 8 training images searched" in fig and "4 classes, 8 training" in fig
    assert "Generated stand-in data." in fig
    assert str(tmp_path) not in fig


def _prep_small(kind: str, raw: Path, root: Path):
    from data_prep.__main__ import main as prep
    assert prep([kind, "--input", str(raw), "--out", str(root)]) == 0
    return root


def _epoch_errors(run_dir: Path) -> list[float]:
    """Running training error per epoch, recomputed here from metrics.jsonl by a second route:
    records grouped by the validation record that closes their epoch, weighted by steps."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    out, num, den, prev = [], 0.0, 0, 0
    for r in records:
        if r["kind"] == "train":
            num += (r["step"] - prev) * r["error"]
            den += r["step"] - prev
            prev = r["step"]
        elif r["kind"] == "val":
            out.append(num / den)
            num, den = 0.0, 0
    return out


def test_relu_vs_tanh_end_to_end(tmp_path):
    generated.write_cifar10(tmp_path / "raw", train=40, test=16)
    root = _prep_small("cifar10", tmp_path / "raw", tmp_path / "root")
    runs = tmp_path / "runs"
    assert cli.main(["relu-vs-tanh", "--data", str(root), "--runs", str(runs), "--quiet",
                     "--lrs", "0.01,0.03", "--search-epochs", "1", "--epochs", "2",
                     "train.steps_per_epoch=2", "optim.batch_size=8", "eval.batch_size=16",
                     "data.workers=0", "train.log_every=1"]) == 0
    exp = runs / "relu_vs_tanh"
    text = (exp / "report" / "report.md").read_text()
    manifest = json.loads((exp / "experiment.json").read_text())
    for act in ("relu", "tanh"):
        searched = manifest["searched"][act]
        assert {"0.01", "0.03"} <= set(searched) and searched["0.01"] == "grid"
        trials = {float(lr): _epoch_errors(exp / "search" / act / f"lr{lr}") for lr in searched}
        best = manifest["chosen"][act]
        assert best == relu_vs_tanh.pick_fastest(trials)[0]
        # the search ends with the chosen rate inside what was tried (or 3 steps past an edge)
        phase, _ = relu_vs_tanh.next_rates(trials, refined=True)
        assert phase == "done" or sum(p == "extend" for p in searched.values()) == 3
        full = exp / "full" / act / f"lr{best:g}"
        errors = _epoch_errors(full)
        assert len(errors) == 2                       # 25% is not reached: runs to --epochs
        assert errors[0] == trials[best][0]           # continues its search run
        row = _numbers(text, act + " | " + f"{best:g} | 0 | 2 |")
        assert row[6] == f"{100 * errors[-1]:.2f}"
        cfg = rundir.read_config(full)
        assert (cfg.model.arch, cfg.model.activation, cfg.optim.lr, cfg.optim.weight_decay,
                cfg.optim.bias_lr_scale) == ("cifar10_4layer", act, best, 0.0, 2.0)
    assert "INFERENCE" in text and "6x" in text and "biases at 2x the rate" in text
    assert str(tmp_path) not in text
    assert ("not measurable" in text) or re.search(r"\d+\.\d\dx by the first epoch", text)
    assert "training time" not in text.replace("No training-time ratio", "")


def test_course_notes_end_to_end(tmp_path):
    generated.write_fashion_mnist(tmp_path / "raw", train=24, test=12)
    root = _prep_small("fashion-mnist", tmp_path / "raw", tmp_path / "root")
    runs = tmp_path / "runs"
    assert cli.main(["course-notes", "--data", str(root), "--runs", str(runs), "--quiet",
                     *TINY, "model.input_size=99"]) == 0
    result = json.loads((runs / "course_notes" / "run" / "result.json").read_text())
    text = (runs / "course_notes" / "report" / "report.md").read_text()
    ours = _numbers(text, "ours")
    assert ours[2:4] == [f"{100 * (1 - result['center']['top1']):.2f}",
                         f"{100 * result['center']['top1']:.2f}"]
    assert "88" in _numbers(text, "the notes")[2]
    assert str(tmp_path) not in text
    cfg = rundir.read_config(runs / "course_notes" / "run")
    assert (cfg.model.layout, cfg.model.in_channels, cfg.optim.rule) == ("one_tower", 1, "torch_sgd")


@pytest.mark.slow
def test_relu_vs_tanh_on_alexnet_end_to_end(imagenet_root, tmp_path):
    """--arch alexnet: the paper's net without regularisation, classes taken from the data."""
    runs = tmp_path / "runs"
    assert cli.main(["relu-vs-tanh", "--arch", "alexnet", "--data", str(imagenet_root), "--runs",
                     str(runs), "--quiet", "--lrs", "0.01", "--search-epochs", "1", "--epochs",
                     "1", "train.steps_per_epoch=2", "optim.batch_size=4", "eval.batch_size=8",
                     "data.workers=0", "model.input_size=99"]) == 0
    exp = runs / "relu_vs_tanh_alexnet"
    text = (exp / "report" / "report.md").read_text()
    for act in ("relu", "tanh"):
        cfg = rundir.read_config(exp / "full" / act / "lr0.01")
        assert (cfg.model.arch, cfg.model.activation, cfg.model.num_classes) == \
            ("alexnet", act, 4)
        assert (cfg.model.dropout, cfg.optim.weight_decay, cfg.data.pca_std, cfg.data.flip) == \
            (0.0, 0.0, 0.0, False)
        row = _numbers(text, f"{act} | 0.01 | 0 | 1 |")
        assert row[6] == f"{100 * _epoch_errors(exp / 'full' / act / 'lr0.01')[-1]:.2f}"


def test_wilson_interval_by_hand():
    from experiments.report import evaluation_line, wilson
    # 50 errors in 100: centre (0.5 + z²/200)/(1 + z²/100) = 0.5, half-width
    # z/(1 + z²/100)·sqrt(0.0025 + z²/40000) = 0.09617 with z = 1.96.
    lo, hi = wilson(0.5, 100)
    assert (lo, hi) == pytest.approx((0.40383, 0.59617), abs=1e-5)
    # 0 errors in 10: the normal approximation would give [0, 0]; Wilson gives [0, 0.2775].
    assert wilson(0.0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    line = evaluation_line({"split": "val", "images": 100, "center": {"top1": 0.5, "top5": 0.2},
                            "ten_crop": {"top1": 0.45, "top5": 0.2}})
    assert "centre crop top-1 50.00% [40.4, 59.6]" in line
    assert "ten crops − centre crop: -5.00 / +0.00 points" in line
    with pytest.raises(ValueError):
        wilson(0.1, 0)


def test_quiet_runs_print_one_line_each_as_they_finish(data_root, tmp_path, capsys):
    """`alexnet experiment … --quiet`: no per-step output, but one line per run when it ends
    (finished, already finished, diverged), so a long experiment is never silent for hours."""
    from experiments import runner
    from faults import SMALL_NET
    cfg = config.load(None, SMALL_NET + ["train.epochs=1", "train.steps_per_epoch=2"])
    assert runner.train_run(cfg, data_root, tmp_path / "a", quiet=True)
    assert runner.train_run(cfg, data_root, tmp_path / "a", quiet=True)
    bad = config.load(None, SMALL_NET + ["train.epochs=1", "train.steps_per_epoch=2",
                                         "optim.lr=1e30"])
    assert not runner.train_run(bad, data_root, tmp_path / "b", quiet=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"{tmp_path / 'a'}: 1 epoch done (step 2), training error ")
    assert " val top-1 " in lines[0]
    assert lines[1] == f"{tmp_path / 'a'}: already finished (1 epoch): nothing left to train"
    assert lines[2].startswith(f"{tmp_path / 'b'}: diverged at step ")


def test_reports_of_the_one_tower_cifar_net_say_what_it_is(data_root, tmp_path):
    """The Figure 1 net has one tower and is not trained on ILSVRC: its reports neither speak of
    towers A and B nor set its errors beside ImageNet's Table 2 as "the paper"."""
    from experiments.runner import train_and_evaluate
    from faults import SMALL_NET
    run = tmp_path / "run"
    cfg = config.load(None, SMALL_NET + ["train.epochs=1", "train.steps_per_epoch=2"])
    train_and_evaluate(cfg, data_root, run, quiet=True)
    assert report_cli.main([str(run), "--out", str(tmp_path / "plain")]) == 0
    text = (tmp_path / "plain" / "report.md").read_text()
    assert "The paper (" not in text and "Caffe" not in text      # no ILSVRC rows
    assert "No row of the paper applies" in text and "cifar10_4layer on 4 classes" in text
    figures.write_report(run, data_root, tmp_path / "fig", queries=2, k=2, max_train=16)
    fig = (tmp_path / "fig" / "figures.md").read_text()
    assert "Tower A" not in fig and "tower B" not in fig and "one-tower network" in fig


def test_finished_line_of_a_run_a_callback_stopped_says_where_and_why():
    from experiments.runner import finished_line
    cfg = config.load(None, [])
    stopped = {"epochs": 60, "global_step": 3910, "train_time_s": 12.0, "train_error": 0.2493,
               "stopped": "training error 24.93% <= 25% after epoch 10", "val": {}}
    line = finished_line("RUN", stopped, 12.0, cfg)
    assert line.startswith("RUN: stopped at step 3910: training error 24.93% <= 25% after epoch "
                           "10, training error 24.9% (")
    assert "60 epoch" not in line
    again = dict(stopped, train_time_s=0)
    assert "already finished" not in finished_line("RUN", again, 0.1, cfg)
