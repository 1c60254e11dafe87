"""evaluate.py, proven on cases computed by hand (7 classes, 10 views), each chosen so that every
plausible wrong rule gives a different number: top-1 and top-5 (five, not four or six), the
SOFTMAX outputs averaged over the ten views of one image (not logits, votes or the maximum; the
views of an image consecutive, not interleaved across images), an ensemble that averages its nets'
softmax outputs, the nets in eval mode during the count and back in their own mode after it, a
partial last batch that leaves the denominator alone, and every image counted once; `alexnet eval`
writes result.json. The two-process (gloo) evaluation is in test_distributed.py."""
import json

import pytest
import torch
from torch import nn

from paper_alexnet import config
from paper_alexnet.run import checkpoint
from paper_alexnet.evaluate import EvaluationError, error_rates, evaluate, main
from paper_alexnet.train import train
from test_train import SMALL_NET

CLASSES = 7


class Readout(nn.Module):
    """A net whose logits are written by hand: channels [first, first + 7) of each 1×1 "image".

    In training mode it scores the classes in reverse order (a stand-in for dropout that changes
    the answer, deterministically; test_nets_are_counted_in_eval_mode_and_left_in_their_own_mode).
    Built in training mode, like any module."""

    input_device = output_device = torch.device("cpu")

    def __init__(self, first: int = 0):
        super().__init__()
        self.first = first

    def forward(self, x):
        logits = x[:, self.first:self.first + CLASSES, 0, 0]
        return -logits if self.training else logits


def views(*weights):
    """(len, 7, 1, 1) "images" whose logits are ln(w): their softmax is w / Σw, so with Σw = 100
    the probabilities are the weights in per cent and every average below is done by hand."""
    return torch.tensor(weights, dtype=torch.float64).log().float().view(-1, CLASSES, 1, 1)


# Ten views of four images. Probabilities in per cent over classes 0…6 (each row sums to 100).
SURE_0, LEAN_1, SURE_3, ODD = ([90, 1, 5, 1, 1, 1, 1], [1, 40, 35, 6, 6, 6, 6],
                               [1, 1, 1, 94, 1, 1, 1], [1, 30, 35, 4, 10, 10, 10])
IMAGE_A = [SURE_0] * 3 + [LEAN_1] * 5 + [SURE_3, ODD]                   # label 0
# Softmax average, in per cent (sum over the ten views / 10):
#   class 0: (3·90 + 5·1 + 1 + 1) / 10 = 27.7   <- the answer: A is right
#   class 1: (3·1 + 5·40 + 1 + 30) / 10 = 23.4
#   class 2: (3·5 + 5·35 + 1 + 35) / 10 = 22.6
#   class 3: (3·1 + 5·6 + 94 + 4) / 10 = 13.1;  classes 4–6: 4.4 each
# Wrong rules: votes (the views' argmax: 3× class 0, 5× class 1, 1× 3, 1× 2) say class 1; the
# maximum over views says class 3 (94 > 90); averaging logits (Σ ln w) says class 2:
#   class 0: 3·ln 90 = 13.50; class 1: 5·ln 40 + ln 30 = 21.85; class 2: 3·ln 5 + 6·ln 35 = 26.16.
# So any of them makes A wrong.
# B, C, D: ten equal views; their label ranks 2nd, 5th and 6th of 7.
IMAGE_B = [[20, 10, 8, 25, 5, 30, 2]] * 10                # label 3 (25): 2nd after class 5 (30)
IMAGE_C = [[2, 30, 25, 20, 10, 5, 8]] * 10                # label 6 (8): 5th after 30, 25, 20, 10
IMAGE_D = [[8, 20, 5, 30, 25, 10, 2]] * 10                # label 2 (5): 6th after 30, 25, 20, 10, 8
LABELS = {"A": 0, "B": 3, "C": 6, "D": 2}
IMAGES = {"A": IMAGE_A, "B": IMAGE_B, "C": IMAGE_C, "D": IMAGE_D}
# By hand: top-1 wrong for B, C, D: 3/4 = 0.75; top-5 wrong for D only: 1/4 = 0.25.
# Top-4 would make C wrong too (0.5), top-6 would make D right (0.0), top-2 as "top-1" would make
# B right (0.5); any wrong averaging rule makes A wrong (top-1 1.0). Interleaving the views of the
# four images (image j averaging rows j, j+4, …, j+36 of the batch) makes every top-1 wrong (1.0):
# e.g. "image 0" = rows 0 (SURE_0), 4 (LEAN_1), 8 (SURE_3), 12, 16 (B), 20, 24, 28 (C), 32, 36 (D):
# class 0 (90 + 1 + 1 + 2·20 + 3·2 + 2·8)/10 = 15.4 < class 3 (1 + 6 + 94 + 2·25 + 3·20 + 2·30)/10
# = 27.1; the labels of images 0–3 then rank 3rd, 2nd, 7th and 3rd.
TOP1, TOP5 = 0.75, 0.25


def batch(names, first_index=0):
    """(images, labels, indices) of the named images, ten views each, views of an image together."""
    images = torch.cat([views(*IMAGES[n]) for n in names])
    labels = torch.tensor([LABELS[n] for n in names])
    return images, labels, torch.arange(first_index, first_index + len(names))


def test_top1_top5_of_the_softmax_averaged_over_ten_views():
    r = error_rates([Readout()], [batch("ABCD")], views=10, split_len=4)
    assert (r["top1"], r["top5"], r["images"]) == (TOP1, TOP5, 4)
    assert r["members"] == [dict(top1=TOP1, top5=TOP5)]


def test_a_partial_last_batch_leaves_the_denominator_alone():
    # Batches of 3 and 1 images: errors (top-1, top-5) 2 and 0 in the first, 1 and 1 in the last.
    # Right: 3/4 and 1/4. Dividing by the padded count (2 batches × 3 = 6) would give 0.5 and
    # 1/6; averaging the batches' rates would give (2/3 + 1)/2 = 0.833 and (0 + 1)/2 = 0.5.
    for batches in ([batch("ABC"), batch("D", 3)], [batch("A"), batch("BCD", 1)]):
        r = error_rates([Readout()], batches, views=10, split_len=4)
        assert (r["top1"], r["top5"], r["images"]) == (TOP1, TOP5, 4)


# An ensemble of two nets, P and Q, one view per image; each "image" holds P's logits in
# channels 0–6 and Q's in 7–13. Per cent, classes 0…6:
ENSEMBLE = [  # (label, P, Q)
    (0, [80, 4, 4, 4, 4, 2, 2], [30, 40, 6, 6, 6, 6, 6]),       # 1: P right, Q wrong
    (0, [90, 5, 1, 1, 1, 1, 1], [2, 47, 45, 3, 1, 1, 1]),       # 2: P right, Q wrong
    (2, [40, 5, 35, 5, 5, 5, 5], [5, 5, 70, 5, 5, 5, 5]),       # 3: P wrong, Q right
    (0, [45, 50, 1, 1, 1, 1, 1], [45, 1, 50, 1, 1, 1, 1]),      # 4: both wrong
    (6, [30, 25, 20, 10, 8, 5, 2], [30, 25, 20, 10, 8, 5, 2]),  # 5: both wrong, label last
]
# Softmax average (P + Q)/2, label vs the best other class:
#   1: 0 has 55, 1 has 22 -> right     2: 0 has 46, 1 has 26 -> right
#   3: 2 has 52.5, 0 has 22.5 -> right  4: 0 has 45, 1 and 2 have 25.5 -> right
#   5: 6 has 2, last -> wrong in top-1 and top-5
# Ensemble: top-1 1/5 = 0.2, top-5 1/5 = 0.2. P: top-1 3/5 (3, 4, 5 wrong); Q: top-1 4/5 (1, 2, 4,
# 5 wrong); each top-5 only 5 wrong (Q's label in image 2 ranks 4th): 0.2.
# Averaging logits instead (Σ ln w) makes image 2 wrong: class 0 ln 90 + ln 2 = 5.19 < class 1
# ln 5 + ln 47 = 5.46 -> 2/5. The maximum over the nets makes image 4 wrong (50 > 45) -> 2/5.
# The mean of the members' errors would be 0.7.


def ensemble_batch():
    images = torch.cat([torch.cat([views(p), views(q)], dim=1) for _, p, q in ENSEMBLE])
    labels = torch.tensor([label for label, _, _ in ENSEMBLE])
    return images, labels, torch.arange(len(ENSEMBLE))


def test_ensemble_averages_its_nets_softmax_outputs():
    r = error_rates([Readout(0), Readout(CLASSES)], [ensemble_batch()], views=1, split_len=5)
    assert (r["top1"], r["top5"]) == (0.2, 0.2)
    assert r["members"] == [dict(top1=0.6, top5=0.2), dict(top1=0.8, top5=0.2)]


def test_nets_are_counted_in_eval_mode_and_left_in_their_own_mode():
    # P in training mode, Q in eval mode. Counted in training mode, P would reverse its ranking
    # (softmax of −ln w ∝ 1/w): its labels would rank 7th, 7th, 6th, 6th, 1st (top-1 and top-5
    # 0.8) instead of its eval-mode 0.6 and 0.2.
    p_net, q_net = Readout(0), Readout(CLASSES).eval()
    r = error_rates([p_net, q_net], [ensemble_batch()], views=1, split_len=5)
    assert r["members"] == [dict(top1=0.6, top5=0.2), dict(top1=0.8, top5=0.2)]
    assert (r["top1"], r["top5"]) == (0.2, 0.2)
    assert (p_net.training, q_net.training) == (True, False)
    # also when the count fails
    with pytest.raises(EvaluationError, match="expected 2 per image"):
        error_rates([p_net, q_net], [ensemble_batch()], views=2, split_len=5)
    assert (p_net.training, q_net.training) == (True, False)


def test_every_image_exactly_once():
    error_rates([Readout()], [batch("AB")], views=10, split_len=2)
    twice = [batch("AB"), batch("B", 1)]
    with pytest.raises(EvaluationError, match="1 seen more than once"):
        error_rates([Readout()], twice, views=10, split_len=2)
    with pytest.raises(EvaluationError, match="1 missed"):
        error_rates([Readout()], [batch("AB")], views=10, split_len=3)


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
