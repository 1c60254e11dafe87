"""§6, Tables 1 and 2: train the paper's network, evaluate it with one and ten crops, and set the
numbers beside the paper's row and the public replicas.

`alexnet experiment reproduce --data ROOT --runs DIR [--recipe paper] [--run-dir EXISTING]
[--ensemble RUN1 RUN2 …] [--split val|test]` writes RUNS/reproduce_<recipe>/:
run/ (the run, unless --run-dir names an existing one, which is evaluated as it is, not trained),
ensemble_result.json (with --ensemble: the softmax average of the runs' final checkpoints, like
Table 2's "5 CNNs"), report/report.md.
"""
from __future__ import annotations

import json
from pathlib import Path

from experiments import paper_numbers, recipes, report, rundir
from experiments.runner import (evaluate_into, final_checkpoint, is_evaluated, train_and_evaluate,
                                write_manifest)


def _resolve(exp_dir: Path, path: str | None) -> Path:
    """The run: EXP/run when the experiment trained it, else the --run-dir given (as given)."""
    return exp_dir / "run" if path is None else Path(path)


def run(data_root, runs, recipe: str = "paper", run_dir=None, ensemble=(), split=None,
        overrides=(), quiet: bool = False) -> Path:
    """Train (or take `run_dir`), evaluate, evaluate the ensemble if asked, write the report."""
    exp_dir = Path(runs) / f"reproduce_{recipe}"
    if split is None:
        split = "test" if recipe == "ilsvrc2010" and (Path(data_root) / "test").is_dir() else "val"
    if run_dir is None:
        cfg = recipes.load_recipe(recipe, overrides)
        train_and_evaluate(cfg, data_root, exp_dir / "run", split, quiet=quiet)
        run_ref = None
    else:
        run_dir = Path(run_dir)
        cfg = rundir.read_config(run_dir)
        if not is_evaluated(run_dir, split):
            evaluate_into([final_checkpoint(run_dir)], data_root, split, cfg.eval.ten_crop,
                          run_dir / "result.json")
        run_ref = str(run_dir)
    members = [str(d) for d in ensemble]
    if members:
        ten_crop = rundir.read_config(members[0]).eval.ten_crop
        evaluate_into([final_checkpoint(d) for d in members], data_root, split, ten_crop,
                      exp_dir / "ensemble_result.json")
    manifest = {"kind": "reproduce", "recipe": recipe, "data": str(data_root), "split": split,
                "run_dir": run_ref, "ensemble": members, "overrides": list(overrides)}
    write_manifest(exp_dir, manifest)
    path = write_report(exp_dir, manifest)
    print(errors_text(exp_dir, manifest))
    return path


def errors_text(exp_dir: Path, manifest: dict) -> str:
    """The numbers of the report in a few lines: our 1- and 10-crop errors, the paper's row."""
    run_dir = _resolve(exp_dir, manifest["run_dir"])
    results = [(str(run_dir), rundir.read_result(run_dir))]
    if manifest.get("ensemble") and (exp_dir / "ensemble_result.json").is_file():
        results.append((f"ensemble of {len(manifest['ensemble'])}",
                        json.loads((exp_dir / "ensemble_result.json").read_text())))
    lines = []
    for label, result in results:
        lines.append(f"{label}: {result.get('split', '?')}, {result.get('images', '?')} images"
                     if result else f"{label}: not evaluated")
        for view, crops in (("center", "1 crop "), ("ten_crop", "10 crops")):
            top1, top5 = report.result_errors(result, view)
            if top1 is not None:
                lines.append(f"  {crops}  top-1 error {report.pct(top1)}%   top-5 error "
                             f"{report.pct(top5)}%")
    for key in paper_numbers.RECIPE_ROWS.get(manifest["recipe"], ()):
        if key:
            r = paper_numbers.PAPER_ROWS[key]
            lines.append(f"  the paper, {r.name}, {r.dataset} {r.split}, {r.crops} crop(s): "
                         f"top-1 {r.top1}%   top-5 {r.top5}%")
    return "\n".join(lines)


def _ours(label: str, result: dict | None) -> list[list]:
    rows = []
    for view, crops in (("center", 1), ("ten_crop", 10)):
        top1, top5 = report.result_errors(result, view)
        if top1 is not None:
            rows.append([label, result.get("split", "—"), crops, report.pct(top1),
                         report.pct(top5), result.get("images", "—")])
    return rows


def write_report(exp_dir: Path, manifest: dict, out_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir or exp_dir / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dir = _resolve(exp_dir, manifest["run_dir"])
    summary = rundir.summarise(run_dir)
    result = summary["result"]
    rows = _ours(f"ours: {run_dir.name} ({manifest['recipe']})", result)
    ens_path = exp_dir / "ensemble_result.json"
    if manifest.get("ensemble") and ens_path.is_file():
        ens = json.loads(ens_path.read_text())
        rows += _ours(f"ours: ensemble of {len(manifest['ensemble'])} (softmax average)", ens)
    keys = paper_numbers.RECIPE_ROWS.get(manifest["recipe"], ("ilsvrc2012_1cnn", None))
    paper_rows = [paper_numbers.PAPER_ROWS[k] for k in keys if k]
    if manifest["recipe"] != "ilsvrc2010":
        paper_rows += [paper_numbers.PAPER_ROWS["ilsvrc2012_5cnn"]]
        paper_rows += list(paper_numbers.REPLICAS.values())
    for r in paper_rows:
        rows.append([f"{r.name} [{r.ref}]", f"{r.dataset} {r.split}", r.crops, r.top1, r.top5,
                     "—"])
    epochs = result.get("epochs", ["—"])[0] if result else "—"
    lines = ["# Reproduction (§6, Tables 1 and 2)", "",
             f"Generated by `alexnet experiment reproduce --recipe {manifest['recipe']}` "
             f"(regenerate: `alexnet report RUNS/{exp_dir.name}`); not edited by hand.", "",
             f"- Data: `{report.shown_path(manifest['data'])}`, split `{manifest['split']}`. Run: "
             f"`{report.shown_path(run_dir)}` "
             f"(final checkpoint, epoch {epochs}; never the best on the reported split).",
             f"- Config changes from the paper: {report.diff_text(summary['config'])}.",
             f"- {report.timing_line(summary)}", "",
             "## Errors (%)", "",
             report.table(["who", "split", "crops", "top-1", "top-5", "images"], rows), "",
             "Our rows are measured on the data named above; the paper's and the replicas' are "
             "on the real ILSVRC sets. At a scale other than the paper's (a synthetic or small "
             "set, few epochs) they measure that the pipeline runs, not the paper's claim.", "",
             "## Curves", "", report.curves_section(summary, out_dir, run_dir.name)]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
