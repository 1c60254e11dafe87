"""The whole paper on any CPU in minutes: synthetic data → §2 prep → §5 training → §6 evaluation.

`alexnet demo [--out DIR] [--quick]` needs no data and no network. It generates an ImageNet-shaped
synthetic dataset in the raw ILSVRC-2012 layout (data_prep.synthetic), prepares it exactly as
ImageNet is prepared (`alexnet prep imagenet`: shorter side 256, central crop, mean image, RGB PCA),
trains the paper's two-tower network with the paper's recipe, evaluates it with the centre crop and
with ten crops (§6), and writes DIR/report.md (+ DIR/curves.png with matplotlib) next to Table 2.

Every change from the paper's recipe is a named value in experiments/demo.yaml (its `demo:`
section sizes the synthetic dataset); the report lists each one, computed from the config itself.
The data is synthetic: the errors say the pipeline learns, not what AlexNet scores on ImageNet.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import torch

from data_prep import exits
from data_prep.files import write_atomic
from experiments.paper_numbers import PAPER_ROWS
from paper_alexnet import config

RECIPE = Path(__file__).with_name("demo.yaml")   # the demo's own settings, not a run recipe
TABLE2 = PAPER_ROWS["ilsvrc2012_1cnn"]     # §6 Table 2, "1 CNN", ILSVRC-2012 val, ten crops
DATA, TRAIN = "1. generate + prepare synthetic data", "2. train (§5)"


def load_recipe(path: Path, quick: bool, overrides=()) -> tuple[config.RunConfig, dict]:
    """(run config, dataset sizes) from demo.yaml; --quick applies its `quick:` section on top."""
    values = config.read_yaml(path)
    demo = values.pop("demo", None)
    quick_section = values.pop("quick", {}) or {}
    if not isinstance(demo, dict):
        raise config.ConfigError(f"{path} needs a 'demo:' section (classes, train_per_class, "
                                 "val_per_class, seed)")
    if quick:     # the recipe's own overrides: an error in them is blamed on the recipe
        demo = {**demo, **quick_section.get("demo", {})}
        values = config.apply_overrides(values, list(quick_section.get("overrides", [])))
    return config.build_with_overrides(config.RunConfig, values, overrides, path), demo


def deviations(cfg: config.RunConfig) -> list[str]:
    """'key: paper X -> demo Y' for every value that differs from the paper's defaults."""
    return [f"{k}: paper {paper!r} -> demo {ours!r}"
            for k, (paper, ours) in config.differences(cfg).items()]


def _stage(name: str, timings: dict, fn, *args, **kwargs):
    print(f"\n=== {name} ===", flush=True)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[name] = time.perf_counter() - start
    print(f"=== {name}: {timings[name]:.1f} s ===", flush=True)
    return out


def check_out(out: Path, cfg: config.RunConfig, demo: dict, quick: bool) -> None:
    """One --out folder holds one demo: a folder made by another (`demo` after `demo --quick`)
    is refused before anything runs (preflight.StartError, exit 2), never mixed or overwritten."""
    from data_prep.shards import PreparedSplit
    from paper_alexnet.run.preflight import StartError
    from paper_alexnet.resume import RESUME_MAY_CHANGE
    root, saved = out / "prepared", out / "run" / "config.yaml"
    wanted = {s: demo["classes"] * demo[f"{s}_per_class"] for s in ("train", "val")}
    held = {}
    if (root / "val" / "manifest.json").is_file():
        held = {s: len(PreparedSplit(root / s)) for s in ("train", "val")}
    differs = bool(held) and held != wanted
    if saved.is_file():
        changed = config.differences(cfg, config.load(saved))
        differs |= any(k not in RESUME_MAY_CHANGE for k in changed)
    if differs:
        made = f"{held['train']} training images" if held else "another config"
        raise StartError(f"{out} holds a demo made with other settings ({made}; this "
                         f"{'--quick ' if quick else ''}demo makes {wanted['train']}): use another "
                         f"--out (e.g. --out {out}-{'quick' if quick else 'full'}) or delete {out}")


def _prepare(raw: Path, root: Path, demo: dict) -> bool:
    """Generate and prepare the data; False when `root` was already prepared (reused)."""
    from data_prep import __main__ as prep
    from data_prep import synthetic
    if (root / "val" / "manifest.json").is_file():     # check_out made sure it is this demo's
        print(f"{root} is already prepared (prepared data is immutable): reusing it")
        return False
    from paper_alexnet.run.preflight import StartError
    try:
        summary = synthetic.generate(raw, demo["classes"], demo["train_per_class"],
                                     demo["val_per_class"], seed=demo["seed"],
                                     workers=os.cpu_count() or 1)
    except ValueError as err:     # raw/ holds another dataset: written once, never replaced
        raise StartError(str(err)) from None
    print(f"synthetic: {summary['train']} train + {summary['val']} val images, "
          f"{summary['classes']} classes, raw ILSVRC-2012 folder layout, in {raw}")
    code = prep.main(["imagenet", "--input", str(raw), "--out", str(root),
                      "--workers", str(os.cpu_count() or 1)])
    if code != 0:
        raise RuntimeError(f"'alexnet prep imagenet --input {raw} --out {root}' failed "
                           f"(exit {code}); see its message above")
    return True


TIMINGS = "timings.json"     # the seconds of each stage when it last did its work


def stage_times(out: Path, timings: dict, reused: set) -> list[str]:
    """The report's 'Time per stage' lines. A stage that did no work this time (data already
    prepared, nothing left to train) shows the time of the run that did it, kept in
    OUT/timings.json, so a second `make demo` does not pass reuse off as speed."""
    path = out / TIMINGS
    try:
        first = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        first = {}
    first.update({k: v for k, v in timings.items() if k not in reused})
    write_atomic(path, (json.dumps(first, indent=1) + "\n").encode())
    lines = []
    for name, seconds in timings.items():
        if name not in reused:
            lines.append(f"- {name}: {seconds:.1f} s")
        elif name in first:
            lines.append(f"- {name}: reused (first run: {first[name]:.1f} s)")
        else:
            lines.append(f"- {name}: reused (the first run's time was not recorded)")
    total = f"- total: {sum(timings.values()):.1f} s"
    if reused and all(k in first for k in timings):
        total += f" this time ({sum(first[k] for k in timings):.1f} s with every stage done)"
    return lines + [total]


def _curves(run_dir: Path, out: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from paper_alexnet.run.metrics import read_metrics
    train_records, val = read_metrics(run_dir, "train"), read_metrics(run_dir, "val")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot([r["step"] for r in train_records], [r["loss"] for r in train_records])
    a.set(xlabel="step", ylabel="training loss (cross-entropy)", title="training")
    b.plot([r["epoch"] for r in val], [100 * r["top1"] for r in val], "o-", label="top-1")
    b.plot([r["epoch"] for r in val], [100 * r["top5"] for r in val], "s-", label="top-5")
    b.set(xlabel="epoch", ylabel="validation error (%), centre crop", title="validation")
    b.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def report(out: Path, cfg, demo: dict, result: dict, timings: dict, quick: bool,
           reused: set = frozenset()) -> str:
    classes = cfg.model.num_classes
    chance1, chance5 = 100 * (1 - 1 / classes), 100 * max(0.0, 1 - 5 / classes)
    c, t = result["center"], result["ten_crop"]
    lines = [
        "# AlexNet demo (synthetic data)" + (" -- QUICK, shortened" if quick else ""), "",
        "**The data is synthetic** (data_prep.synthetic: textured shapes, "
        f"{classes} classes, {demo['classes'] * demo['train_per_class']} training images), "
        "not ImageNet: the errors below are not comparable to the paper's. "
        + ("This QUICK run is too short to learn anything: it shows that every stage runs."
           if quick else
           f"They show whether the pipeline (prep, augmentation, the two-tower network, the §5 "
           f"rule, §6 evaluation) learns: ten-crop top-1 error {100 * t['top1']:.1f}% against "
           f"{chance1:.1f}% for chance."), "",
        "| | top-1 error | top-5 error | crops |", "|---|---|---|---|",
        f"| this demo, centre crop | {100 * c['top1']:.1f}% | {100 * c['top5']:.1f}% | 1 |",
        f"| this demo, ten crops (§6) | {100 * t['top1']:.1f}% | {100 * t['top5']:.1f}% | 10 |",
        f"| chance on this data ({classes} classes) | {chance1:.1f}% | {chance5:.1f}% | |",
        f"| paper, Table 2, 1 CNN, ILSVRC-2012 val (1000 classes) | {TABLE2.top1}% | "
        f"{TABLE2.top5}% | 10 |", "",
        f"Validation split: {result['images']} images, each seen once; checkpoint evaluated: the "
        f"final one ({Path(result['checkpoints'][0]).name}), not a best-of.", "",
        "## Changes from the paper's recipe (experiments/demo.yaml)", "",
        *[f"- {d}" for d in deviations(cfg)], "",
        "## Time per stage", "",
        *stage_times(out, timings, reused), "",
        f"Hardware: {platform.machine()} CPU, {os.cpu_count()} cores visible, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), Python "
        f"{platform.python_version()}.", ""]
    png = _curves(out / "run", out / "curves.png")
    if png is not None:
        lines += [f"![training curves]({png.name})", ""]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text


def run_demo(out: Path, quick: bool = False, recipe: Path = RECIPE, overrides=()) -> dict:
    from paper_alexnet.evaluate import evaluate
    from paper_alexnet.train import train
    from paper_alexnet.run import checkpoint, results
    out = Path(out)
    cfg, demo = load_recipe(recipe, quick, overrides)
    check_out(out, cfg, demo, quick)
    out.mkdir(parents=True, exist_ok=True)
    print("AlexNet (Krizhevsky, Sutskever & Hinton 2012) on SYNTHETIC data. Changes from the "
          f"paper's recipe ({recipe.name}{', --quick' if quick else ''}):")
    for d in deviations(cfg):
        print(f"  {d}")
    timings: dict[str, float] = {}
    root = out / "prepared"
    reused = set()
    if not _stage(DATA, timings, _prepare, out / "raw", root, demo):
        reused.add(DATA)
    summary = _stage(TRAIN, timings, train, cfg, root, out / "run")
    if summary["train_time_s"] == 0:          # nothing was left to train: the first run's work
        reused.add(TRAIN)
    newest = checkpoint.list_checkpoints(out / "run")[-1][1]
    result = _stage("3. evaluate, centre crop and ten crops (§6)", timings, evaluate, [newest],
                    root, "val", ten_crop=True)
    results.write_result(out / "run" / "result.json", result)
    text = report(out, cfg, demo, result, timings, quick, reused)
    print("\n" + text)
    print(f"report: {out / 'report.md'}")
    return dict(result=result, train=summary, timings=timings,
                config=dataclasses.asdict(cfg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alexnet demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("runs", "demo"),
                        help="output directory (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a shortened demo (tests use it): "
                        "tiny dataset, one short epoch; shows the pipeline, not learning")
    parser.add_argument("--recipe", type=Path, help="the demo's settings: a YAML file with a "
                        "demo: section, e.g. an edited copy of experiments/demo.yaml (default: "
                        "experiments/demo.yaml itself)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides on top of the recipe (e.g. train.epochs=1; "
                        "`alexnet config` lists every key)")
    args = parser.parse_args(argv)

    def work():
        run_demo(Path(args.out), args.quick, args.recipe or RECIPE, args.overrides)
    return exits.run("alexnet demo", work, usage=(config.ConfigError,))


if __name__ == "__main__":
    raise SystemExit(main())
