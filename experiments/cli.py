"""`alexnet experiment <name>`: the paper's experiments, one command each (§6-§8, Figure 1,
Figures 3-4, docs/paper.md §10). Every command resumes what exists under --runs and ends by writing
a markdown report from the run directories (never edited by hand); `alexnet experiment COMMAND -h`
describes each command.

Exit status: 0 done, 1 failed (a run that failed is named, and recorded in RUN/FAILED), 2 bad
command line, 75 preempted (SIGTERM/SIGINT during training: the checkpoint is written; run the same
command again to resume), as `alexnet train`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from data_prep import exits
from experiments import paper_numbers

# name -> (its line in `alexnet experiment --help`, its description in `alexnet experiment NAME -h`)
COMMANDS = {
    "reproduce": ("§6: train, evaluate, compare with Tables 1-2",
                  "§6, Tables 1 and 2: train a recipe into RUNS/reproduce_<recipe>/run (or take "
                  "--run-dir as it is), evaluate its final checkpoint with one and ten crops, and "
                  "report the errors next to the paper's row and the Caffe and torchvision "
                  "replicas. Prints the 1- and 10-crop errors."),
    "ablate": ("docs/paper.md §8: the ablation table",
               "docs/paper.md §8: train and evaluate the baseline (recipe paper, or --config) "
               "and each variant recipe (its one change put on the baseline's recipe) for each "
               "seed under RUNS/ablate/ (RUNS/ablate_<config>/ for another baseline), then "
               "tabulate each variant's difference from the baseline beside the paper's claim."),
    "relu-vs-tanh": ("§3.1 Figure 1",
                     "§3.1, Figure 1: a learning-rate choice for each activation (ReLU, tanh) on "
                     "the four-layer CIFAR-10 net (a grid search, a race to 25%, or given "
                     "rates), then runs for each seed that stop at 25% training error, and the "
                     "epochs each needed (first epoch at or below 25% and interpolated)."),
    "relu-factors": ("Figure 1: one table of factors from relu-vs-tanh experiments",
                     "Figure 1's factors: read relu-vs-tanh experiment folders (the first is the "
                     "baseline) and write one table: factor -> epochs to 25% for ReLU and tanh "
                     "-> speed-up. Trains nothing."),
    "course-notes": ("docs/paper.md §10: Fashion-MNIST at 224, one tower",
                     "docs/paper.md §10: the single-tower, full-width variant of the course notes, "
                     "trained and evaluated on Fashion-MNIST resized to 224."),
    "figures": ("§6.1 Figures 3 and 4 of a trained run",
                "§6.1: Figure 3 (the conv1 kernels of each tower) and Figure 4 (validation images "
                "and their nearest training images in fc7 space) of a run's final checkpoint."),
    "generate": ("CIFAR-10 / Fashion-MNIST stand-ins, real file formats",
                 "Generated stand-ins for CIFAR-10 (python batches) or Fashion-MNIST (idx files) "
                 "in the official file formats, for trying the pipeline where the real data "
                 "cannot be downloaded. Not the real images."),
}


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _rates(text: str) -> dict[str, float]:
    """--lr relu=0.0017,tanh=0.01 -> {"relu": 0.0017, "tanh": 0.01} (ValueError if malformed)."""
    rates = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        act, _, value = item.partition("=")
        if act.strip() not in ("relu", "tanh") or float(value) <= 0:
            raise ValueError(item)
        rates[act.strip()] = float(value)
    return rates


def _labelled(items: list[str]) -> list[tuple[str, list[Path]]]:
    """LABEL=EXP_DIR[+EXP_DIR] items of relu-factors (ValueError if one has no '=')."""
    out = []
    for item in items:
        label, sep, folders = item.rpartition("=")
        if not sep or not label.strip() or not all(folders.split("+")):
            raise ValueError(item)
        out.append((label.strip(), [Path(f) for f in folders.split("+")]))
    return out


def _seeds(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="prepared dataset ROOT")
    p.add_argument("--runs", required=True, type=Path, help="folder of the experiment's runs")
    p.add_argument("--quiet", action="store_true", help="no per-step training output: one line per "
                   "finished run")
    p.add_argument("--note", default="", help="a sentence for the report, e.g. what the data is "
                   "(default: none)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides applied to every run, e.g. train.epochs=1 "
                   "(`alexnet config` lists every key)")


def _add(sub, name: str) -> argparse.ArgumentParser:
    short, description = COMMANDS[name]
    return sub.add_parser(name, help=short.replace("%", "%%"), description=description)


def _reproduce_options(p) -> None:
    _common(p)
    p.add_argument("--recipe", default="paper", choices=tuple(paper_numbers.RECIPE_ROWS),
                   help="paper (Table 2) or ilsvrc2010 (Table 1) (default: %(default)s)")
    p.add_argument("--run-dir", type=Path, help="evaluate this existing run instead of training "
                   "(default: train RUNS/reproduce_<recipe>/run)")
    p.add_argument("--ensemble", nargs="+", type=Path, default=[], metavar="RUN",
                   help="also evaluate these runs together (softmax average, Table 2's '5 CNNs'; "
                   "default: no ensemble)")
    p.add_argument("--split", help="split to evaluate (default: val; test for ilsvrc2010 when "
                   "the prepared ROOT has one)")


def _ablate_options(p) -> None:
    _common(p)
    p.add_argument("--variants", default=", ".join(paper_numbers.DEFAULT_ABLATIONS),
                   help="comma-separated recipe names (`alexnet config --recipe NAME` shows "
                   "one; default: %(default)s)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default: %(default)s)")
    p.add_argument("--config", default="paper", help="the baseline's recipe (a name in "
                   "experiments/configs or a YAML file); each variant is it plus the variant's "
                   "one change (default: %(default)s)")
    p.add_argument("--baseline-seeds", default="", help="comma-separated seeds the baseline "
                   "alone is also trained with, to show how far seeds alone move it (default: "
                   "none)")
    p.add_argument("--split", default="val", help="split the table is computed on "
                   "(default: %(default)s)")


def _relu_vs_tanh_options(p) -> None:
    _common(p)
    p.add_argument("--arch", default="cifar10_4layer", choices=("cifar10_4layer", "alexnet"),
                   help="the Figure 1 net, or AlexNet itself (default: %(default)s)")
    p.add_argument("--lrs", default="0.0003,0.001,0.003,0.01,0.03",
                   help="comma-separated coarse learning-rate grid for each activation, extended "
                        "past an edge that wins and refined around the winner "
                        "(default: %(default)s)")
    p.add_argument("--search-epochs", type=int, default=3, help="epochs of each search run "
                   "(race: of its first round) (default: %(default)s)")
    p.add_argument("--epochs", type=int, help="most epochs of the full runs, which stop at 25%% "
                   "training error (default: the recipe's train.epochs)")
    p.add_argument("--search", default="grid", choices=("grid", "race"),
                   help="grid: short runs of --search-epochs over --lrs, extended and refined; "
                   "race: every rate of --lrs races to 25%% by successive halving (default: "
                   "%(default)s)")
    p.add_argument("--lr", default="", metavar="ACT=RATE,…",
                   help="rates given, not searched, e.g. relu=0.0017,tanh=0.01 (an activation not "
                   "named is searched; default: search both)")
    p.add_argument("--seeds", default="0", help="comma-separated train.seed values: one full run "
                   "per seed and activation (default: %(default)s)")
    p.add_argument("--activations", default="relu,tanh", help="the activations to run, e.g. relu "
                   "for a ReLU-side factor (default: %(default)s)")


def _relu_factors_options(p) -> None:
    p.add_argument("--out", required=True, type=Path, help="folder for report.md")
    p.add_argument("experiments", nargs="+", metavar="LABEL=EXP_DIR",
                   help="a row label and a relu-vs-tanh experiment folder (RUNS/relu_vs_tanh); "
                   "the first is the baseline; EXP_DIR+EXP_DIR joins experiments of different "
                   "activations into one row")


def _course_notes_options(p) -> None:
    _common(p)
    p.add_argument("--split", default="val", help="split to evaluate (default: %(default)s)")


def _figures_options(p) -> None:
    p.add_argument("--run-dir", required=True, type=Path, help="a trained run directory")
    p.add_argument("--data", required=True, type=Path, help="the prepared dataset ROOT it was "
                   "trained on")
    p.add_argument("--out", type=Path, help="output folder (default: RUN/report)")
    p.add_argument("--queries", type=int, default=5, help="validation images in Figure 4 "
                   "(default: %(default)s)")
    p.add_argument("--neighbours", type=int, default=6, help="nearest training images shown per "
                   "query (default: %(default)s)")
    p.add_argument("--max-train", type=int, default=2000,
                   help="training images searched for neighbours, spread evenly over the split, "
                   "0 = all (default: %(default)s)")
    p.add_argument("--note", default="", help="a sentence for the report, e.g. what the data is "
                   "(default: none)")


def _generate_options(p) -> None:
    p.add_argument("dataset", choices=("cifar10", "fashion-mnist"), help="which stand-in")
    p.add_argument("out", type=Path, help="folder to write the files into (then: alexnet prep "
                   "cifar10|fashion-mnist --input OUT --out ROOT)")
    p.add_argument("--train", type=int, default=5000, help="training images (default: "
                   "%(default)s)")
    p.add_argument("--test", type=int, default=1000, help="test images (default: %(default)s)")
    p.add_argument("--noise", type=float, default=3.0, help="difficulty (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same files "
                   "(default: %(default)s)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="alexnet experiment", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _reproduce_options(_add(sub, "reproduce"))
    _ablate_options(_add(sub, "ablate"))
    _relu_vs_tanh_options(_add(sub, "relu-vs-tanh"))
    _relu_factors_options(_add(sub, "relu-factors"))
    _course_notes_options(_add(sub, "course-notes"))
    _figures_options(_add(sub, "figures"))
    _generate_options(_add(sub, "generate"))
    return top


def run(args) -> Path:
    """Dispatch one parsed command; returns the report (or data folder) written."""
    from experiments import ablate, course_notes, figures, generated, relu_vs_tanh, reproduce
    if args.command == "reproduce":
        return reproduce.run(args.data, args.runs, args.recipe, args.run_dir, args.ensemble,
                             args.split, args.overrides, quiet=args.quiet)
    if args.command == "ablate":
        return ablate.run(args.data, args.runs, [v for v in args.variants.split(",") if v],
                          _seeds(args.seeds), args.overrides, args.split, note=args.note,
                          quiet=args.quiet, base=args.config,
                          baseline_seeds=_seeds(args.baseline_seeds))
    if args.command == "relu-vs-tanh":
        return relu_vs_tanh.run(args.data, args.runs, args.arch, _floats(args.lrs),
                                args.search_epochs, args.epochs, args.overrides, note=args.note,
                                quiet=args.quiet, seeds=_seeds(args.seeds),
                                fixed_lrs=_rates(args.lr), search=args.search,
                                activations=[a.strip() for a in args.activations.split(",")])
    if args.command == "relu-factors":
        from experiments import relu_factors
        return relu_factors.write_report(_labelled(args.experiments), args.out)
    if args.command == "course-notes":
        return course_notes.run(args.data, args.runs, args.overrides, args.split, note=args.note,
                                quiet=args.quiet)
    if args.command == "figures":
        return figures.write_report(args.run_dir, args.data, args.out, args.queries,
                                    args.neighbours, args.max_train or None, note=args.note)
    if args.command == "generate":
        if args.dataset == "cifar10":
            return generated.write_cifar10(args.out, args.train, args.test, args.noise, args.seed)
        return generated.write_fashion_mnist(args.out, args.train, args.test, args.noise,
                                             args.seed)
    raise ValueError(f"unknown experiment {args.command!r}; expected one of {', '.join(COMMANDS)}")


def check(args) -> str | None:
    """What is wrong with a parsed command line, before anything runs (exit 2), or None."""
    from data_prep.files import output_problem
    from experiments import recipes
    from paper_alexnet import config
    base = args.config if args.command == "ablate" else None
    try:
        config.load(base, getattr(args, "overrides", []))
    except config.ConfigError as err:      # names the recipe file or the override
        return str(err)
    for name in args.variants.split(",") if args.command == "ablate" else []:
        if name.strip() and not (config.RECIPE_DIR / f"{name.strip()}.yaml").is_file():
            return (f"--variants: no recipe {name.strip()!r}; recipes: "
                    f"{', '.join(config.recipe_names())}")
        if name.strip():
            try:
                recipes.load_variant(base, name.strip(), args.overrides)
            except config.ConfigError as err:
                return f"--variants {name.strip()} on --config {base}: {err}"
    if args.command == "ablate":
        for flag, text in (("--seeds", args.seeds), ("--baseline-seeds", args.baseline_seeds)):
            if text.strip() and not all(s.strip().isdigit() for s in text.split(",")):
                return f"{flag} {text!r}: expected comma-separated integers, e.g. 0,1,2"
        if not args.seeds.strip():
            return "--seeds '': expected comma-separated integers, e.g. 0,1,2"
    if args.command == "relu-vs-tanh":
        problem = _relu_vs_tanh_problem(args)
        if problem:
            return problem
    if args.command == "relu-factors":
        try:
            labelled = _labelled(args.experiments)
        except ValueError as err:
            return f"{err}: expected LABEL=EXP_DIR, e.g. 'init bias 0.1=WORK/bias0.1/relu_vs_tanh'"
        from experiments import relu_factors
        for _, folders in labelled:       # every folder readable, no activation twice in a row
            try:
                relu_factors.read_row(folders)
            except (OSError, ValueError) as err:
                return str(err)
    if args.command == "generate" and min(args.train, args.test) < 1:
        return f"--train {args.train} --test {args.test}: each must be at least 1"
    attr, flag = {"generate": ("out", "OUT"), "figures": ("out", "--out"),
                  "relu-factors": ("out", "--out")}.get(
        args.command, ("runs", "--runs"))
    problem = getattr(args, attr) is not None and output_problem(getattr(args, attr))
    if problem:
        return f"{flag} {getattr(args, attr)}: {problem}: choose another folder"
    return None


def _relu_vs_tanh_problem(args) -> str | None:
    """relu-vs-tanh's own options, before anything runs."""
    if not all(s.strip().isdigit() for s in args.seeds.split(",")):
        return f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2"
    try:
        if not _floats(args.lrs) or min(_floats(args.lrs)) <= 0:
            raise ValueError
    except ValueError:
        return f"--lrs {args.lrs!r}: expected comma-separated positive numbers, e.g. 0.01,0.03"
    try:
        _rates(args.lr)
    except ValueError:
        return (f"--lr {args.lr!r}: expected ACTIVATION=RATE pairs with positive rates, e.g. "
                "relu=0.0017,tanh=0.01")
    activations = [a.strip() for a in args.activations.split(",")]
    if not activations or not set(activations) <= {"relu", "tanh"} or \
            len(set(activations)) != len(activations):
        return f"--activations {args.activations!r}: expected relu, tanh or relu,tanh"
    if any(o.split("=", 1)[0].strip() == "train.seed" for o in args.overrides):
        return "train.seed=… and --seeds both set the seed: give the seeds with --seeds only"
    return None


def main(argv: list[str] | None = None) -> int:
    from experiments.runner import between_runs
    args = parser().parse_args(argv)
    made = []                       # what run() wrote: the report (or generate's data)

    def work():
        problem = check(args)
        if problem:
            raise exits.UsageError(problem)
        with between_runs():
            made.append(run(args))
    code = exits.run(f"alexnet experiment {args.command}", work, failures=(ValueError,),
                     aborted="aborted by a second Ctrl-C",
                     hints={KeyboardInterrupt: "finished runs and checkpoints are intact (one "
                            "being written is discarded): run the same command to resume"})
    if code == exits.DONE:
        print(f"{'data' if args.command == 'generate' else 'report'}: {made[0]}")
    return code
