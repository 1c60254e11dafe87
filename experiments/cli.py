"""`alexnet experiment <name>`: the paper's experiments, one command each (§6-§8, Figure 1,
Figures 3-4, docs/paper.md §10). Every command resumes what exists under --runs and ends by writing
a markdown report from the run directories (never edited by hand).

  reproduce     §6 Tables 1-2: train the paper's net, one and ten crops, vs the paper and replicas
  ablate        docs/paper.md §8: baseline + variants, one or more seeds, the ablation table
  relu-vs-tanh  §3.1 Figure 1: learning-rate search per activation, then epochs to 25% train error
  course-notes  docs/paper.md §10: single tower on Fashion-MNIST at 224
  figures       §6.1 Figures 3 and 4 of a trained run
  generate      CIFAR-10 / Fashion-MNIST stand-ins in the real file formats (no download here)

Exit status: 0 done, 1 failed (a run that failed is named, and recorded in RUN/FAILED), 2 bad
command line, 75 preempted (SIGTERM/SIGINT during training: the checkpoint is written; run the same
command again to resume), as `alexnet train`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments import paper_numbers

COMMANDS = ("reproduce", "ablate", "relu-vs-tanh", "course-notes", "figures", "generate")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="prepared dataset ROOT")
    p.add_argument("--runs", required=True, type=Path, help="folder of the experiment's runs")
    p.add_argument("--quiet", action="store_true", help="no per-step training output")
    p.add_argument("--note", default="", help="a sentence for the report (e.g. what the data is)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides applied to every run (e.g. train.epochs=1)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="alexnet experiment", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("reproduce", help="§6: train, evaluate, compare with Tables 1-2")
    _common(p)
    p.add_argument("--recipe", default="paper", help="paper (Table 2) or ilsvrc2010 (Table 1)")
    p.add_argument("--run-dir", type=Path, help="evaluate this existing run instead of training")
    p.add_argument("--ensemble", nargs="+", type=Path, default=[], metavar="RUN",
                   help="also evaluate these runs together (softmax average, Table 2 '5 CNNs')")
    p.add_argument("--split", help="split to evaluate (default val; test for ilsvrc2010)")
    p = sub.add_parser("ablate", help="docs/paper.md §8: the ablation table")
    _common(p)
    p.add_argument("--variants", default=",".join(paper_numbers.DEFAULT_ABLATIONS),
                   help="comma-separated recipe names (default: %(default)s)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--split", default="val")
    p = sub.add_parser("relu-vs-tanh", help="§3.1 Figure 1")
    _common(p)
    p.add_argument("--arch", default="cifar10_4layer", choices=("cifar10_4layer", "alexnet"))
    p.add_argument("--lrs", default="0.0003,0.001,0.003,0.01,0.03",
                   help="coarse learning-rate grid, extended past an edge that wins and refined "
                        "around the winner (default: %(default)s)")
    p.add_argument("--search-epochs", type=int, default=3,
                   help="epochs of each search run (default: %(default)s)")
    p.add_argument("--epochs", type=int, help="epochs of the full runs (default: the recipe's)")
    p = sub.add_parser("course-notes", help="docs/paper.md §10: Fashion-MNIST at 224, one tower")
    _common(p)
    p.add_argument("--split", default="val")
    p = sub.add_parser("figures", help="§6.1 Figures 3 and 4 of a trained run")
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", type=Path, help="default: RUN/report")
    p.add_argument("--queries", type=int, default=5)
    p.add_argument("--neighbours", type=int, default=6)
    p.add_argument("--max-train", type=int, default=2000,
                   help="training images searched for neighbours (0 = all)")
    p = sub.add_parser("generate", help="CIFAR-10 / Fashion-MNIST stand-ins, real file formats")
    p.add_argument("dataset", choices=("cifar10", "fashion-mnist"))
    p.add_argument("out", type=Path)
    p.add_argument("--train", type=int, default=5000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--noise", type=float, default=3.0, help="difficulty (default 3.0)")
    p.add_argument("--seed", type=int, default=0)
    return top


def run(args) -> Path:
    """Dispatch one parsed command; returns the report (or data folder) written."""
    from experiments import ablate, course_notes, figures, generated, relu_vs_tanh, reproduce
    if args.command == "reproduce":
        return reproduce.run(args.data, args.runs, args.recipe, args.run_dir, args.ensemble,
                             args.split, args.overrides, quiet=args.quiet)
    if args.command == "ablate":
        return ablate.run(args.data, args.runs, [v for v in args.variants.split(",") if v],
                          [int(s) for s in args.seeds.split(",") if s.strip()], args.overrides,
                          args.split, note=args.note, quiet=args.quiet)
    if args.command == "relu-vs-tanh":
        return relu_vs_tanh.run(args.data, args.runs, args.arch, _floats(args.lrs),
                                args.search_epochs, args.epochs, args.overrides, note=args.note,
                                quiet=args.quiet)
    if args.command == "course-notes":
        return course_notes.run(args.data, args.runs, args.overrides, args.split, note=args.note,
                                quiet=args.quiet)
    if args.command == "figures":
        return figures.write_report(args.run_dir, args.data, args.out, args.queries,
                                    args.neighbours, args.max_train or None)
    if args.command == "generate":
        if args.dataset == "cifar10":
            return generated.write_cifar10(args.out, args.train, args.test, args.noise, args.seed)
        return generated.write_fashion_mnist(args.out, args.train, args.test, args.noise,
                                             args.seed)
    raise ValueError(f"unknown experiment {args.command!r}; expected one of {COMMANDS}")


def regenerate(exp_dir: Path, manifest: dict, out: Path | None = None) -> Path:
    """Rewrite an experiment's report from its runs (`alexnet report EXP_DIR`)."""
    from experiments import ablate, course_notes, relu_vs_tanh, reproduce
    writers = {"reproduce": reproduce.write_report, "ablate": ablate.write_report,
               "relu_vs_tanh": relu_vs_tanh.write_report,
               "course_notes": course_notes.write_report}
    kind = manifest.get("kind")
    if kind not in writers:
        raise ValueError(f"{exp_dir}/experiment.json: unknown kind {kind!r}; expected one of "
                         f"{', '.join(writers)}")
    return writers[kind](Path(exp_dir), manifest, out)


def main(argv: list[str] | None = None) -> int:
    from data_prep.shards import FormatError
    from paper_alexnet.checkpoint import CheckpointError
    from paper_alexnet.config import ConfigError
    from paper_alexnet.evaluate import EvaluationError
    from paper_alexnet.preemption import EXIT_PREEMPTED, Preempted
    from experiments.runner import RunsFailed, between_runs
    args = parser().parse_args(argv)
    try:
        with between_runs():
            path = run(args)
    except Preempted as err:      # a resumable stop, as `alexnet train` reports it
        print(f"alexnet experiment {args.command}: {err}", file=sys.stderr)
        return EXIT_PREEMPTED
    except (ConfigError, FileNotFoundError, ValueError, FormatError, CheckpointError,
            EvaluationError, RunsFailed) as err:
        print(f"alexnet experiment {args.command}: {err}", file=sys.stderr)
        return 1
    print(f"{'data' if args.command == 'generate' else 'report'}: {path}")
    return 0
