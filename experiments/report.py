"""Reports (§6-§8, Figure 1): markdown with tables and PNG figures, generated from run directories
and never edited by hand (`alexnet report`, experiments/report_cli.py, regenerates one).

Numbers come from RUN/metrics.jsonl and RUN/result.json (rundir.py); the paper's from
paper_numbers.py. Curves need matplotlib (`pip install -e .[figures]`); without it the tables still
come out and the report says how to get the figures. Errors are printed in percent.
"""
from __future__ import annotations

import math
from pathlib import Path

from experiments import paper_numbers, recipes, rundir

NOT_EVALUATED_HINT = ("`alexnet eval --run-dir RUN --data ROOT` writes a run's result.json (top-1 "
                      "and top-5 error, one and ten crops); then run `alexnet report` again.")
FIGURES_HINT = ("(figures need matplotlib: `pip install -e .[figures]`; the tables above hold "
                "the same numbers)")


def pct(x, digits: int = 2) -> str:
    """A fraction as a percentage ('12.34'), or '—' when missing or not finite."""
    if x is None or not math.isfinite(float(x)):
        return "—"
    return f"{100.0 * float(x):.{digits}f}"


def num(x, digits: int = 2) -> str:
    if x is None or not math.isfinite(float(x)):
        return "—"
    return f"{float(x):.{digits}f}"


def shown_path(path) -> str:
    """How a report names a local path (a dataset, a run): its last component only, so that no
    machine's absolute path ends up in a committed report ('/data/ilsvrc/prepared' -> 'prepared');
    the report's note says what the data is."""
    name = Path(str(path)).name
    return name or str(path)


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table; cells are str()-ed, '|' escaped."""
    def cell(v):
        return str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pyplot():
    """matplotlib.pyplot with a file-only backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_lines(path: Path, series: list[dict], xlabel: str, ylabel: str, title: str = "",
               hline: float | None = None, logy: bool = False) -> bool:
    """One PNG of lines: series = [{"x", "y", "label", "style"}]. False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for s in series:
        pts = [(x, y) for x, y in zip(s["x"], s["y"]) if y is not None and math.isfinite(y)]
        if pts:
            ax.plot(*zip(*pts), s.get("style", "-"), label=s["label"], color=s.get("color"))
    if hline is not None:
        ax.axhline(hline, color="grey", linewidth=0.8, linestyle=":")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def curves_section(summary: dict, out_dir: Path, stem: str) -> str:
    """Training/validation error and learning rate per epoch: a table, and PNGs if possible."""
    c = summary["curves"]
    rows = [[e, pct(tr), pct(v1), pct(v5), num(lr, 6), num(t, 1)]
            for e, tr, v1, v5, lr, t in zip(c["epoch"], c["train_error"], c["val_top1"],
                                            c["val_top5"], c["lr"], c["train_time_s"])]
    split = c.get("val_split", "val")       # train_holdout: what the §5 schedule watched
    text = table(["epoch", "train top-1 % (running)", f"{split} top-1 % (centre)",
                  f"{split} top-5 %", "learning rate", "train time s"], rows)
    errors = plot_lines(out_dir / f"{stem}_error.png", [
        {"x": c["epoch"], "y": c["train_error"], "label": "training (running, top-1)"},
        {"x": c["epoch"], "y": c["val_top1"], "label": f"{split} (centre crop, top-1)",
         "style": "--"}], "epoch", "error", f"{stem}: error per epoch")
    rates = plot_lines(out_dir / f"{stem}_lr.png", [
        {"x": c["epoch"], "y": c["lr"], "label": "learning rate"}], "epoch", "learning rate",
        f"{stem}: learning rate", logy=True)
    if errors and rates:
        text += f"\n\n![error]({stem}_error.png) ![learning rate]({stem}_lr.png)"
    else:
        text += "\n\n" + FIGURES_HINT
    return text


def wilson(rate: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of an error rate measured on n images: it
    stays inside [0, 1] and is right at rates near 0 or 1, where rate ± z·sqrt(rate(1-rate)/n)
    is not. Pure function."""
    if n <= 0:
        raise ValueError(f"an interval needs images; got n={n}")
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def interval_text(rate: float, n: int) -> str:
    lo, hi = wilson(rate, n)
    return f"{100 * rate:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def evaluation_line(result: dict | None) -> str:
    """One line of a run's result.json: top-1 / top-5 error with the centre crop and with ten
    crops, each with its 95% interval, and the ten-crop gain beside the paper's (§6)."""
    if not result or not result.get("center"):
        return "Evaluation: none yet."
    n = int(result["images"])
    text = [f"Evaluation on {n:,} {result.get('split', 'val')} images (95% Wilson intervals): "
            "centre crop top-1 " + interval_text(result["center"]["top1"], n)
            + ", top-5 " + interval_text(result["center"]["top5"], n)]
    if result.get("ten_crop"):
        ten, one = result["ten_crop"], result["center"]
        p10 = paper_numbers.PAPER_ROWS["ilsvrc2010_1cnn"]
        p1 = paper_numbers.PAPER_ROWS["ilsvrc2010_1cnn_1crop"]
        text.append("; ten crops top-1 " + interval_text(ten["top1"], n) + ", top-5 "
                    + interval_text(ten["top5"], n)
                    + f"; ten crops − centre crop: {100 * (ten['top1'] - one['top1']):+.2f} / "
                    f"{100 * (ten['top5'] - one['top5']):+.2f} points (the paper, §6, "
                    f"ILSVRC-2010 test: {p10.top1} − {p1.top1} = {p10.top1 - p1.top1:+.1f} / "
                    f"{p10.top5} − {p1.top5} = {p10.top5 - p1.top5:+.1f}; both views are of the "
                    "same images, so the difference is far more certain than the two intervals "
                    "suggest)")
    return "".join(text) + "."


def result_errors(result: dict | None, view: str) -> tuple[float | None, float | None]:
    """(top-1, top-5) fractions of one view ("center" or "ten_crop") of a result.json."""
    if not result or not result.get(view):
        return None, None
    return result[view].get("top1"), result[view].get("top5")


def timing_line(summary: dict) -> str:
    t = summary["timing"]
    return (f"training time {num(t['train_time_s'], 1)} s for {int(t['images'])} images "
            f"({num(t['images_per_s'], 1)} images/s, training steps only); wall time "
            f"{num(t['wall_s'], 1)} s including the per-epoch validation and checkpoints.")


def diff_text(cfg) -> str:
    diff = recipes.config_diff(cfg)
    return ", ".join(f"`{k}={v}`" for k, v in sorted(diff.items())) or "none (the paper's config)"


def runs_report(run_dirs: list[Path], out_dir: Path) -> Path:
    """The generic report of run directories: results next to the paper's row, then curves."""
    summaries = [rundir.summarise(d) for d in run_dirs]     # all read before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in summaries:
        r = s["result"] or {}
        c1, c5 = result_errors(r, "center")
        t1, t5 = result_errors(r, "ten_crop")
        rows.append([s["run_dir"].name, recipes.describe(s["config"]),
                     r.get("split", "—"), r.get("images", "—"), pct(c1), pct(c5), pct(t1),
                     pct(t5)])
    paper = paper_numbers.PAPER_ROWS["ilsvrc2012_1cnn"]
    ilsvrc = all(s["config"].model.arch == "alexnet" and s["config"].model.num_classes == 1000
                 for s in summaries)
    if ilsvrc:
        beside = (f"The paper ({paper.ref}, {paper.name}, {paper.dataset} {paper.split}, "
                  f"{paper.crops} crops): {paper.top1} / {paper.top5}. "
                  + "; ".join(f"{r.name}: {r.top1} / {r.top5} (1 crop)"
                              for r in paper_numbers.REPLICAS.values()) + ".")
    else:
        beside = (f"No row of the paper applies: its Table 2 ({paper.top1} / {paper.top5}) is "
                  f"AlexNet on {paper.dataset}'s 1000 classes, and these runs are of "
                  + ", ".join(sorted({f"{s['config'].model.arch} on "
                                      f"{s['config'].model.num_classes} classes"
                                      for s in summaries})) + ".")
    lines = ["# Runs report", "",
             "Generated by `alexnet report` from each run's metrics.jsonl and result.json; not "
             "edited by hand. Errors in percent.", "",
             table(["run", "variant (recipe + other changes)", "split", "images",
                    "top-1 (1 crop)", "top-5 (1 crop)",
                    "top-1 (10 crops)", "top-5 (10 crops)"], rows), "", beside]
    missing = [s["run_dir"].name for s in summaries if not s["result"]]
    if missing:
        lines += ["", f"Not evaluated yet (no result.json): {', '.join(missing)}. "
                  f"{NOT_EVALUATED_HINT}"]
    for s in summaries:
        name = s["run_dir"].name
        lines += ["", f"## {name}", "", evaluation_line(s["result"]), "",
                  f"Config changes from the paper: {diff_text(s['config'])}.", "",
                  timing_line(s), "", curves_section(s, out_dir, name)]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
