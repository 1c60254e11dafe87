"""Shared by every test file: GPU tests skipped without CUDA; a tiny prepared dataset
(make_prepared, and the module-scoped fixture data_root built from it); a prepared synthetic
ImageNet-shaped set (prepared_synthetic)."""
import os

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    """GPU tests are skipped, with the reason, where no CUDA device is present."""
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def make_prepared(root, classes=4, train_per_class=16, val_per_class=4, side=72, seed=0):
    """A tiny prepared ROOT (str): raw uint8 side×side images, one colour per class plus noise,
    with the training split's stats. The behaviour the tests check does not depend on size."""
    from data_prep import shards
    rng = np.random.default_rng(seed)
    names = [(f"n{c:08d}", f"class {c}") for c in range(classes)]
    palette = rng.integers(40, 216, size=(classes, 3))
    for split, per in (("train", train_per_class), ("val", val_per_class)):
        items = []
        for c in range(classes):
            for k in range(per):
                noise = rng.normal(0, 30, (side, side, 3))
                img = np.clip(palette[c] + noise, 0, 255).astype(np.uint8)
                items.append((img, c, f"{split}_{c}_{k}"))
        shards.write_split(os.path.join(root, split), items, encoding="raw",
                           image_shape=(side, side, 3), classes=names,
                           compute_stats=split == "train")
    return str(root)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """make_prepared's dataset, one per test module; training on 1 thread (bit-identical runs)."""
    import torch
    torch.set_num_threads(1)
    return make_prepared(tmp_path_factory.mktemp("prepared"))


def prepared_synthetic(base, classes: int, train_per_class: int = 2, val_per_class: int = 1):
    """`alexnet prep imagenet` over a raw synthetic ImageNet-shaped set written under `base`;
    returns the prepared ROOT (a Path)."""
    from data_prep import synthetic
    from data_prep.__main__ import main as prep
    synthetic.generate(base / "raw", classes=classes, train_per_class=train_per_class,
                       val_per_class=val_per_class)
    assert prep(["imagenet", "--input", str(base / "raw"), "--out", str(base / "root"),
                 "--workers", "1"]) == 0
    return base / "root"


def course_notes_model():
    """The model section of the course-notes recipe (docs/paper.md §10): the one place it is
    written."""
    from paper_alexnet import config
    return config.load(config.find_config("course_notes_fashion_mnist")).model
