"""§3.1, Figure 1: ReLUs reach 25% training error on CIFAR-10 six times faster than tanh units.

`alexnet experiment relu-vs-tanh --data ROOT --runs DIR [--arch alexnet]` runs, in
RUNS/relu_vs_tanh[_alexnet]/:
1. a learning-rate search per activation: short runs (`--search-epochs`, default 5) over a grid
   (`--lrs`, default 0.001…0.1); the fastest to the target wins (`pick_fastest`, a pure function);
2. the full runs at the chosen rates (`--epochs`, default the recipe's 60);
3. report/report.md: the search, epochs and training time to 25% training error for each
   activation, their ratio next to the paper's 6x, and a plot in the style of Figure 1.

The network is the four-layer CIFAR-10 net of cifar_net.py, an INFERENCE from the author's
layers-80sec config (the paper does not give it); `--arch alexnet` runs the same comparison on the
paper's network (recipe paper.yaml without regularisation). No regularisation of any kind: no
weight decay, no dropout, no augmentation (no crops, flips or PCA lighting); constant rate.

Training error = the RUNNING training error over each epoch (mean top-1 error of the epoch's
batches, as the author's cuda-convnet printed it and Figure 1 plots it), read from metrics.jsonl.
With no dropout and no augmentation, training mode is evaluation mode for this net, so the only
difference from a pass over the training set at the end of the epoch is that the weights move
during the epoch: the running error lags by about half an epoch (it is pessimistic).
"""
from __future__ import annotations

import math
from pathlib import Path

from experiments import paper_numbers, recipes, report, rundir
from experiments.runner import DIVERGED, dataset_shape, train_run, write_manifest
from paper_alexnet import metrics

TARGET = paper_numbers.FIGURE1["target_train_error"]
DEFAULT_LRS = (0.001, 0.003, 0.01, 0.03, 0.1)
ACTIVATIONS = ("relu", "tanh")
# --arch alexnet: the paper's recipe minus every regulariser and the rate schedule.
ALEXNET_NO_REGULARISATION = ("model.dropout=0.0", "optim.weight_decay=0.0", "data.pca_std=0.0",
                             "data.flip=false", "data.geometry=resize", "schedule.max_drops=0",
                             "eval.ten_crop=false")


def epochs_to_target(errors: list[float], target: float = TARGET) -> int | None:
    """The first epoch (1-based) whose training error is at or below `target`; None if never."""
    for epoch, error in enumerate(errors, 1):
        if error is not None and math.isfinite(error) and error <= target:
            return epoch
    return None


def pick_fastest(trials: dict[float, list[float] | None], target: float = TARGET):
    """Pure function: the learning rate whose short run is fastest to `target`.

    trials[lr] = training error per epoch (None or a non-finite value = the run diverged).
    Ranking: fewest epochs to the target; among runs that tie or never reach it, the lowest mean
    training error over the short run (the area under its curve: the fastest-falling curve); a
    diverged run ranks last. Returns (best_lr, rows) with rows sorted best first:
    {"lr", "epochs_to_target", "mean_error", "final_error", "diverged", "rank"}."""
    if not trials:
        raise ValueError("pick_fastest: no trials")
    rows = []
    for lr, errors in trials.items():
        errors = list(errors or [])
        diverged = not errors or any(e is None or not math.isfinite(e) for e in errors)
        reach = epochs_to_target(errors, target)
        mean = math.inf if diverged else sum(errors) / len(errors)
        rows.append({"lr": lr, "epochs_to_target": reach, "mean_error": mean,
                     "final_error": errors[-1] if errors else math.nan, "diverged": diverged})
    rows.sort(key=lambda r: (r["diverged"], math.inf if r["epochs_to_target"] is None
                             else r["epochs_to_target"], r["mean_error"], r["lr"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows[0]["lr"], rows


def _base(arch: str, data_root) -> tuple[str, list[str]]:
    """The recipe and fixed overrides of the chosen network."""
    if arch == "cifar10_4layer":
        return "relu_vs_tanh", []
    if arch == "alexnet":
        classes, channels = dataset_shape(data_root)
        return "paper", [*ALEXNET_NO_REGULARISATION, f"model.num_classes={classes}",
                         f"model.in_channels={channels}"]
    raise ValueError(f"--arch {arch!r}: expected cifar10_4layer or alexnet")


def _lr_name(lr: float) -> str:
    return f"lr{lr:g}"


def full_run_dir(exp_dir: Path, activation: str, lr: float) -> Path:
    """EXP/full/<activation>/lr<lr>: named by its rate, so a wider search that picks another
    rate trains a new full run instead of resuming one with a different config."""
    return Path(exp_dir) / "full" / activation / _lr_name(lr)


def curve(run_dir: Path) -> list[float] | None:
    """The run's per-epoch running training error; None if it diverged (NaN loss)."""
    if not (run_dir / "metrics.jsonl").is_file() or (run_dir / DIVERGED).is_file():
        return None
    return rundir.epoch_curves(metrics.read_metrics(run_dir))["train_error"]


def run(data_root, runs, arch: str = "cifar10_4layer", lrs=DEFAULT_LRS, search_epochs: int = 5,
        epochs: int | None = None, overrides=(), note: str = "", quiet: bool = False) -> Path:
    """The search, the full runs, the report (see the module docstring)."""
    recipe, fixed = _base(arch, data_root)
    exp_dir = Path(runs) / ("relu_vs_tanh" if arch == "cifar10_4layer" else f"relu_vs_tanh_{arch}")
    full_epochs = epochs or recipes.load_recipe(recipe, [*fixed, *overrides]).train.epochs
    manifest = {"kind": "relu_vs_tanh", "data": str(data_root), "arch": arch, "recipe": recipe,
                "lrs": [float(x) for x in lrs], "search_epochs": search_epochs,
                "epochs": full_epochs, "overrides": [*fixed, *overrides], "note": note,
                "chosen": {}}
    write_manifest(exp_dir, manifest)
    for act in ACTIVATIONS:
        trials = {}
        for lr in lrs:
            d = exp_dir / "search" / act / _lr_name(lr)
            cfg = recipes.load_recipe(recipe, [*fixed, *overrides, f"model.activation={act}",
                                               f"optim.lr={lr}", f"train.epochs={search_epochs}"])
            train_run(cfg, data_root, d, quiet=quiet)
            trials[lr] = curve(d)
        best, _ = pick_fastest(trials)
        manifest["chosen"][act] = best
        write_manifest(exp_dir, manifest)
        cfg = recipes.load_recipe(recipe, [*fixed, *overrides, f"model.activation={act}",
                                           f"optim.lr={best}", f"train.epochs={full_epochs}"])
        train_run(cfg, data_root, full_run_dir(exp_dir, act, best), quiet=quiet)
    return write_report(exp_dir, manifest)


def write_report(exp_dir: Path, manifest: dict, out_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir or exp_dir / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = paper_numbers.FIGURE1
    net = ("the four-layer CIFAR-10 net of `paper_alexnet/cifar_net.py` — an INFERENCE from the "
           "author's layers-80sec config; the paper does not give its network"
           if manifest["arch"] == "cifar10_4layer" else "the paper's AlexNet (recipe paper.yaml)")
    lines = ["# Figure 1: ReLU vs tanh (§3.1)", "",
             "Generated by `alexnet experiment relu-vs-tanh`; regenerate with `alexnet report "
             f"RUNS/{exp_dir.name}`; not edited by hand.", "",
             f"- Network: {net}.",
             f"- Data: `{report.shown_path(manifest['data'])}`. {manifest.get('note', '')}",
             "- No regularisation: no weight decay, no dropout, no augmentation (no crops, flips "
             "or PCA lighting); the learning rate stays constant.",
             "- Training error: the running top-1 error over each epoch's batches (what Figure 1 "
             "plots and cuda-convnet printed; it lags an end-of-epoch pass by about half an "
             "epoch).",
             f"- Overrides: {', '.join(manifest['overrides']) or 'none'}.", "",
             f"## Learning-rate search ({manifest['search_epochs']} epochs per trial)", "",
             "Fastest to the target wins: fewest epochs to "
             f"{100 * TARGET:.0f}% training error, then the lowest mean training error over the "
             "trial; diverged runs last.", ""]
    rows = []
    for act in ACTIVATIONS:
        trials = {lr: curve(exp_dir / "search" / act / _lr_name(lr)) for lr in manifest["lrs"]
                  if (exp_dir / "search" / act / _lr_name(lr) / "metrics.jsonl").is_file()}
        if not trials:
            continue
        _, ranked = pick_fastest(trials)
        rows += [[act, f"{r['lr']:g}", r["epochs_to_target"] or "not reached",
                  report.pct(r["mean_error"]), report.pct(r["final_error"]),
                  "yes" if r["diverged"] else "no", "**chosen**" if r["rank"] == 1 else r["rank"]]
                 for r in ranked]
    lines += [report.table(["activation", "lr", "epochs to target", "mean train error %",
                            "last train error %", "diverged", "rank"], rows), "",
              "## Full runs", ""]
    edge = [f"{a} ({lr:g})" for a, lr in manifest["chosen"].items()
            if len(manifest["lrs"]) > 1 and lr in (min(manifest["lrs"]), max(manifest["lrs"]))]
    if edge:
        lines += [f"Note: the rate chosen for {', '.join(edge)} is at the edge of the grid; "
                  "a wider `--lrs` may find a faster one.", ""]
    full, series = {}, []
    for act, lr in manifest["chosen"].items():
        d = full_run_dir(exp_dir, act, lr)
        if not (d / "metrics.jsonl").is_file():
            continue
        s = rundir.summarise(d)
        c = s["curves"]
        reach = epochs_to_target(c["train_error"])
        full[act] = {"epochs": reach,
                     "time": c["train_time_s"][reach - 1] if reach else None,
                     "final": c["train_error"][-1] if c["train_error"] else None,
                     "lr": s["config"].optim.lr, "ran": len(c["epoch"])}
        series.append({"x": c["epoch"], "y": c["train_error"], "label": act,
                       "style": "-" if act == "relu" else "--", "color": "black"})
    lines.append(report.table(
        ["activation", "lr", "epochs run", "epochs to 25% train error", "train time to 25% (s)",
         "last train error %"],
        [[a, f"{v['lr']:g}", v["ran"], v["epochs"] or "not reached", report.num(v["time"], 1),
          report.pct(v["final"])] for a, v in full.items()]))
    relu, tanh = full.get("relu", {}), full.get("tanh", {})
    if relu.get("epochs") and tanh.get("epochs"):
        ratio = f"{tanh['epochs'] / relu['epochs']:.2f}x in epochs"
        if relu.get("time") and tanh.get("time"):
            ratio += f", {tanh['time'] / relu['time']:.2f}x in training time"
    else:
        ratio = "not measurable: an activation did not reach 25% training error in the run"
    lines += ["", f"**Speed-up of ReLU over tanh (epochs to 25%): {ratio}.** The paper: "
              f"{fig['speedup']:.0f}x (about {fig['relu_epochs']} vs {fig['tanh_epochs']} epochs, "
              f"read off Figure 1, {fig['ref']}).", ""]
    # the data of the figure, per epoch (running training error, %)
    longest = max([len(s["x"]) for s in series] + [0])
    rows = [[e + 1] + [report.pct(s["y"][e]) if e < len(s["y"]) else "—" for s in series]
            for e in range(longest)]
    lines += [report.table(["epoch"] + [f"{s['label']} train error %" for s in series], rows),
              ""]
    if report.plot_lines(out_dir / "figure1.png", series, "epochs", "training error rate",
                         "Figure 1: ReLU (solid) vs tanh (dashed)", hline=TARGET):
        lines.append("![Figure 1](figure1.png)")
    else:
        lines.append(report.FIGURES_HINT)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
