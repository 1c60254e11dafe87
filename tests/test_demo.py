"""demo.py: `alexnet demo --quick` runs the whole chain (synthetic raw data → prep → the paper's
two-tower network trained → centre and ten-crop evaluation → report) on the CPU."""
import json

from experiments.demo import RECIPE, deviations, load_recipe, main
from faults import snapshot
from paper_alexnet import config


def test_demo_recipe_names_every_change():
    cfg, demo = load_recipe(RECIPE, quick=False)
    assert cfg.model.arch == "alexnet" and cfg.model.layout == "two_towers"
    assert cfg.model.input_size == 224 and cfg.model.num_classes == demo["classes"]
    changed = {d.split(":")[0] for d in deviations(cfg)}
    paper = config.RunConfig()
    for key in ("model.init", "optim.batch_size", "train.epochs"):
        assert key in changed
    assert cfg.optim.lr == paper.optim.lr and cfg.optim.rule == "paper"
    assert "optim.lr" not in changed and "model.lrn" not in changed


def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "run" / "result.json").read_text())
    assert result["images"] == 8 and result["split"] == "val"
    assert {"center", "ten_crop"} <= result.keys()
    report = (out / "report.md").read_text()
    assert "synthetic" in report.lower() and "40.7%" in report and "18.2%" in report
    assert "model.init: paper 'paper' -> demo 'caffe'" in report
    for stage in ("1. generate", "2. train", "3. evaluate"):
        assert stage in report and stage in printed
    assert (out / "prepared" / "train" / "manifest.json").is_file()
    # the same demo again: data and training are reused, and the report keeps their first times
    first = {line.split(":")[0]: line for line in report.splitlines() if line.startswith("- 1.")
             or line.startswith("- 2.")}
    assert main(["--quick", "--out", str(out)]) == 0
    again = (out / "report.md").read_text()
    for stage, line in first.items():
        seconds = line.rsplit(": ", 1)[1]
        assert f"{stage}: reused (first run: {seconds})" in again, (line, again)
    assert "with every stage done)" in again
    capsys.readouterr()
    # the full demo in the same folder: refused at once, one line with the fix, nothing changed
    before = snapshot(out)
    assert main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a demo made with other settings" in err
    assert f"--out {out}-full" in err and snapshot(out) == before
