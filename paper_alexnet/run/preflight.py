"""What `alexnet train` and `alexnet eval` check before they write anything (docs/ARCHITECTURE.md
decision 6: a run directory is the unit of work, so a command that cannot start must not touch it).

A command that fails one of these checks exits 2 with one line naming the problem and the fix,
and leaves every file as it was (docs/training.md, "Exit codes"):
- `check_data_root(root)`: `--data` must be a prepared ROOT; one split of it ("pass ROOT, not
  ROOT/train") and raw images or archives ("run `alexnet prep …` first": `prep imagenet` for the
  ILSVRC layouts, `prep images` for class folders of any other dataset) are named as such.
- `check_classes(num_classes, root, split, whose)`: the network's `model.num_classes` equals the
  number of classes in the split's classes.tsv (a 1000-way net on 4-class data, or labels beyond
  the output layer, would otherwise train silently or die mid-step).
- `starting()`: turns the errors of such checks elsewhere (config values, devices, data that
  cannot serve the config) into `StartError`, the one exception the commands map to exit 2.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from data_prep import exits
from data_prep.files import raw_example
from data_prep.shards import FormatError, PreparedSplit
from paper_alexnet.config import ConfigError
from paper_alexnet.data import DataError
from paper_alexnet.placement import PlacementError


class StartError(exits.UsageError, ValueError):
    """The command cannot start as given (a value, a path, a device, data that does not fit);
    nothing was written."""


@contextlib.contextmanager
def starting():
    """Errors raised inside become StartError (same message): the start-up checks of a command."""
    try:
        yield
    except (ConfigError, PlacementError, FormatError, DataError) as err:
        raise StartError(str(err)) from err


def check_data_root(root) -> Path:
    """`root` as a Path when it holds a prepared train split; StartError naming a split folder or
    raw images given instead (other problems are left to PreparedSplit's own FormatError)."""
    root = Path(root)
    if (root / "train" / "manifest.json").is_file() or not root.is_dir():
        return root
    if (root / "manifest.json").is_file() or (root / "index.npz").is_file():
        raise StartError(f"--data {root} is one split of a prepared dataset, not its root: pass "
                         f"ROOT, not ROOT/{root.name} (here: --data {root.parent})")
    raw = raw_example(root)
    if raw is not None:
        path, verb = raw
        raise StartError(f"--data {root} looks like raw images or archives ({path.name}), not a "
                         f"prepared dataset: run 'alexnet prep {verb} --input {root} --out "
                         f"PREPARED' once, then pass --data PREPARED")
    return root


def check_classes(num_classes: int, root, split: str, whose: str) -> int:
    """The number of classes in ROOT/<split>/classes.tsv; StartError unless it is `num_classes`.
    `whose`: what holds num_classes, for the message ("model.num_classes" or a checkpoint)."""
    folder = "train" if split == "train_holdout" else split
    classes = len(PreparedSplit(Path(root) / folder).classes)
    if classes == num_classes:
        return classes
    where = Path(root) / folder / "classes.tsv"
    if whose == "model.num_classes":
        effect = ("labels beyond the output layer" if classes > num_classes
                  else f"a {num_classes}-way output layer for {classes} classes")
        raise StartError(f"model.num_classes={num_classes} but {where} lists {classes} classes "
                         f"({effect}): set model.num_classes={classes}")
    raise StartError(f"{whose} is a {num_classes}-class network (its model.num_classes) but "
                     f"{where} lists {classes} classes: evaluate it on the dataset it was "
                     f"trained on")
