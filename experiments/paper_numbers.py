"""§6, §7, Tables 1 and 2, §3–§4 ablation claims, Figure 1: the paper's numbers, as data.

Every report compares against this module and nothing else; each entry carries the section it comes
from. Errors are in percent (top-1 / top-5), as the paper prints them. `None` means the paper gives
no number (e.g. "substantial overfitting" for dropout).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResultRow:
    """One row of a results table: who, on what, with how many test crops, and the errors."""

    name: str
    dataset: str
    split: str
    top1: float | None
    top5: float | None
    crops: int
    ref: str


# Table 1 (§6): ILSVRC-2010, the only year with public test labels.
# Table 2 (§6): ILSVRC-2012; "*" = pre-trained on ImageNet Fall 2011 with a 6th conv layer.
PAPER_ROWS = {
    "ilsvrc2010_1cnn": ResultRow("CNN (Table 1)", "ILSVRC-2010", "test", 37.5, 17.0, 10,
                                 "§6 Table 1"),
    "ilsvrc2010_1cnn_1crop": ResultRow("CNN, 1 crop (§6 text)", "ILSVRC-2010", "test", 39.0, 18.3,
                                       1, "§6"),
    "ilsvrc2012_1cnn": ResultRow("1 CNN (Table 2)", "ILSVRC-2012", "val", 40.7, 18.2, 10,
                                 "§6 Table 2"),
    "ilsvrc2012_5cnn": ResultRow("5 CNNs (Table 2)", "ILSVRC-2012", "val", 38.1, 16.4, 10,
                                 "§6 Table 2"),
    "ilsvrc2012_1cnn_star": ResultRow("1 CNN* (Table 2, extra conv6, Fall-2011 pre-training)",
                                      "ILSVRC-2012", "val", 39.0, 16.6, 10, "§6 Table 2"),
    "ilsvrc2012_7cnn_star": ResultRow("7 CNNs* (Table 2)", "ILSVRC-2012", "val", 36.7, 15.4, 10,
                                      "§6 Table 2"),
}

# Test-set top-5 of the 5-CNN ensemble (Table 2; the competition entry).
ILSVRC2012_5CNN_TEST_TOP5 = 16.4

# Public single-model replicas, single centre crop on ILSVRC-2012 val (docs/paper.md §7).
REPLICAS = {
    "caffe_bvlc_alexnet": ResultRow("Caffe bvlc_alexnet (replica)", "ILSVRC-2012", "val", 42.9,
                                    19.8, 1, "docs/paper.md §7"),
    "torchvision_alexnet": ResultRow("torchvision alexnet (single tower, not the paper's net)",
                                     "ILSVRC-2012", "val", 43.5, 20.9, 1, "docs/paper.md §7"),
}

# Which paper row a recipe reproduces (reproduce.py).
RECIPE_ROWS = {
    "paper": ("ilsvrc2012_1cnn", None),
    "ilsvrc2010": ("ilsvrc2010_1cnn", "ilsvrc2010_1cnn_1crop"),
}


@dataclass(frozen=True)
class AblationClaim:
    """What the paper says removing one ingredient costs, in percentage points of error."""

    change: str
    top1: float | None
    top5: float | None
    text: str
    ref: str


# §8 of docs/paper.md. Keys are the recipe names under experiments/configs/.
ABLATIONS = {
    "remove_conv1": AblationClaim("remove conv1", None, None,
                                  "not claimed (conv1 is the input layer, not a middle one)", "§7"),
    "remove_conv2": AblationClaim("remove conv2", 2.0, None, "about +2 top-1", "§7"),
    "remove_conv3": AblationClaim("remove conv3", 2.0, None, "about +2 top-1", "§7"),
    "remove_conv4": AblationClaim("remove conv4", 2.0, None, "about +2 top-1", "§7"),
    "remove_conv5": AblationClaim("remove conv5", 2.0, None, "about +2 top-1", "§7"),
    "no_lrn": AblationClaim("no LRN", 1.4, 1.2, "+1.4 / +1.2", "§3.3"),
    "pooling_z2": AblationClaim("z=2, s=2 pooling", 0.4, 0.3, "+0.4 / +0.3", "§3.4"),
    "one_tower_half": AblationClaim("one tower, half the kernels in conv1-4", 1.7, 1.2,
                                    "+1.7 / +1.2", "§3.2"),
    "no_pca": AblationClaim("no PCA lighting", 1.0, None, "about +1 top-1", "§4.1"),
    "no_dropout": AblationClaim("no dropout", None, None, "\"substantial overfitting\"", "§4.2"),
    "one_crop": AblationClaim("1 crop instead of 10 (evaluation only)", 1.5, 1.3, "+1.5 / +1.3",
                              "§6"),
}

# §7 says "removing any of the middle layers" costs about 2% top-1. In the 8-layer net the middle
# layers are layers 2-7, so conv2-conv5 carry the claim and conv1 (the input layer) does not.
DEFAULT_ABLATIONS = ("remove_conv3", "remove_conv4", "remove_conv5", "no_lrn", "pooling_z2",
                     "one_tower_half", "no_pca", "no_dropout")

# Figure 1 (§3.1): four-layer CIFAR-10 net; ReLU reaches 25% training error six times faster than
# tanh (read off the plot: about 6 vs 36 epochs).
FIGURE1 = {"target_train_error": 0.25, "speedup": 6.0, "relu_epochs": 6, "tanh_epochs": 36,
           "ref": "§3.1 Figure 1"}

# docs/paper.md §10: the course notes' single-tower AlexNet on Fashion-MNIST resized to 224.
COURSE_NOTES = {"test_accuracy": 0.88, "epochs": 10, "ref": "docs/paper.md §10 (course notes)"}

# §5: training time of the paper's run.
PAPER_TRAINING = {"epochs": 90, "days": "5-6", "hardware": "two GTX 580 3 GB", "ref": "§5"}
