"""§3.1, Figure 1: ReLUs reach 25% training error on CIFAR-10 six times faster than tanh units.

`alexnet experiment relu-vs-tanh --data ROOT --runs DIR [--arch alexnet]` runs, in
RUNS/relu_vs_tanh[_alexnet]/:
1. a learning-rate search per activation (the paper tunes each activation's rate "to make
   training as fast as possible"): short runs (`--search-epochs`, default 3) over a coarse grid
   (`--lrs`, default 0.0003…0.03 in steps of about 3); while the fastest rate is at an edge of
   what was tried, the grid is extended one step beyond that edge; then the geometric midpoints on
   either side of the fastest are tried once (`next_rates`, a pure function), so the chosen rate
   always has a slower rate tried on each side. The fastest to the target wins (`pick_fastest`);
2. the full runs at the chosen rates, which continue the search run of that rate (same config, so
   the same first epochs) and stop at the first epoch whose training error is at or below 25%, or
   after `--epochs` (default the recipe's);
3. report/report.md: the search, epochs and training time to 25% training error for each
   activation, their ratio next to the paper's 6x, and a plot in the style of Figure 1.

The network is the four-layer CIFAR-10 net of cifar_net.py, an INFERENCE from the author's
layers-80sec config (the paper does not give it), trained as that config does: batch 128, momentum
0.9, biases at twice the weights' rate, the layers-80sec initialisation, pixels in 0-255 minus the
mean image. `--arch alexnet` runs the same comparison on the paper's network (recipe paper.yaml
without regularisation). No regularisation of any kind: no weight decay, no dropout, no
augmentation (no crops, flips or PCA lighting); constant rate.

Training error = the RUNNING training error over each epoch (mean top-1 error of the epoch's
batches, as the author's cuda-convnet printed it and Figure 1 plots it), read from metrics.jsonl.
With no dropout and no augmentation, training mode is evaluation mode for this net, so the only
difference from a pass over the training set at the end of the epoch is that the weights move
during the epoch: the running error lags by about half an epoch (it is pessimistic).
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

from experiments import paper_numbers, recipes, report, rundir
from experiments.runner import DIVERGED, dataset_shape, train_run, write_manifest
from paper_alexnet import metrics

TARGET = paper_numbers.FIGURE1["target_train_error"]
DEFAULT_LRS = (0.0003, 0.001, 0.003, 0.01, 0.03)
MAX_EXTENSIONS = 3          # grid steps added beyond an edge, per activation
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


def _round(lr: float) -> float:
    return float(f"{lr:.2g}")


def next_rates(trials: dict, refined: bool, target: float = TARGET) -> tuple[str, list[float]]:
    """Pure function: what the search tries next, as (phase, rates).

    - "extend": the fastest rate so far is the lowest (or highest) tried: one grid step beyond it
      (the ratio of the two rates at that edge), so that a slower rate is known on each side;
    - "refine": the fastest is inside; the geometric midpoints between it and its two neighbours,
      once (`refined` says whether that was done);
    - "done": nothing left to try. Rates are rounded to two significant digits."""
    best, _ = pick_fastest(trials, target)
    tried = sorted(trials)
    if len(tried) >= 2 and best == tried[0]:
        return "extend", [_round(tried[0] ** 2 / tried[1])]
    if len(tried) >= 2 and best == tried[-1]:
        return "extend", [_round(tried[-1] ** 2 / tried[-2])]
    if refined or len(tried) < 3:
        return "done", []
    i = tried.index(best)
    return "refine", [_round(math.sqrt(best * tried[i - 1])), _round(math.sqrt(best * tried[i + 1]))]


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


def run(data_root, runs, arch: str = "cifar10_4layer", lrs=DEFAULT_LRS, search_epochs: int = 3,
        epochs: int | None = None, overrides=(), note: str = "", quiet: bool = False) -> Path:
    """The search, the full runs, the report (see the module docstring)."""
    recipe, fixed = _base(arch, data_root)
    exp_dir = Path(runs) / ("relu_vs_tanh" if arch == "cifar10_4layer" else f"relu_vs_tanh_{arch}")
    full_epochs = epochs or recipes.load_recipe(recipe, [*fixed, *overrides]).train.epochs
    manifest = {"kind": "relu_vs_tanh", "data": str(data_root), "arch": arch, "recipe": recipe,
                "lrs": [float(x) for x in lrs], "search_epochs": search_epochs,
                "epochs": full_epochs, "overrides": [*fixed, *overrides], "note": note,
                "searched": {}, "chosen": {}}
    write_manifest(exp_dir, manifest)

    def run_config(act: str, lr: float, n_epochs: int):
        return recipes.load_recipe(recipe, [*fixed, *overrides, f"model.activation={act}",
                                            f"optim.lr={lr}", f"train.epochs={n_epochs}"])

    for act in ACTIVATIONS:
        trials, phases = {}, {}

        def trial(lr: float, phase: str):
            d = search_dir(exp_dir, act, lr)
            train_run(run_config(act, lr, search_epochs), data_root, d, quiet=quiet)
            trials[lr], phases[lr] = curve(d), phase
            manifest["searched"][act] = {f"{r:g}": p for r, p in sorted(phases.items())}
            write_manifest(exp_dir, manifest)

        for lr in lrs:
            trial(float(lr), "grid")
        extensions, refined = 0, False
        while True:
            phase, more = next_rates(trials, refined)
            if phase == "done" or (phase == "extend" and extensions >= MAX_EXTENSIONS):
                break
            extensions += phase == "extend"
            refined = refined or phase == "refine"
            for lr in more:
                trial(lr, phase)
        best, _ = pick_fastest(trials)
        manifest["chosen"][act] = best
        write_manifest(exp_dir, manifest)
        full = full_run_dir(exp_dir, act, best)
        if not full.exists() and trials[best] is not None and search_epochs <= full_epochs:
            shutil.copytree(search_dir(exp_dir, act, best), full)   # its first epochs, as run
        for n_epochs in range(min(search_epochs, full_epochs), full_epochs + 1):
            if not train_run(run_config(act, best, n_epochs), data_root, full, quiet=quiet):
                break                                          # diverged: the report says so
            errors = curve(full) or []
            if epochs_to_target(errors) is not None or len(errors) >= full_epochs:
                break
    return write_report(exp_dir, manifest)


def search_dir(exp_dir: Path, activation: str, lr: float) -> Path:
    return Path(exp_dir) / "search" / activation / _lr_name(lr)


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
             "trial; diverged runs last. Phases: `grid` = the coarse grid "
             f"({', '.join(f'{x:g}' for x in manifest['lrs'])}); `extend` = one step beyond an "
             "edge that was fastest; `refine` = the midpoints around the fastest.", ""]
    rows, edge = [], []
    for act in ACTIVATIONS:
        phases = manifest.get("searched", {}).get(act) or {f"{x:g}": "grid"
                                                            for x in manifest["lrs"]}
        trials = {float(lr): curve(search_dir(exp_dir, act, float(lr))) for lr in phases
                  if (search_dir(exp_dir, act, float(lr)) / "metrics.jsonl").is_file()}
        if not trials:
            continue
        best, ranked = pick_fastest(trials)
        if len(trials) > 1 and best in (min(trials), max(trials)):
            edge.append(f"{act} ({best:g})")
        rows += [[act, f"{r['lr']:g}", phases.get(f"{r['lr']:g}", "grid"),
                  r["epochs_to_target"] or "not reached", report.pct(r["mean_error"]),
                  report.pct(r["final_error"]), "yes" if r["diverged"] else "no",
                  "**chosen**" if r["rank"] == 1 else r["rank"]]
                 for r in sorted(ranked, key=lambda r: r["lr"])]
    lines += [report.table(["activation", "lr", "phase", "epochs to target",
                            "mean train error %", "last train error %", "diverged", "rank"],
                           rows), "", "## Full runs", ""]
    if edge:
        lines += [f"Note: the rate chosen for {', '.join(edge)} is at the edge of the rates "
                  "tried; a wider `--lrs` may find a faster one.", ""]
    full, series = {}, []
    for act, lr in manifest["chosen"].items():
        d = full_run_dir(exp_dir, act, lr)
        if not (d / "metrics.jsonl").is_file():
            continue
        s = rundir.summarise(d)
        c = s["curves"]
        reach = epochs_to_target(c["train_error"])
        optim = s["config"].optim
        trained_as = (f"rule {optim.rule}, batch {optim.batch_size}, momentum {optim.momentum:g}, "
                      f"biases at {optim.bias_lr_scale:g}x the rate, weight decay "
                      f"{optim.weight_decay:g}")
        full[act] = {"epochs": reach,
                     "time": c["train_time_s"][reach - 1] if reach else None,
                     "final": c["train_error"][-1] if c["train_error"] else None,
                     "lr": s["config"].optim.lr, "ran": len(c["epoch"])}
        series.append({"x": c["epoch"], "y": c["train_error"], "label": act,
                       "style": "-" if act == "relu" else "--", "color": "black"})
    if full:
        lines += [f"Optimiser of the full runs: {trained_as}. Each full run continues its search "
                  "run (same config, hence the same first epochs) and stops at the first epoch at "
                  f"or below {100 * TARGET:.0f}% training error, or after "
                  f"{manifest['epochs']} epochs.", ""]
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
    elif relu.get("epochs") and tanh.get("ran"):
        ratio = (f"more than {tanh['ran'] / relu['epochs']:.2f}x in epochs (tanh had not reached "
                 f"25% after {tanh['ran']} epochs)")
    elif tanh.get("epochs") and relu.get("ran"):
        ratio = (f"less than {tanh['epochs'] / relu['ran']:.2f}x in epochs (ReLU had not reached "
                 f"25% after {relu['ran']} epochs)")
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
