"""§3.1, Figure 1: ReLUs reach 25% training error on CIFAR-10 six times faster than tanh units.

`alexnet experiment relu-vs-tanh --data ROOT --runs DIR [--arch alexnet]` runs, in
RUNS/relu_vs_tanh[_alexnet]/:
1. a learning-rate choice per activation (the paper tunes each activation's rate "to make
   training as fast as possible"), one of:
   - `--search grid` (default): short runs (`--search-epochs`, default 3) over a coarse grid
     (`--lrs`, default 0.0003…0.03 in steps of about 3); while the fastest rate is at an edge of
     what was tried, the grid is extended one step beyond that edge; then the geometric midpoints
     on either side of the fastest are tried once (`next_rates`, a pure function), so the chosen
     rate always has a slower rate tried on each side. The fastest to the target wins
     (`pick_fastest`);
   - `--search race`: every rate of `--lrs` races to the target by successive halving: all run
     `--search-epochs` epochs, the better half (`race_survivors`) runs twice as many, and so on,
     until one is left or one reaches the target (the first there wins);
   - `--lr relu=0.0017,tanh=0.01`: the rates are given, nothing is searched;
2. the full runs at the chosen rates, one per seed of `--seeds`: the run of the first seed
   continues the search run of that rate (same config, so the same first epochs); each stops at
   the end of the first epoch whose training error is at or below 25% (`StopAtTarget`, a callback
   of the training loop), or after `--epochs` (default the recipe's);
3. report/report.md: the search, epochs to 25% training error per run, read two ways
   (`crossing`: the first epoch at or below it, and interpolated linearly between the epochs
   either side), their mean and range over the seeds and the speed-up (`aggregate_seeds`), next to
   the paper's 6x, and a plot in the style of Figure 1.

The network is the four-layer CIFAR-10 net of cifar_net.py, an INFERENCE from the author's
layers-80sec config (the paper does not give it), trained as that config does: batch 128, momentum
0.9, biases at twice the weights' rate, the layers-80sec initialisation, pixels in 0-255 minus the
mean image. `--arch alexnet` runs the same comparison on the paper's network (recipe paper.yaml
without regularisation). No regularisation of any kind: no weight decay, no dropout, no
augmentation (no crops, flips or PCA lighting); constant rate (unless overridden: the factor runs
of make_examples.sh try layers-80sec's rate drop and other factors this way).

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
from paper_alexnet.run import metrics
from paper_alexnet.run.callbacks import Callback, Progress

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


def crossing(errors: list[float], target: float = TARGET) -> tuple[int | None, float | None]:
    """Pure function: epochs to `target`, read two ways, as (first, interpolated).

    first = the first epoch (1-based) whose training error is at or below the target;
    interpolated = where the straight line between the errors of epochs first-1 and first meets
    the target: (first - 1) + (e[first-1] - target) / (e[first-1] - e[first]). A crossing in the
    first epoch reads 1 both ways (no error is known before it). (None, None) if never reached."""
    first = epochs_to_target(errors, target)
    if first is None:
        return None, None
    if first == 1:
        return 1, 1.0
    before, after = errors[first - 2], errors[first - 1]
    return first, (first - 1) + (before - target) / (before - after)


def _spread(values: list[float]) -> dict:
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)} \
        if values else {"mean": None, "min": None, "max": None}


def aggregate_seeds(relu: dict, tanh: dict, target: float = TARGET) -> dict:
    """Pure function: epochs to `target` over seeds, and the speed-up of ReLU over tanh.

    relu[seed] / tanh[seed] = a run's training error per epoch (None: diverged). Per activation,
    for each reading ("first", "interpolated"): the per-seed values (None where the run never
    reached the target), and the mean, min and max over the runs that reached it; "reached" and
    "runs" count them. The speed-up is computed over the seeds where both runs reached the target
    ("paired"): the ratio of their mean epochs (tanh / ReLU), with the range of the per-seed
    ratios (the ratio of the means always lies inside that range)."""
    out = {}
    for act, runs in (("relu", relu), ("tanh", tanh)):
        per_seed = {seed: crossing(errors or [], target) for seed, errors in sorted(runs.items())}
        out[act] = {"runs": len(per_seed),
                    "reached": sum(first is not None for first, _ in per_seed.values())}
        for i, reading in enumerate(("first", "interpolated")):
            values = {seed: c[i] for seed, c in per_seed.items()}
            out[act][reading] = {"per_seed": values,
                                 **_spread([v for v in values.values() if v is not None])}
    paired = [seed for seed in sorted(set(relu) & set(tanh))
              if out["relu"]["first"]["per_seed"][seed] is not None
              and out["tanh"]["first"]["per_seed"][seed] is not None]
    out["speedup"] = {"paired": paired}
    for reading in ("first", "interpolated"):
        r = [out["relu"][reading]["per_seed"][seed] for seed in paired]
        t = [out["tanh"][reading]["per_seed"][seed] for seed in paired]
        ratios = [b / a for a, b in zip(r, t)]
        out["speedup"][reading] = {"ratio": sum(t) / sum(r) if paired else None,
                                   "min": min(ratios, default=None),
                                   "max": max(ratios, default=None)}
    return out


def race_survivors(trials: dict[float, list[float] | None], target: float = TARGET) -> list[float]:
    """Pure function: the rates a successive-halving race keeps after a round: the better half
    (rounded up) by `pick_fastest`'s ranking, never a diverged run; best first."""
    _, rows = pick_fastest(trials, target)
    alive = [r["lr"] for r in rows if not r["diverged"]]
    return alive[:math.ceil(len(alive) / 2)]


class StopAtTarget(Callback):
    """Training-loop callback: stop a run at the end of the first epoch whose running training
    error is at or below `target`; on a rerun, before any step when it already has. The curve is
    read from RUN/metrics.jsonl (every record of an epoch is written before its checkpoint), as
    the report reads it."""

    def __init__(self, target: float = TARGET):
        self.target = target

    def reached(self, progress: Progress) -> str | None:
        errors = curve(Path(progress.run_dir)) or []
        first = epochs_to_target(errors, self.target)
        if first is None:
            return None
        return (f"running training error {100 * errors[first - 1]:.2f}% after epoch {first}, "
                f"at or below the target {100 * self.target:g}%")

    on_start = on_epoch_end = reached



def _base(arch: str, data_root) -> tuple[str, list[str]]:
    """The recipe and fixed overrides of the chosen network."""
    if arch == "cifar10_4layer":
        return "relu_vs_tanh", []
    if arch == "alexnet":
        classes, channels = dataset_shape(data_root)
        return "paper", [*ALEXNET_NO_REGULARISATION, f"model.num_classes={classes}",
                         f"model.in_channels={channels}"]
    raise ValueError(f"--arch {arch!r}: expected cifar10_4layer or alexnet")



def _run_name(lr: float, seed: int) -> str:
    """lr<rate>, with _seed<k> for seeds other than 0 (seed 0 keeps the name runs had before
    there were seeds, so an existing experiment resumes)."""
    return f"lr{lr:g}" + (f"_seed{seed}" if seed else "")


def search_dir(exp_dir: Path, activation: str, lr: float, seed: int = 0) -> Path:
    return Path(exp_dir) / "search" / activation / _run_name(lr, seed)


def full_run_dir(exp_dir: Path, activation: str, lr: float, seed: int = 0) -> Path:
    """EXP/full/<activation>/lr<rate>[_seed<k>]: named by its rate, so a wider search that picks
    another rate trains a new full run instead of resuming one with a different config."""
    return Path(exp_dir) / "full" / activation / _run_name(lr, seed)


def curve(run_dir: Path) -> list[float] | None:
    """The run's per-epoch running training error; None if it diverged (NaN loss)."""
    if not (run_dir / "metrics.jsonl").is_file() or (run_dir / DIVERGED).is_file():
        return None
    return rundir.epoch_curves(metrics.read_metrics(run_dir))["train_error"]


def run(data_root, runs, arch: str = "cifar10_4layer", lrs=DEFAULT_LRS, search_epochs: int = 3,
        epochs: int | None = None, overrides=(), note: str = "", quiet: bool = False,
        seeds=(0,), fixed_lrs: dict | None = None, search: str = "grid",
        activations=ACTIVATIONS) -> Path:
    """The rate choice, the full runs, the report (see the module docstring). `fixed_lrs`:
    {activation: rate} given rather than searched; `activations`: the ones to run."""
    if search not in ("grid", "race"):
        raise ValueError(f"--search {search!r}: expected grid or race")
    recipe, fixed = _base(arch, data_root)
    exp_dir = Path(runs) / ("relu_vs_tanh" if arch == "cifar10_4layer" else f"relu_vs_tanh_{arch}")
    full_epochs = epochs or recipes.load_recipe(recipe, [*fixed, *overrides]).train.epochs
    fixed_lrs = {a: float(lr) for a, lr in (fixed_lrs or {}).items()}
    seeds = [int(s) for s in seeds]
    manifest = {"kind": "relu_vs_tanh", "data": str(data_root), "arch": arch, "recipe": recipe,
                "lrs": [float(x) for x in lrs], "search_epochs": search_epochs,
                "epochs": full_epochs, "overrides": [*fixed, *overrides], "note": note,
                "search": search, "fixed_lrs": fixed_lrs, "seeds": seeds,
                "activations": list(activations), "searched": {}, "chosen": {}, "race": {}}
    write_manifest(exp_dir, manifest)

    def run_config(act: str, lr: float, n_epochs: int, seed: int):
        return recipes.load_recipe(recipe, [*fixed, *overrides, f"model.activation={act}",
                                            f"optim.lr={lr}", f"train.epochs={n_epochs}",
                                            f"train.seed={seed}"])

    for act in activations:
        if act in fixed_lrs:
            best = fixed_lrs[act]
        elif search == "race":
            best = _race(exp_dir, manifest, act, seeds[0], search_epochs, full_epochs, data_root,
                         run_config, quiet)
        else:
            best = _grid_search(exp_dir, manifest, act, seeds[0], search_epochs, data_root,
                                run_config, quiet)
        manifest["chosen"][act] = best
        write_manifest(exp_dir, manifest)
        for seed in seeds:
            full = full_run_dir(exp_dir, act, best, seed)
            searched = search_dir(exp_dir, act, best, seed)
            if (not full.exists() and act not in fixed_lrs and seed == seeds[0]
                    and curve(searched) is not None and search_epochs <= full_epochs):
                shutil.copytree(searched, full)      # its first epochs, as run
            train_run(run_config(act, best, full_epochs, seed), data_root, full, quiet=quiet,
                      callbacks=[StopAtTarget()])      # diverged: the report says so
    return write_report(exp_dir, manifest)


def _grid_search(exp_dir, manifest, act, seed, search_epochs, data_root, run_config,
                 quiet) -> float:
    """`--search grid`: the coarse grid, extended past a winning edge, refined once."""
    trials, phases = {}, {}

    def trial(lr: float, phase: str):
        d = search_dir(exp_dir, act, lr, seed)
        train_run(run_config(act, lr, search_epochs, seed), data_root, d, quiet=quiet)
        trials[lr], phases[lr] = curve(d), phase
        manifest["searched"][act] = {f"{r:g}": p for r, p in sorted(phases.items())}
        write_manifest(exp_dir, manifest)

    for lr in manifest["lrs"]:
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
    return pick_fastest(trials)[0]


def _race(exp_dir, manifest, act, seed, search_epochs, full_epochs, data_root, run_config,
          quiet) -> float:
    """`--search race`: successive halving to the target. Round k trains the survivors to
    search_epochs * 2^k epochs (each run stops at the target, resuming the previous round's
    run); it ends when one rate is left, one has reached the target, or the cap is reached."""
    alive, n_epochs, rounds = sorted(float(x) for x in manifest["lrs"]), search_epochs, []
    phases = {}
    while True:
        trials = {}
        for lr in alive:
            d = search_dir(exp_dir, act, lr, seed)
            train_run(run_config(act, lr, n_epochs, seed), data_root, d, quiet=quiet,
                      callbacks=[StopAtTarget()])
            trials[lr] = curve(d)
            phases[f"{lr:g}"] = f"race, {n_epochs} epochs"
        rounds.append({"epochs": n_epochs, "rates": alive})
        manifest["searched"][act], manifest["race"][act] = dict(sorted(phases.items())), rounds
        write_manifest(exp_dir, manifest)
        best, _ = pick_fastest(trials)
        survivors = race_survivors(trials)
        if (len(survivors) <= 1 or epochs_to_target(trials[best] or []) is not None
                or n_epochs >= full_epochs):
            return best
        alive, n_epochs = sorted(survivors), min(2 * n_epochs, full_epochs)


def _per_seed_curves(exp_dir: Path, manifest: dict, act: str) -> dict:
    """{seed: training error per epoch, or None (diverged)} of an activation's full runs."""
    lr = manifest.get("chosen", {}).get(act)
    if lr is None:
        return {}
    out = {}
    for seed in manifest.get("seeds", [0]):
        d = full_run_dir(exp_dir, act, lr, seed)
        if (d / "metrics.jsonl").is_file() or (d / DIVERGED).is_file():
            out[seed] = curve(d)
    return out


def seed_curves(exp_dir: Path, manifest: dict) -> dict:
    """{activation: {seed: curve}} of an experiment's full runs (what the reports read)."""
    return {act: _per_seed_curves(exp_dir, manifest, act) for act in ACTIVATIONS}


def epochs_text(stats: dict, reading: str) -> str:
    """'9.09 (8.50–9.60)' for several runs, '9.09' for one, 'not reached' for none."""
    s = stats[reading]
    digits = 0 if reading == "first" else 2
    if s["mean"] is None:
        return "not reached"
    text = f"{s['mean']:.{digits if stats['reached'] == 1 else 2}f}"
    if stats["reached"] > 1:
        text += f" ({s['min']:.{digits}f}–{s['max']:.{digits}f})"
    return text


def speedup_text(speedup: dict, reading: str) -> str:
    s = speedup[reading]
    if s["ratio"] is None:
        return "—"
    text = f"{s['ratio']:.2f}x"
    if len(speedup["paired"]) > 1:
        text += f" ({s['min']:.2f}–{s['max']:.2f}x)"
    return text


def _header(exp_dir: Path, manifest: dict) -> list[str]:
    """What was trained, on what, and how the training error is counted."""
    net = ("the four-layer CIFAR-10 net of `paper_alexnet/cifar_net.py` — an INFERENCE from the "
           "author's layers-80sec config; the paper does not give its network"
           if manifest["arch"] == "cifar10_4layer" else "the paper's AlexNet (recipe paper.yaml)")
    return ["# Figure 1: ReLU vs tanh (§3.1)", "",
            "Generated by `alexnet experiment relu-vs-tanh`; regenerate with `alexnet report "
            f"RUNS/{exp_dir.name}`; not edited by hand.", "",
            f"- Network: {net}.",
            f"- Data: `{report.shown_path(manifest['data'])}`. {manifest.get('note', '')}",
            "- No regularisation: no weight decay, no dropout, no augmentation (no crops, flips "
            "or PCA lighting); the learning rate stays constant unless the overrides say "
            "otherwise.",
            "- Training error: the running top-1 error over each epoch's batches (what Figure 1 "
            "plots and cuda-convnet printed; it lags an end-of-epoch pass by about half an "
            "epoch).",
            f"- Overrides: {', '.join(manifest['overrides']) or 'none'}.", ""]


def _optimiser_line(exp_dir: Path, manifest: dict, curves: dict, searched: bool) -> list[str]:
    """The full runs' optimiser and stopping rule, read from one of their configs."""
    cfg = None
    for act in ACTIVATIONS:
        for seed in curves[act]:
            d = full_run_dir(exp_dir, act, manifest["chosen"][act], seed)
            if (d / "config.yaml").is_file():
                cfg = rundir.read_config(d)
    if cfg is None:
        return []
    optim = cfg.optim
    return [f"Optimiser of the full runs: rule {optim.rule}, batch {optim.batch_size}, "
            f"momentum {optim.momentum:g}, biases at {optim.bias_lr_scale:g}x the rate, "
            f"weight decay {optim.weight_decay:g}. Seeds: "
            f"{', '.join(str(s) for s in manifest.get('seeds', [0]))} (`train.seed`: the initial "
            "weights and the order of the batches). Each run stops at the end of the first epoch "
            f"at or below {100 * TARGET:.0f}% training error, or after {manifest['epochs']} "
            "epochs (the cap: a run that ends there has not reached the target)."
            + (" The run of the first seed continues its search run (same config, hence the "
               "same first epochs)." if searched else ""), ""]


def write_report(exp_dir: Path, manifest: dict, out_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir or exp_dir / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    search = manifest.get("search", "grid")
    fixed_lrs = manifest.get("fixed_lrs", {})
    lines = _header(exp_dir, manifest)
    searched_acts = [a for a in ACTIVATIONS if a in manifest.get("chosen", {})
                     and a not in fixed_lrs]
    if fixed_lrs:
        lines += ["Learning rates given (`--lr`), not searched: " + ", ".join(
            f"{a} {lr:g}" for a, lr in fixed_lrs.items()) + ".", ""]
    if searched_acts or not manifest.get("chosen"):
        lines += _search_section(exp_dir, manifest, search)
    lines += ["## Full runs", ""]
    curves = seed_curves(exp_dir, manifest)
    lines += _optimiser_line(exp_dir, manifest, curves, bool(searched_acts))
    rows, series = _run_rows(manifest, curves)
    lines.append(report.table(
        ["activation", "lr", "seed", "epochs run", "first epoch at or below 25%",
         "epochs to 25%, interpolated", "last train error %"], rows))
    lines += _seeds_section(curves, manifest)
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


def _run_rows(manifest: dict, curves: dict) -> tuple[list, list]:
    """(one table row per full run, one Figure 1 line per run that trained)."""
    rows, series, several = [], [], len(manifest.get("seeds", [0])) > 1
    for act in ACTIVATIONS:
        for seed, errors in curves[act].items():
            first, interpolated = crossing(errors or [])
            rows.append([act, f"{manifest['chosen'][act]:g}", seed,
                         len(errors) if errors is not None else "diverged",
                         first or "not reached", report.num(interpolated),
                         report.pct(errors[-1] if errors else None)])
            if errors:
                series.append({"x": list(range(1, len(errors) + 1)), "y": errors,
                               "label": f"{act}" + (f" seed {seed}" if several else ""),
                               "style": "-" if act == "relu" else "--", "color": "black"})
    return rows, series


def _seeds_section(curves: dict, manifest: dict) -> list:
    """Over the seeds (with several), the speed-up against the paper's, and why no time ratio."""
    agg = aggregate_seeds(curves["relu"], curves["tanh"])
    lines = []
    if len(manifest.get("seeds", [0])) > 1:
        lines += ["", f"Over the seeds (mean, and the range in brackets, of the runs that reached "
                  f"{100 * TARGET:.0f}%):", "", report.table(
                      ["activation", "runs", "reached 25%", "first epoch at or below 25%",
                       "epochs to 25%, interpolated"],
                      [[act, agg[act]["runs"], agg[act]["reached"], epochs_text(agg[act], "first"),
                        epochs_text(agg[act], "interpolated")] for act in ACTIVATIONS
                       if agg[act]["runs"]])]
    return lines + ["", _speedup_sentence(agg, manifest, paper_numbers.FIGURE1), "",
                    "No training-time ratio is given: the runs' step times include whatever else "
                    "shared the machine while they ran, and a ratio of times needs the step times "
                    "of both activations measured in one run with nothing else on the machine.", ""]


def _speedup_sentence(agg: dict, manifest: dict, fig: dict) -> str:
    paper = (f"The paper: {fig['speedup']:.0f}x (about {fig['relu_epochs']} vs "
             f"{fig['tanh_epochs']} epochs, read off Figure 1, {fig['ref']}).")
    speedup = agg["speedup"]
    if speedup["paired"]:
        n = len(speedup["paired"])
        text = ("**Speed-up of ReLU over tanh (epochs to 25%, tanh / ReLU"
                + (f", over the {n} seeds where both reached it; range of the per-seed ratios"
                   " in brackets" if n > 1 else "")
                + f"): {speedup_text(speedup, 'first')} by the first epoch at or below 25%, "
                f"{speedup_text(speedup, 'interpolated')} interpolated.**")
    else:
        text = ("**Speed-up of ReLU over tanh: not measurable: no seed has both activations at "
                "25% training error.**")
    missing = [f"{act} {seed}" for act in ACTIVATIONS
               for seed, v in agg[act]["first"]["per_seed"].items() if v is None]
    if missing:
        text += (f" Runs that did not reach 25% within {manifest['epochs']} epochs (or "
                 f"diverged): {', '.join(missing)}; their epochs to 25% are more than the cap, "
                 "and they are left out of the means.")
    return text + " " + paper


def _search_section(exp_dir: Path, manifest: dict, search: str) -> list[str]:
    """The learning-rate choice: the trials of each searched activation."""
    if search == "race":
        lines = [f"## Learning-rate race (successive halving from {manifest['search_epochs']} "
                 "epochs)", "",
                 f"Every rate of the grid ({', '.join(f'{x:g}' for x in manifest['lrs'])}) runs "
                 f"{manifest['search_epochs']} epochs; the better half (fewest epochs to "
                 f"{100 * TARGET:.0f}% training error, then the lowest mean training error) runs "
                 "twice as many, and so on, until one rate is left or one reaches 25% (each run "
                 "stops there). The phase column says how far each rate got.", ""]
    else:
        n = manifest['search_epochs']
        lines = [f"## Learning-rate search ({n} epoch{'s' if n != 1 else ''} per trial)", "",
                 "Fastest to the target wins: fewest epochs to "
                 f"{100 * TARGET:.0f}% training error, then the lowest mean training error over "
                 "the trial; diverged runs last. Phases: `grid` = the coarse grid "
                 f"({', '.join(f'{x:g}' for x in manifest['lrs'])}); `extend` = one step beyond "
                 "an edge that was fastest; `refine` = the midpoints around the fastest.", ""]
    seed = manifest.get("seeds", [0])[0]
    rows, edge = [], []
    for act in ACTIVATIONS:
        if act in manifest.get("fixed_lrs", {}):
            continue
        phases = manifest.get("searched", {}).get(act) or {f"{x:g}": "grid"
                                                            for x in manifest["lrs"]}
        trials = {float(lr): curve(search_dir(exp_dir, act, float(lr), seed)) for lr in phases
                  if (search_dir(exp_dir, act, float(lr), seed) / "metrics.jsonl").is_file()}
        if not trials:
            continue
        chosen = manifest.get("chosen", {}).get(act, pick_fastest(trials)[0])
        _, ranked = pick_fastest(trials)
        if len(trials) > 1 and chosen in (min(trials), max(trials)):
            edge.append(f"{act} ({chosen:g})")
        rows += [[act, f"{r['lr']:g}", phases.get(f"{r['lr']:g}", "grid"),
                  r["epochs_to_target"] or "not reached", report.pct(r["mean_error"]),
                  report.pct(r["final_error"]), "yes" if r["diverged"] else "no",
                  "**chosen**" if r["lr"] == chosen else (r["rank"] if search == "grid" else "")]
                 for r in sorted(ranked, key=lambda r: r["lr"])]
    lines += [report.table(["activation", "lr", "phase", "epochs to target",
                            "mean train error %", "last train error %", "diverged", "rank"],
                           rows), ""]
    if edge:
        lines += [f"Note: the rate chosen for {', '.join(edge)} is at the edge of the rates "
                  "tried; a wider `--lrs` may find a faster one.", ""]
    return lines
