"""Shared helpers of the fault-injection tests (tests/test_faults_*.py; RELIABILITY.md): small
configs, subprocess runners, directory snapshots, run comparisons. The tiny prepared dataset
(make_prepared, fixture data_root) is in conftest.py."""
import hashlib
import os
import subprocess
import sys

from paper_alexnet.run.callbacks import Callback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The Figure-1 net at 64 px, 4 classes: a few thousand parameters, for behaviour that does not
# depend on size (files, signals, steps). Training runs on 1 thread so that a subprocess and the
# test process compute bit-identical numbers.
SMALL_NET = ["model.arch=cifar10_4layer", "model.input_size=64", "model.num_classes=4",
             "optim.lr=0.001", "optim.batch_size=8", "data.workers=0", "eval.batch_size=16",
             "eval.ten_crop=false", "model.devices=[cpu]"]


class AtStep(Callback):
    """Calls `fn(global_step)` after every step, after that step's checkpoint (tests kill, signal
    or interrupt a run there)."""

    def __init__(self, fn):
        self.fn = fn

    def on_step_end(self, progress):
        self.fn(progress.global_step)


def write_recipe(path, overrides):
    """A YAML recipe holding `section.key=value` overrides (what `alexnet train --config` reads)."""
    import yaml

    from paper_alexnet import config
    cfg = config.load(None, overrides)
    path.write_text(yaml.safe_dump(config.to_dict(cfg), sort_keys=False))
    return path


def child_env(**extra):
    """Environment of a child python: this checkout first on the path, one thread, no fault."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("ALEXNET_FAULT", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def program(env=None) -> list:
    """How a child runs `alexnet`: `-m paper_alexnet`, or the fault runner (tests/faulty.py) when
    `env` names a fault (ALEXNET_FAULT, tests/fault_hook.py)."""
    if env and env.get("ALEXNET_FAULT"):
        return [os.path.join(REPO, "tests", "faulty.py")]
    return ["-m", "paper_alexnet"]


def alexnet(args, env=None, timeout=300, **kwargs):
    """Run `python -m paper_alexnet ARGS` to completion; the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, *program(env), *map(str, args)],
                          env=env or child_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def torchrun(args, nproc=2, max_restarts=0, env=None, timeout=400):
    """`torchrun --nproc-per-node N --max-restarts R -m paper_alexnet ARGS` on the CPU (gloo)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}",
           "--monitor-interval=0.5", *program(env), *map(str, args)]
    return subprocess.run(cmd, env=env or child_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def snapshot(folder) -> dict:
    """{relative path: sha256 (or link target)} of everything under `folder` (links not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, folder)
            if os.path.islink(full):
                out[rel] = "-> " + os.readlink(full)
            elif os.path.isfile(full):
                with open(full, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def same_weights(a: dict, b: dict) -> bool:
    import torch
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_records(run_dir, kind="train"):
    """(step, loss, error) of train records, or (step, top1, top5) of val records."""
    from paper_alexnet.run import metrics
    keys = ("loss", "error") if kind == "train" else ("top1", "top5")
    return [(r["step"], *(r[k] for k in keys)) for r in metrics.read_metrics(run_dir, kind)]


def assert_same_run(run, reference):
    """Same train and val records and bit-identical final weights."""
    from paper_alexnet.run import checkpoint
    assert train_records(run) == train_records(reference)
    assert train_records(run, "val") == train_records(reference, "val")
    assert same_weights(checkpoint.load_latest(run)[1]["model"],
                        checkpoint.load_latest(reference)[1]["model"])
