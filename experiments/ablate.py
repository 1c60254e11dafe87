"""§3.2-§3.4, §4.1, §4.2, §6, §7: the ablations the paper claims (docs/paper.md §8), measured.

`alexnet experiment ablate --data ROOT --runs DIR [--variants remove_conv3,…] [--seeds 0,1]
[--config BASE] [--baseline-seeds 1]` trains the baseline (recipe paper.yaml, or BASE) and each
variant (one recipe per ablation under experiments/configs/, its one change put on BASE:
recipes.load_variant), one run per seed, in RUNS/ablate/<variant>/seed<k>/ (RUNS/ablate_<BASE>/
for another base, whose baseline folder is <BASE>), resuming what exists; evaluates each; writes
report/report.md there: each variant's error, its difference from the baseline, the paper's
claimed difference beside it. "1 crop instead of 10" (§6) needs no training: it is the
baseline's centre-crop error minus its ten-crop error. --baseline-seeds trains the baseline alone
at more seeds, so that the report can say how far two seeds of the same recipe lie apart.

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
from paper_alexnet import config
from paper_alexnet.run import preemption

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


def base_name(base: str) -> str:
    """The baseline's folder and row name: the recipe's name (a YAML path: its file stem)."""
    return Path(base).name.removesuffix(".yaml")


def exp_dir_of(runs: Path, base: str = BASELINE) -> Path:
    """RUNS/ablate for the paper's recipe, RUNS/ablate_<base> for another base recipe."""
    name = base_name(base)
    return Path(runs) / ("ablate" if name == BASELINE else f"ablate_{name}")


def _layout(manifest: dict) -> tuple[str, list[int], list[int]]:
    """(baseline name, variant seeds, baseline seeds) of an experiment.json."""
    seeds = [int(s) for s in manifest["seeds"]]
    return (base_name(manifest.get("base", BASELINE)), seeds,
            sorted(set(seeds) | set(manifest.get("baseline_seeds", []))))


def collect(exp_dir: Path, variants: list[str], seeds: list[int], view: str,
            split: str | None = None, baseline: str = BASELINE,
            baseline_seeds: list[int] | None = None) -> dict:
    """errors[variant][seed] = {"top1", "top5"} of one view, from each run's result.json (of
    `split` when given); every variant asked for is a key, {} when none of its runs has numbers.
    The baseline's runs are those of `baseline_seeds` (default: `seeds`)."""
    errors = {}
    for variant in [baseline, *variants]:
        errors.setdefault(variant, {})
        for seed in (baseline_seeds or seeds) if variant == baseline else seeds:
            result = rundir.read_result(exp_dir / variant / f"seed{seed}")
            if split is not None and result and result.get("split") != split:
                continue
            top1, top5 = report.result_errors(result, view)
            if top1 is not None:
                errors[variant][seed] = {"top1": top1, "top5": top5}
    return errors


def seed_spread(runs: dict[int, dict[str, float]]) -> dict | None:
    """Pure function: {"top1", "top5"}: largest − smallest error over the seeds of one recipe,
    or None with fewer than two seeds."""
    if len(runs) < 2:
        return None
    return {m: max(r[m] for r in runs.values()) - min(r[m] for r in runs.values())
            for m in ("top1", "top5")}


def status_text(exp_dir: Path, variant: str, seeds: list[int], split: str) -> str:
    """'finished', or what became of each run of the variant that is not finished."""
    words = {seed: run_status(exp_dir / variant / f"seed{seed}", split, RESUME)
             for seed in seeds}
    return "; ".join(f"seed {seed}: {text}" for seed, (state, text) in words.items()
                     if state != "finished") or "finished"


def runs_section(exp_dir: Path, manifest: dict, out_dir: Path) -> list[str]:
    """Each run's status, result, config changes, cost and curves (plots go into out_dir)."""
    base, seeds, base_seeds = _layout(manifest)
    lines = []
    for variant in [base, *manifest["variants"]]:
        for seed in base_seeds if variant == base else seeds:
            d = exp_dir / variant / f"seed{seed}"
            if (d / "config.yaml").is_file():
                s = rundir.summarise(d)
                lines += [f"### {variant}, seed {seed}", "",
                          f"Status: {run_status(d, manifest['split'], RESUME)[1]}.", "",
                          report.evaluation_line(s.get("result")), "",
                          f"Config changes from the paper: {report.diff_text(s['config'])}.", "",
                          report.timing_line(s), "",
                          report.curves_section(s, out_dir, f"{variant}_seed{seed}"), ""]
    return lines


def write_report(exp_dir: Path, manifest: dict, out_dir: Path | None = None) -> Path:
    """RUNS/ablate/report/report.md from the runs' result.json and metrics.jsonl."""
    out_dir = Path(out_dir or exp_dir / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    variants, split = manifest["variants"], manifest["split"]
    base, seeds, base_seeds = _layout(manifest)
    view = "ten_crop" if manifest.get("ten_crop", True) else "center"
    errors = collect(exp_dir, variants, seeds, view, split, base, base_seeds)
    lines = _header(exp_dir, manifest, base, seeds, base_seeds, view)
    if not errors[base]:
        lines += ["No evaluated baseline run yet: no differences to show.", ""]
    rows = [_row(exp_dir, row, base, base_seeds if row["variant"] == base else seeds, split)
            for row in ablation_table(errors, base)]
    one_crop = collect(exp_dir, [], base_seeds, "center", split, base)[base]
    ten = collect(exp_dir, [], base_seeds, "ten_crop", split, base)[base]
    if one_crop and ten:
        row = ablation_table({base: ten, "one_crop": one_crop}, base)[1]
        rows.append(["one_crop (baseline, evaluation only)", len(row["seeds"]),
                     report.pct(row["top1_mean"]), report.pct(row["top5_mean"]),
                     _pm(row["top1_diff"], row["top1_diff_std"]),
                     _pm(row["top5_diff"], row["top5_diff_std"]), _claim("one_crop"),
                     "from the baseline's runs"])
    lines.append(report.table(["variant", "seeds", "top-1 %", "top-5 %", "Δ top-1 (pp)",
                               "Δ top-5 (pp)", "paper's claim (pp)", "status"], rows))
    lines += _seed_lines(errors[base])
    lines += ["", "## Runs", "", *runs_section(exp_dir, manifest, out_dir)]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _header(exp_dir: Path, manifest: dict, base: str, seeds, base_seeds, view: str) -> list:
    """The report's title and the paragraph that says what was run on what."""
    extra = [s for s in base_seeds if s not in seeds]
    lines = ["# Ablations (docs/paper.md §8)", "",
             "Generated by `alexnet experiment ablate` (regenerate: `alexnet report "
             f"RUNS/{exp_dir.name}`); not edited by hand. Data: "
             f"`{report.shown_path(manifest['data'])}`. Baseline: recipe `{base}`"
             + ("" if base == BASELINE else "; each variant is that recipe with the variant "
                "recipe's one change") + f". Seeds: {', '.join(map(str, seeds))}"
             + (f" (the baseline also {', '.join(map(str, extra))})" if extra else "")
             + f". Overrides: {', '.join(manifest['overrides']) or 'none'}. Errors in percent, "
             f"on the {manifest['split']} split, "
             f"{'ten crops' if view == 'ten_crop' else 'centre crop'}.",
             "", "Differences are variant − baseline, paired by seed; ± is the sample standard "
             "deviation of the per-seed differences (shown with two or more seeds). 'seeds' "
             "counts the evaluated runs; 'status' says what became of the others.", ""]
    return lines + ([manifest["note"], ""] if manifest.get("note") else [])


def _row(exp_dir: Path, row: dict, base: str, seeds, split: str) -> list:
    """One variant's line of the table (the baseline's has no difference)."""
    v = row["variant"]
    return [v, len(row["seeds"]), report.pct(row["top1_mean"]), report.pct(row["top5_mean"]),
            "—" if v == base else _pm(row["top1_diff"], row["top1_diff_std"]),
            "—" if v == base else _pm(row["top5_diff"], row["top5_diff_std"]),
            "(baseline)" if v == base else _claim(v), status_text(exp_dir, v, seeds, split)]


def _seed_lines(base_errors: dict) -> list:
    """How far apart the baseline's seeds lie: the size of a difference a seed alone gives."""
    spread = seed_spread(base_errors)
    if not spread:
        return []
    return ["", f"Seed to seed: the baseline's {len(base_errors)} evaluated seeds lie "
            f"{100 * spread['top1']:.2f} points apart in top-1 and "
            f"{100 * spread['top5']:.2f} in top-5 (largest − smallest; "
            + ", ".join(f"seed {s}: {report.pct(e['top1'])} / {report.pct(e['top5'])}"
                        for s, e in sorted(base_errors.items()))
            + "). A variant's difference of that size is what a change of seed alone gives."]


def run(data_root, runs, variants=paper_numbers.DEFAULT_ABLATIONS, seeds=(0,), overrides=(),
        split: str = "val", note: str = "", quiet: bool = False, base: str = BASELINE,
        baseline_seeds=()) -> Path:
    """Train and evaluate the baseline (recipe `base`) for each seed of `seeds` and
    `baseline_seeds`, and each variant (its change on `base`) for each seed of `seeds`; write the
    report. A run that fails is recorded (RUN/FAILED) and the others still run; then RunsFailed.
    Preempted: the report is written, then the exception goes on (exit 75)."""
    name = base_name(base)
    variants = [v.strip() for v in variants]
    variants = list(dict.fromkeys(v for v in variants if v and v not in (BASELINE, name)))
    for v in [base, *variants]:
        config.find_config(v)             # fail before training anything if a name is wrong
    exp_dir = exp_dir_of(runs, base)
    cfg0 = recipes.load_recipe(base, overrides)
    manifest = {"kind": "ablate", "data": str(data_root), "variants": variants,
                "seeds": [int(s) for s in seeds], "overrides": list(overrides), "split": split,
                "ten_crop": cfg0.eval.ten_crop, "note": note, "base": base,
                "baseline_seeds": sorted({int(s) for s in [*seeds, *baseline_seeds]})}
    write_manifest(exp_dir, manifest)
    _, seeds, base_seeds = _layout(manifest)
    failed = []
    try:
        for variant in [name, *variants]:
            for seed in base_seeds if variant == name else seeds:
                cfg = recipes.load_variant(base, variant if variant != name else base,
                                           [*overrides, f"train.seed={seed}"])
                try:
                    train_and_evaluate(cfg, data_root, exp_dir / variant / f"seed{seed}", split,
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
