"""evaluate.py: ten crops average SOFTMAX outputs (not votes, not logits), ensembles average the
nets' softmax outputs, every image is counted once, and `alexnet eval` writes result.json."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from paper_alexnet import checkpoint, config
from paper_alexnet.evaluate import EvaluationError, count_errors, evaluate, main
from paper_alexnet.train import train
from test_train import SMALL_NET


class ScoreNet(nn.Module):
    """logits = scale · (per-channel mean of the view): a net whose outputs are written by hand."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    input_device = output_device = torch.device("cpu")

    def forward(self, x):
        return self.scale * x.mean(dim=(2, 3))


def views_of(scores):
    """(n·v, 3, 2, 2) images whose ScoreNet(1) logits are `scores` (n, v, 3)."""
    s = torch.tensor(scores, dtype=torch.float32)
    return s.reshape(-1, 3, 1, 1).expand(-1, 3, 2, 2).contiguous()


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_ten_crop_averages_softmax_outputs():
    # Image 0: 6 of 10 views vote for class 1 by a hair, 4 views are sure of class 0. Averaging
    # softmax outputs (§6) says class 0; voting says 1; the true label is 0.
    confident = [8.0, 0.0, 0.0]
    hesitant = [0.0, 0.1, 0.0]
    image0 = [confident] * 4 + [hesitant] * 6
    # Image 1: label 2; all views agree on class 2 as the second choice, class 0 first.
    image1 = [[1.0, -5.0, 0.5]] * 10
    scores = np.array([image0, image1])
    labels = torch.tensor([0, 2])
    batches = [(views_of(scores), labels, torch.tensor([0, 1]))]
    r = count_errors([ScoreNet(1.0)], batches, views=10, split_len=2)
    expected = softmax(scores).mean(axis=1)                          # by hand, in numpy
    assert expected[0].argmax() == 0 and np.bincount(scores[0].argmax(1)).argmax() == 1
    top1 = np.mean(expected.argmax(1) != labels.numpy())
    assert r["top1"] == pytest.approx(top1) == 0.5
    assert r["top5"] == 0.0                                           # 3 classes: top-5 covers all
    assert r["images"] == 2 and r["members"] == [dict(top1=0.5, top5=0.0)]


def test_ensemble_averages_the_nets_softmax_outputs():
    # Net A (scale 1) is unsure; net B (scale 10) is sure of the wrong class for image 0.
    # Averaging logits would be dominated by B; averaging probabilities (Table 2) differs.
    scores = np.array([[[0.5, 0.0, 0.0]], [[0.0, 0.0, 1.0]], [[0.0, 0.3, 0.0]]])
    labels = torch.tensor([0, 2, 1])
    net_a, net_b = ScoreNet(1.0), ScoreNet(-1.0)
    batches = [(views_of(scores), labels, torch.tensor([0, 1, 2]))]
    r = count_errors([net_a, net_b], batches, views=1, split_len=3)
    probs = (softmax(scores[:, 0]) + softmax(-scores[:, 0])) / 2      # by hand
    assert r["top1"] == pytest.approx(np.mean(probs.argmax(1) != labels.numpy()))
    assert r["members"][0]["top1"] == 0.0 and r["members"][1]["top1"] == 1.0
    assert r["top1"] == 0.0 and r["top5"] == 0.0
    # averaging logits instead would tie every class (A's and B's logits cancel): 2 of 3 wrong


def test_every_image_exactly_once():
    scores = np.zeros((2, 1, 3))
    ok = [(views_of(scores), torch.tensor([0, 1]), torch.tensor([0, 1]))]
    count_errors([ScoreNet(1.0)], ok, views=1, split_len=2)
    twice = ok + [(views_of(scores), torch.tensor([0, 1]), torch.tensor([1, 1]))]
    with pytest.raises(EvaluationError, match="1 missed|seen more than once"):
        count_errors([ScoreNet(1.0)], twice, views=1, split_len=3)
    with pytest.raises(EvaluationError, match="1 missed"):
        count_errors([ScoreNet(1.0)], ok, views=1, split_len=3)


def test_alexnet_eval_writes_result_json(data_root, tmp_path):
    cfg = config.load(None, SMALL_NET + ["train.steps_per_epoch=2", "train.epochs=1"])
    run = tmp_path / "run"
    train(cfg, data_root, run, quiet=True)
    assert main(["--run-dir", str(run), "--data", data_root]) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["images"] == 16 and result["split"] == "val"
    for view in ("center", "ten_crop"):
        assert 0.0 <= result[view]["top5"] <= result[view]["top1"] <= 1.0
    # the same checkpoint twice is an ensemble equal to the net alone
    path = checkpoint.list_checkpoints(run)[-1][1]
    both = evaluate([path, path], data_root, "val", ten_crop=True)
    for view in ("center", "ten_crop"):
        assert both[view]["top1"] == pytest.approx(result[view]["top1"])
        assert both[view]["members"][0] == both[view]["members"][1]
    # the centre crop is one of the ten views: the per-epoch validation record equals it
    val = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
           if '"val"' in line][-1]
    assert val["top1"] == pytest.approx(result["center"]["top1"])


def test_evaluate_does_not_import_train():
    """train.py uses evaluate.py (per-epoch validation); the lower module never imports the upper
    one (both take autocast and precision from precision.py)."""
    import ast
    import paper_alexnet.evaluate as module
    tree = ast.parse(open(module.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                 for a in n.names}
    assert not any(name.startswith("paper_alexnet.train") for name in imported), imported
