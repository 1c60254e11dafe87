"""An output inside an input, a prepared dataset or another run is refused before any work (one
line, exit 2, nothing changed): shards written into raw images, a dataset nested in a split, a run
inside a dataset, a result file among the shards would each look fine until something read them."""
import numpy as np
import pytest

from conftest import make_prepared
from data_prep import __main__ as prep
from faults import SMALL_NET, snapshot, write_recipe
from paper_alexnet import config, evaluate
from paper_alexnet import train as train_cli
from test_prep_images import dataset
from test_small import write_cifar


@pytest.fixture
def root(tmp_path):
    return make_prepared(tmp_path / "root", train_per_class=2, val_per_class=1)


def refused(capsys, status, words):
    assert status == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("prep: ")]
    assert len(err) == 1 and all(w in err[0] for w in words), err
    return err[0]


def test_prep_output_inside_its_input_a_split_or_a_run(tmp_path, root, capsys):
    dataset(tmp_path / "raw")
    write_cifar(tmp_path / "cifar", np.random.default_rng(0), per_batch=2)
    before = snapshot(tmp_path)
    refused(capsys, prep.main(["images", "--input", str(tmp_path / "raw"), "--out",
                               str(tmp_path / "raw")]), ["--out", "is --input", "which it reads"])
    refused(capsys, prep.main(["images", "--input", str(tmp_path / "raw"), "--out",
                               f"{root}/train"]), ["is the prepared split", "write outside"])
    refused(capsys, prep.main(["images", "--input", str(tmp_path / "raw"), "--out",
                               f"{root}/val/more"]), ["is inside the prepared split"])
    refused(capsys, prep.main(["cifar10", "--input", str(tmp_path / "cifar"), "--out",
                               str(tmp_path / "cifar" / "prepared")]), ["is inside --input"])
    refused(capsys, prep.main(["synthetic", f"{root}/raw"]),
            ["OUT", "is inside the prepared dataset"])
    assert snapshot(tmp_path) == before


def test_a_run_or_a_result_inside_a_dataset_or_another_run(tmp_path, root, capsys):
    recipe = write_recipe(tmp_path / "recipe.yaml", SMALL_NET + ["train.epochs=1",
                                                                 "train.steps_per_epoch=1"])
    before = snapshot(tmp_path)
    for run_dir, words in ((root, ["--run-dir", "is --data"]),
                           (f"{root}/run", ["is inside --data"]),
                           (f"{root}/val", ["is inside --data"])):
        refused(capsys, train_cli.main(["--config", str(recipe), "--data", root, "--run-dir",
                                        str(run_dir)]), words)
    assert snapshot(tmp_path) == before
    run = tmp_path / "run"
    assert train_cli.main(["--config", str(recipe), "--data", root, "--run-dir", str(run)]) == 0
    capsys.readouterr()
    refused(capsys, train_cli.main(["--config", str(recipe), "--data", root, "--run-dir",
                                    str(run / "inner")]), ["is inside the run directory"])
    assert not (run / "inner").exists()
    refused(capsys, evaluate.main(["--run-dir", str(run), "--data", root, "--out",
                                   f"{root}/val/result.json"]), ["--out", "is inside --data"])
    other = make_prepared(tmp_path / "other", train_per_class=2, val_per_class=1)
    refused(capsys, evaluate.main(["--run-dir", str(run), "--data", root, "--out",
                                   f"{other}/val/result.json"]), ["is inside the prepared split"])
    assert not (tmp_path / "root" / "val" / "result.json").exists()
    # the run's own result file and a resume are fine
    assert evaluate.main(["--run-dir", str(run), "--data", root]) == 0
    assert config.load(run / "config.yaml").train.epochs == 1
