"""`alexnet report EXP_DIR | RUN_DIR… [--out DIR]`: regenerate a report (§6-§8, Figure 1) from
run directories, never edited by hand (docs/experiments.md).

Given the folder of an `alexnet experiment` (it holds experiment.json), that experiment's report,
written to its own EXP_DIR/report/; given run directories, a report of those runs, written to the
first one's report/. Beside the report, OUT/record/ keeps a copy of what it was made from (each
run's config.yaml, metrics.jsonl and result.json, and experiment.json; no checkpoints, no local
paths) under the folder's own name, so a committed report is regenerated from itself: `alexnet
report OUT/record/EXP --out OUT` (an experiment) or `alexnet report OUT/record/RUN… --out OUT`.
Everything is read and checked before anything is written, and nothing is ever written into a
prepared dataset. Exit status: 0 written, 1 failed, 2 bad command line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data_prep import exits
from data_prep.files import output_problem
from experiments import ablate, course_notes, relu_vs_tanh, report, reproduce, rundir

WRITERS = {"reproduce": reproduce.write_report, "ablate": ablate.write_report,
           "relu_vs_tanh": relu_vs_tanh.write_report, "course_notes": course_notes.write_report}


def regenerate(exp_dir: Path, manifest: dict, out: Path | None = None) -> Path:
    """Rewrite an experiment's report from its runs and experiment.json."""
    kind = manifest.get("kind")
    if kind not in WRITERS:
        raise ValueError(f"{exp_dir}/experiment.json: unknown kind {kind!r}; expected one of "
                         f"{', '.join(WRITERS)}")
    return WRITERS[kind](Path(exp_dir), manifest, out)


def prepared_dataset(path: Path) -> Path | None:
    """The prepared dataset (a ROOT, or one of its splits) that `path` is or lies in, or None."""
    for folder in [path, *path.parents]:
        if (folder / "manifest.json").is_file() or any(
                (folder / split / "manifest.json").is_file() for split in ("train", "val")):
            return folder
    return None


def record_names(runs: list[Path]) -> list[str]:
    """Each run's folder in OUT/record: its name, or as many of its last path components as keep
    the names apart (ablate/paper/seed0 and ablate/no_lrn/seed0: paper/seed0, no_lrn/seed0)."""
    parts = [d.resolve().parts for d in runs]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return names          # the same folder given twice: one record


def problem(runs: list[Path], out: Path | None) -> str | None:
    """What is wrong with the command line (exit 2), or None."""
    for d in runs:
        if not d.is_dir():
            return f"{d} is not a directory: pass an experiment folder or run directories"
        if prepared_dataset(d.resolve()) is not None:
            return (f"{d} is a prepared dataset, not a run directory: pass the runs (e.g. "
                    "RUNS/ablate or RUNS/ablate/no_lrn/seed0)")
        if not (d / "config.yaml").is_file() and not (d / "experiment.json").is_file():
            return (f"{d} holds neither experiment.json nor config.yaml: pass the folder of an "
                    "`alexnet experiment` or a directory trained by `alexnet train`")
    if len(runs) > 1 and any((d / "experiment.json").is_file() for d in runs):
        return "an experiment folder is reported alone: pass one experiment folder, or runs only"
    target = out if out is not None else runs[0] / "report"
    dataset = prepared_dataset(target.resolve())
    if dataset is not None:
        return f"--out {target} lies in the prepared dataset {dataset}: choose another folder"
    why = output_problem(target)
    if why:
        return f"--out {target}: {why}: choose another folder"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alexnet report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="EXP_DIR | RUN_DIR",
                        help="the folder of an `alexnet experiment` (holds experiment.json), or "
                        "run directories")
    parser.add_argument("--out", type=Path, help="output folder (default: EXP_DIR/report, or the "
                        "first RUN_DIR's report/)")
    args = parser.parse_args(argv)
    made = []

    def work():
        bad = problem(args.runs, args.out)
        if bad:
            raise exits.UsageError(bad)
        manifest = args.runs[0] / "experiment.json"
        if manifest.is_file():
            made.append(regenerate(args.runs[0], json.loads(manifest.read_text()), args.out))
            exp = args.runs[0]
            rundir.copy_record(exp, made[0].parent / "record" / exp.resolve().name)
            return
        made.append(report.runs_report(args.runs, args.out or args.runs[0] / "report"))
        for d, name in zip(args.runs, record_names(args.runs)):
            rundir.copy_record(d, made[0].parent / "record" / name)
        for d in args.runs:
            if not (d / "result.json").is_file():
                print(f"note: {d} has no result.json (not evaluated): "
                      f"{report.NOT_EVALUATED_HINT.replace('RUN', str(d), 1)}", file=sys.stderr)
    code = exits.run("alexnet report", work, failures=(ValueError,))
    if code == exits.DONE:
        print(f"report: {made[0]}")
    return code

if __name__ == "__main__":
    raise SystemExit(main())
