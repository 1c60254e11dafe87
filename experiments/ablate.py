"""§3.2-§3.4, §4.1, §4.2, §6, §7: the ablations the paper claims (docs/paper.md §8), measured.

`alexnet experiment ablate --data ROOT --runs DIR [--variants remove_conv3,…] [--seeds 0,1]`
trains the baseline (recipe paper.yaml) and each variant (one recipe per ablation under
experiments/configs/), one run per seed, in RUNS/ablate/<variant>/seed<k>/, resuming what exists;
evaluates each; writes RUNS/ablate/report/report.md: each variant's error, its difference from the
baseline, the paper's claimed difference beside it. "1 crop instead of 10" (§6) needs no training:
it is the baseline's centre-crop error minus its ten-crop error.

Differences are PAIRED by seed: for every seed that both the variant and the baseline have,
d = variant error − baseline error; the table shows the mean of d and, with two or more seeds, its
sample standard deviation (n−1). Same seed = same initial weights where the shapes allow and the
same augmentation draws, so pairing removes part of the seed-to-seed noise.

Nothing is left out: every requested variant has a row, and its status column says what became of
each run without numbers (diverged at epoch N, unfinished, failed: reason, not started;
runner.run_status). A run that fails is recorded and the others still run; the command then exits
1 (runner.RunsFailed). A preempted run writes the report and exits 75 (resume: the same command).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

from experiments import paper_numbers, recipes, report, rundir
from experiments.runner import RunsFailed, run_status, train_and_evaluate, write_manifest
from paper_alexnet import config, preemption

BASELINE = "paper"
RESUME = "the same `alexnet experiment ablate` command"


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) >= 2 else None)


def ablation_table(errors: dict[str, dict[int, dict[str, float]]], baseline: str = BASELINE,
                   metrics=("top1", "top5")) -> list[dict]:
    """Pure function. errors[variant][seed][metric] = error (any unit) -> one row per variant
    (baseline first): {"variant", "seeds", "<m>_mean", "<m>_std", "<m>_diff", "<m>_diff_std",
    "paired"} where diff is the mean over the seeds both runs have of (variant − baseline) and
    diff_std the sample std of those per-seed differences (None with fewer than two)."""
    if baseline not in errors:
        raise ValueError(f"ablation table: no baseline {baseline!r} among {sorted(errors)}")
    base = errors[baseline]
    rows = []
    for variant in [baseline] + sorted(v for v in errors if v != baseline):
        runs = errors[variant]
        paired = sorted(set(runs) & set(base))
        row = {"variant": variant, "seeds": sorted(runs), "paired": paired}
        for m in metrics:
            have = [runs[s][m] for s in sorted(runs) if runs[s].get(m) is not None]
            row[f"{m}_mean"], row[f"{m}_std"] = _mean_std(have) if have else (None, None)
            diffs = [runs[s][m] - base[s][m] for s in paired
                     if runs[s].get(m) is not None and base[s].get(m) is not None]
            row[f"{m}_diff"], row[f"{m}_diff_std"] = _mean_std(diffs) if diffs else (None, None)
        rows.append(row)
    return rows


def _pm(mean, std) -> str:
    """'+1.23 ± 0.45' in percentage points from fractions."""
    if mean is None:
        return "—"
    text = f"{100 * mean:+.2f}"
    return text + (f" ± {100 * std:.2f}" if std is not None else "")


def _claim(variant: str) -> str:
    claim = paper_numbers.ABLATIONS.get(variant)
    return f"{claim.text} ({claim.ref})" if claim else "—"


def run_dir_of(runs: Path, variant: str, seed: int) -> Path:
    return Path(runs) / "ablate" / variant / f"seed{seed}"


def collect(exp_dir: Path, variants: list[str], seeds: list[int], view: str,
            split: str | None = None) -> dict:
    """errors[variant][seed] = {"top1", "top5"} of one view, from each run's result.json (of
    `split` when given); every variant asked for is a key, {} when none of its runs has numbers."""
    errors = {}
    for variant in [BASELINE, *variants]:
        errors.setdefault(variant, {})
        for seed in seeds:
            result = rundir.read_result(exp_dir / variant / f"seed{seed}")
            if split is not None and result and result.get("split") != split:
                continue
            top1, top5 = report.result_errors(result, view)
            if top1 is not None:
                errors[variant][seed] = {"top1": top1, "top5": top5}
    return errors


def status_text(exp_dir: Path, variant: str, seeds: list[int], split: str) -> str:
    """'finished', or what became of each run of the variant that is not finished."""
    words = {seed: run_status(exp_dir / variant / f"seed{seed}", split, RESUME)
             for seed in seeds}
    return "; ".join(f"seed {seed}: {text}" for seed, (state, text) in words.items()
                     if state != "finished") or "finished"


def write_report(exp_dir: Path, manifest: dict, out_dir: Path | None = None) -> Path:
    """RUNS/ablate/report/report.md from the runs' result.json and metrics.jsonl."""
    out_dir = Path(out_dir or exp_dir / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    variants, seeds, split = manifest["variants"], manifest["seeds"], manifest["split"]
    view = "ten_crop" if manifest.get("ten_crop", True) else "center"
    errors = collect(exp_dir, variants, seeds, view, split)
    lines = ["# Ablations (docs/paper.md §8)", "",
             "Generated by `alexnet experiment ablate` (regenerate: `alexnet report "
             f"RUNS/{exp_dir.name}`); not edited by hand. Data: "
             f"`{report.shown_path(manifest['data'])}`. Seeds: "
             f"{', '.join(map(str, seeds))}. Overrides: "
             f"{', '.join(manifest['overrides']) or 'none'}. Errors in percent, on the "
             f"{split} split, {'ten crops' if view == 'ten_crop' else 'centre crop'}.",
             "", "Differences are variant − baseline, paired by seed; ± is the sample standard "
             "deviation of the per-seed differences (shown with two or more seeds). 'seeds' "
             "counts the evaluated runs; 'status' says what became of the others.", ""]
    if not errors[BASELINE]:
        lines += ["No evaluated baseline run yet: no differences to show.", ""]
    rows = []
    for row in ablation_table(errors):
        v = row["variant"]
        rows.append([v, len(row["seeds"]), report.pct(row["top1_mean"]),
                     report.pct(row["top5_mean"]),
                     "—" if v == BASELINE else _pm(row["top1_diff"], row["top1_diff_std"]),
                     "—" if v == BASELINE else _pm(row["top5_diff"], row["top5_diff_std"]),
                     "(baseline)" if v == BASELINE else _claim(v),
                     status_text(exp_dir, v, seeds, split)])
    one_crop = collect(exp_dir, [], seeds, "center", split)[BASELINE]
    ten = collect(exp_dir, [], seeds, "ten_crop", split)[BASELINE]
    if one_crop and ten:
        row = ablation_table({BASELINE: ten, "one_crop": one_crop})[1]
        rows.append(["one_crop (baseline, evaluation only)", len(row["seeds"]),
                     report.pct(row["top1_mean"]), report.pct(row["top5_mean"]),
                     _pm(row["top1_diff"], row["top1_diff_std"]),
                     _pm(row["top5_diff"], row["top5_diff_std"]), _claim("one_crop"),
                     "from the baseline's runs"])
    lines.append(report.table(["variant", "seeds", "top-1 %", "top-5 %", "Δ top-1 (pp)",
                               "Δ top-5 (pp)", "paper's claim (pp)", "status"], rows))
    if manifest.get("note"):
        lines += ["", manifest["note"]]
    lines += ["", "## Runs", ""]
    for variant in [BASELINE, *variants]:
        for seed in seeds:
            d = exp_dir / variant / f"seed{seed}"
            if (d / "config.yaml").is_file():
                s = rundir.summarise(d)
                lines += [f"### {variant}, seed {seed}", "",
                          f"Status: {run_status(d, split, RESUME)[1]}.", "",
                          f"Config changes from the paper: {report.diff_text(s['config'])}.", "",
                          report.timing_line(s), "",
                          report.curves_section(s, out_dir, f"{variant}_seed{seed}"), ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(data_root, runs, variants=paper_numbers.DEFAULT_ABLATIONS, seeds=(0,), overrides=(),
        split: str = "val", note: str = "", quiet: bool = False) -> Path:
    """Train and evaluate the baseline and each variant for each seed; write the report. A run
    that fails is recorded (RUN/FAILED) and the others still run; then RunsFailed. Preempted:
    the report is written, then the exception goes on (exit 75)."""
    variants = [v.strip() for v in variants]
    variants = list(dict.fromkeys(v for v in variants if v and v != BASELINE))
    for v in variants:
        config.find_config(v)             # fail before training anything if a name is wrong
    exp_dir = Path(runs) / "ablate"
    cfg0 = recipes.load_recipe(BASELINE, overrides)
    manifest = {"kind": "ablate", "data": str(data_root), "variants": variants,
                "seeds": [int(s) for s in seeds], "overrides": list(overrides), "split": split,
                "ten_crop": cfg0.eval.ten_crop, "note": note}
    write_manifest(exp_dir, manifest)
    failed = []
    try:
        for variant in [BASELINE, *variants]:
            for seed in seeds:
                cfg = recipes.load_recipe(variant, [*overrides, f"train.seed={seed}"])
                try:
                    train_and_evaluate(cfg, data_root, run_dir_of(runs, variant, seed), split,
                                       quiet=quiet)
                except preemption.Preempted:
                    raise
                except Exception as err:  # recorded in RUN/FAILED; the other runs go on
                    print(f"alexnet experiment ablate: {variant} seed {seed} failed: "
                          f"{type(err).__name__}: {err}", file=sys.stderr)
                    failed.append(f"{variant} seed {seed}")
    finally:
        path = write_report(exp_dir, manifest)
    if failed:
        raise RunsFailed(f"{len(failed)} run(s) failed ({', '.join(failed)}); the report {path} "
                         "says why, the other runs are done")
    return path
