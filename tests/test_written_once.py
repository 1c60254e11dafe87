"""§2 prepared data is written once (docs/ARCHITECTURE.md decision 4), for every prep verb: a ROOT
made from other inputs or options is refused (one line, exit 2, nothing changed), an identical one
is left untouched (nothing written, and said); a run records the identity of its data and
`train` (resume) and `eval` warn when it changed."""
import hashlib
import json
import os
import shutil

import numpy as np

from conftest import make_prepared
from data_prep import __main__ as prep
from data_prep import synthetic
from faults import SMALL_NET
from paper_alexnet import config, evaluate
from paper_alexnet.run import metrics
from paper_alexnet.train import train
from test_prep_images import dataset
from test_small import write_cifar, write_fashion


def stamps(folder) -> dict:
    """{relative path: (sha256, mtime_ns)} of every file under `folder`: a rewrite of the same
    bytes changes the modification time, so "nothing written" means an equal result."""
    out = {}
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = (hashlib.sha256(f.read()).hexdigest(),
                                                      os.stat(path).st_mtime_ns)
    return out


def one_line(capsys, verb) -> str:
    """The one error line (after the input's discovery line, where a verb prints one)."""
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("prep: ")]
    assert len(err) == 1 and err[0].startswith(f"alexnet prep {verb}: "), err
    return err[0]


def test_cifar10_and_fashion_mnist_write_once(tmp_path, capsys):
    write_cifar(tmp_path / "cifar", np.random.default_rng(1))
    write_cifar(tmp_path / "other", np.random.default_rng(2), per_batch=3)
    write_fashion(tmp_path / "fashion", np.random.default_rng(3))
    root = tmp_path / "root"
    args = ["cifar10", "--input", str(tmp_path / "cifar"), "--out", str(root)]
    assert prep.main(args) == 0
    before = stamps(root)
    capsys.readouterr()
    assert prep.main(args) == 0                    # the same input: nothing written, and said
    out = capsys.readouterr().out
    assert out.count("already prepared from the same input files: nothing written") == 2, out
    assert stamps(root) == before
    for argv in (["cifar10", "--input", str(tmp_path / "other"), "--out", str(root)],
                 ["fashion-mnist", "--input", str(tmp_path / "fashion"), "--out", str(root)]):
        assert prep.main(argv) == 2                # other inputs: refused, nothing changed
        line = one_line(capsys, argv[0])
        assert f"{root / 'train'} already holds a prepared split made from other inputs" in line
        assert "from cifar10" in line and "choose another --out" in line
        assert stamps(root) == before
    # an interrupted prep (val not written yet) is finished; train is left as it is
    shutil.rmtree(root / "val")
    assert prep.main(args) == 0
    after = stamps(root)
    assert {k: v for k, v in after.items() if k.startswith("train")} == \
        {k: v for k, v in before.items() if k.startswith("train")}
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}


def test_pipeline_verbs_refuse_other_inputs_or_options_with_exit_2(tmp_path, capsys):
    dataset(tmp_path / "in")
    root = tmp_path / "root"
    base = ["images", "--input", str(tmp_path / "in"), "--out", str(root), "--workers", "1"]
    assert prep.main(base) == 0
    before = stamps(root)
    capsys.readouterr()
    assert prep.main(base) == 0
    assert capsys.readouterr().out.count("nothing written") == 2
    assert stamps(root) == before
    assert prep.main(base + ["--size", "8"]) == 2              # other options
    line = one_line(capsys, "images")
    assert "already holds a prepared split made from other inputs or options" in line
    assert stamps(root) == before
    # the val split alone from other inputs: refused before train (identical) or val is touched
    dataset(tmp_path / "in2", per_class=4)
    shutil.copytree(tmp_path / "in" / "train", tmp_path / "in3" / "train")
    shutil.copytree(tmp_path / "in2" / "test", tmp_path / "in3" / "test")
    for name in os.listdir(tmp_path / "in3" / "test" / "cat"):
        os.remove(tmp_path / "in3" / "test" / "cat" / name)
        break
    assert prep.main(["images", "--input", str(tmp_path / "in3"), "--out", str(root),
                      "--workers", "1"]) == 2
    assert f"{root / 'val'} already holds" in one_line(capsys, "images")
    assert stamps(root) == before
    # a CIFAR-10 ROOT is not overwritten by `prep images` either
    write_cifar(tmp_path / "cifar", np.random.default_rng(1))
    assert prep.main(["cifar10", "--input", str(tmp_path / "cifar"), "--out",
                      str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert prep.main(["images", "--input", str(tmp_path / "in"), "--out",
                      str(tmp_path / "c")]) == 2
    assert "from cifar10" in one_line(capsys, "images")


def test_imagenet_prep_refuses_other_options(tmp_path, capsys):
    synthetic.generate(tmp_path / "raw", classes=2, train_per_class=2, val_per_class=1)
    root = tmp_path / "root"
    args = ["imagenet", "--input", str(tmp_path / "raw"), "--out", str(root), "--workers", "1",
            "--size", "32"]
    assert prep.main(args) == 0
    before = stamps(root)
    capsys.readouterr()
    assert prep.main(args[:-1] + ["40"]) == 2
    assert "made from other inputs or options" in one_line(capsys, "imagenet")
    assert stamps(root) == before


def test_synthetic_is_written_once(tmp_path, capsys):
    out = tmp_path / "raw"
    args = ["synthetic", str(out), "--classes", "2", "--train-per-class", "2",
            "--val-per-class", "1", "--workers", "1"]
    assert prep.main(args) == 0
    before = stamps(out)
    capsys.readouterr()
    assert prep.main(args) == 0
    assert "nothing written" in capsys.readouterr().out and stamps(out) == before
    assert prep.main(args[:3] + ["3"] + args[4:]) == 2          # --classes 3
    line = one_line(capsys, "synthetic")
    assert "made with other options (classes 2)" in line and stamps(out) == before
    # an unfinished generation (its record says so) is done again, to the same bytes
    record = json.loads((out / synthetic.RECORD).read_text())
    (out / synthetic.RECORD).write_text(json.dumps(dict(record, complete=False)))
    os.remove(out / "val" / "n00000001" / os.listdir(out / "val" / "n00000001")[0])
    assert prep.main(args) == 0
    assert {k: v[0] for k, v in stamps(out).items()} == {k: v[0] for k, v in before.items()}
    # someone else's folder is not written into
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert prep.main(["synthetic", str(tmp_path / "mine")]) == 2
    assert "was not written by 'alexnet prep synthetic'" in one_line(capsys, "synthetic")
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


def test_a_run_records_its_data_and_says_when_it_changed(tmp_path, capsys):
    root = make_prepared(tmp_path / "data")
    run = tmp_path / "run"
    cfg = config.load(None, SMALL_NET + ["train.epochs=1", "train.steps_per_epoch=2"])
    train(cfg, root, run, quiet=True)
    capsys.readouterr()
    assert evaluate.main(["--run-dir", str(run), "--data", root]) == 0
    assert "WARNING" not in capsys.readouterr().err
    # the same ROOT prepared again from other inputs (here: other pixels)
    shutil.rmtree(root)
    make_prepared(tmp_path / "data", seed=7)
    assert evaluate.main(["--run-dir", str(run), "--data", root]) == 0
    err = capsys.readouterr().err
    assert "alexnet eval: WARNING: the data in" in err and "is not the data" in err
    assert "train (manifest sha256" in err and "val (manifest sha256" in err
    assert "is not the data" in json.loads((run / "result.json").read_text())["data_note"]
    train(config.load(None, SMALL_NET + ["train.epochs=2", "train.steps_per_epoch=2"]), root,
          run, quiet=True)
    err = capsys.readouterr().err
    assert "alexnet train: WARNING: the data in" in err and "continues on it" in err
    events = [r for r in metrics.read_metrics(run, "event") if r.get("event") == "data_changed"]
    assert len(events) == 1
