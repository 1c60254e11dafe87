"""Figure 1's factors: one table of what each factor does to epochs to 25% and to the speed-up.

`alexnet experiment relu-factors --out DIR LABEL=EXP[+EXP] …` reads relu-vs-tanh experiments
(each EXP a folder `alexnet experiment relu-vs-tanh` wrote, with its experiment.json; the first is
the baseline; a row may join experiments of different activations with '+') and writes
DIR/report.md: per factor, epochs to 25% running training error for ReLU and tanh (mean and
range over the seeds, read both ways: the first epoch at or below 25% and interpolated) and the
speed-up (tanh / ReLU). A factor that concerns one activation only (a
ReLU-side factor such as positive initial biases) is run for that activation only; its row takes
the other activation's runs from the baseline and says so. make_examples.sh `relu-factors` runs
the factors and this table.
"""
from __future__ import annotations

import json
from pathlib import Path

from experiments import paper_numbers, relu_vs_tanh, report
from experiments.relu_vs_tanh import ACTIVATIONS, TARGET

# What the paper's words say about each factor (§3.1: "four-layer", "no regularisation of any
# kind", each activation's learning rate "chosen independently to make training as fast as
# possible"): the report prints this beside the table.
FAITHFULNESS = (
    "- Positive initial biases (`model.init_bias`): allowed by the paper's words; Figure 1's "
    "initialisation is not stated, and §5 gives ImageNet ReLUs bias 1 because it \"accelerates "
    "the early stages of learning\". The default stays layers-80sec's 0.",
    "- Scaled tanh a·tanh(b·x) (`model.tanh_scale`): allowed; the paper says only \"tanh\", "
    "cuda-convnet's tanh neuron takes a and b from each config. The default stays plain tanh.",
    "- The rate choice (`--search race`, `--lr`): the paper's own criterion (each rate chosen to "
    "make training as fast as possible); racing to 25% measures that criterion directly.",
    "- A rate drop (÷10 after epoch E, `schedule.kind=milestones schedule.milestones=[E]`; "
    "layers-80sec drops after 8): a rate schedule, not a regulariser, but not what \"learning "
    "rates chosen\" suggests; the default keeps the rate constant. A drop just before the target "
    "lowers the running error of either activation, so a drop on one side only favours that "
    "side: the fair row drops both at the same point of each curve.",
    "- layers-80sec's weight decay: excluded by \"no regularisation of any kind\"; not run.",
)


def factor_rows(rows: list[tuple[str, dict]], target: float = TARGET) -> list[dict]:
    """Pure function: rows = [(label, {"relu": {seed: curve}, "tanh": {seed: curve}}), …], the
    first the baseline; a curve is the training error per epoch (None: diverged). An activation
    a row has no runs of is taken from the baseline ("borrowed"). Returns per row {"label",
    "borrowed": [activations], "stats": relu_vs_tanh.aggregate_seeds(...)}."""
    if not rows:
        raise ValueError("factor_rows: no rows (the first is the baseline)")
    baseline = rows[0][1]
    out = []
    for label, curves in rows:
        borrowed = [a for a in ACTIVATIONS if not curves.get(a)]
        used = {a: baseline.get(a, {}) if a in borrowed else curves[a] for a in ACTIVATIONS}
        out.append({"label": label, "borrowed": borrowed,
                    "stats": relu_vs_tanh.aggregate_seeds(used["relu"], used["tanh"], target)})
    return out


def closest_to(rows: list[dict], speedup: float, reading: str = "interpolated") -> dict | None:
    """The row whose speed-up (`reading`) is nearest `speedup`; None if no row has one."""
    known = [r for r in rows if r["stats"]["speedup"][reading]["ratio"] is not None]
    return min(known, key=lambda r: abs(r["stats"]["speedup"][reading]["ratio"] - speedup),
               default=None)


def read_experiment(exp_dir: Path) -> tuple[dict, dict]:
    """(manifest, {activation: {seed: curve}}) of one relu-vs-tanh experiment folder."""
    path = Path(exp_dir) / "experiment.json"
    if not path.is_file():
        raise FileNotFoundError(f"{exp_dir} holds no experiment.json: pass folders that "
                                "`alexnet experiment relu-vs-tanh` wrote (RUNS/relu_vs_tanh)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): damaged or edited; rerun its "
                         "`alexnet experiment relu-vs-tanh` command to rewrite it") from None
    if manifest.get("kind") != "relu_vs_tanh":
        raise ValueError(f"{path}: kind {manifest.get('kind')!r}, not a relu-vs-tanh experiment")
    return manifest, relu_vs_tanh.seed_curves(Path(exp_dir), manifest)


def read_row(exp_dirs: list[Path]) -> tuple[list[dict], dict]:
    """(manifests, {activation: {seed: curve}}) of one table row: one experiment, or several
    joined, each of which ran activations the others did not (ValueError otherwise), e.g. each
    activation with its own rate drop."""
    manifests, curves = [], {}
    for exp_dir in exp_dirs:
        manifest, runs = read_experiment(exp_dir)
        for act in (a for a in ACTIVATIONS if runs.get(a)):
            if act in curves:
                raise ValueError(f"{exp_dir}: {act} also ran in another experiment of the same "
                                 "row; join only experiments of different activations")
            curves[act] = runs[act]
        manifests.append(manifest)
    return manifests, curves


def _changes(manifests: list[dict], baseline: dict) -> str:
    """What a factor row's experiments did differently from the baseline's, in their own terms
    (joined experiments separated by ' + ')."""
    parts = []
    for manifest in manifests:
        extra = [o for o in manifest["overrides"] if o not in baseline["overrides"]]
        rates = ", ".join(f"{a} {lr:g}" for a, lr in manifest.get("chosen", {}).items())
        how = ("raced" if manifest.get("search") == "race" and not manifest.get("fixed_lrs")
               else "given" if manifest.get("fixed_lrs") else "searched")
        parts.append("; ".join([*extra, f"rates {how}: {rates}"]))
    return " + ".join(parts)


def _cell(stats: dict, act: str, reading: str, borrowed: list[str]) -> str:
    text = relu_vs_tanh.epochs_text(stats[act], reading)
    return text + (" (baseline)" if act in borrowed else "")


def write_report(labelled: list[tuple[str, list[Path]]], out_dir: Path) -> Path:
    """DIR/report.md of the factor table (see the module docstring); each row a label and its
    experiment folders (`read_row`)."""
    read = [(label, *read_row(dirs)) for label, dirs in labelled]
    rows = factor_rows([(label, curves) for label, _, curves in read])
    base_manifest = read[0][1][0]
    fig = paper_numbers.FIGURE1
    caps = sorted({m["epochs"] for _, ms, _ in read for m in ms})
    seeds = sorted({len(m.get("seeds", [0])) for _, ms, _ in read for m in ms})
    lines = ["# Figure 1: what each factor does to the ReLU / tanh gap", "",
             "Generated by `alexnet experiment relu-factors` from the relu-vs-tanh experiments "
             "named below; not edited by hand.", "",
             f"- Baseline: `{read[0][0]}`: {_changes([base_manifest], base_manifest)}; overrides "
             f"{', '.join(base_manifest['overrides']) or 'none'}.",
             f"- Data: `{report.shown_path(base_manifest['data'])}`. "
             f"{base_manifest.get('note', '')}",
             f"- Every run stops at the end of the first epoch at or below {100 * TARGET:.0f}% "
             f"running training error, or at the cap of {' / '.join(str(c) for c in caps)} "
             f"epochs; {' or '.join(str(n) for n in seeds)} seeds per row. Epochs to 25%: mean "
             "over the seeds that reached it (range in brackets), read as the first epoch at or "
             "below 25% and interpolated between epochs; speed-up = tanh / ReLU over the seeds "
             "where both reached it (range of the per-seed ratios).", ""]
    table_rows = []
    for row, (label, manifests, _) in zip(rows, read):
        s, b = row["stats"], row["borrowed"]
        table_rows.append([label, _changes(manifests, base_manifest),
                           _cell(s, "relu", "first", b), _cell(s, "relu", "interpolated", b),
                           _cell(s, "tanh", "first", b), _cell(s, "tanh", "interpolated", b),
                           relu_vs_tanh.speedup_text(s["speedup"], "first"),
                           relu_vs_tanh.speedup_text(s["speedup"], "interpolated")])
    lines += [report.table(["factor", "what changed", "ReLU: first epoch ≤ 25%",
                            "ReLU: interpolated", "tanh: first epoch ≤ 25%", "tanh: interpolated",
                            "speed-up (first)", "speed-up (interpolated)"], table_rows), ""]
    unreached = [f"{row['label']} ({act}: {s['reached']} of {s['runs']})" for row in rows
                 for act, s in ((a, row["stats"][a]) for a in ACTIVATIONS)
                 if s["reached"] < s["runs"] and act not in row["borrowed"]]
    if unreached:
        lines += ["Not every run reached 25% before the cap (left out of the means): "
                  + "; ".join(unreached) + ".", ""]
    best = closest_to(rows, fig["speedup"])
    if best is not None:
        lines += [f"Closest to the paper's {fig['speedup']:.0f}x (interpolated speed-up): "
                  f"**{best['label']}**, "
                  f"{relu_vs_tanh.speedup_text(best['stats']['speedup'], 'interpolated')}.", ""]
    lines += ["## The factors and the paper's words", "", *FAITHFULNESS, ""]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
