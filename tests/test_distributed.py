"""distributed.py: two gloo processes under torchrun, each with half of every global batch, end with
the same parameters as one process on the whole batches (DDP averages the two half-batch means =
the mean over the global batch, §5); two processes evaluating their shares of the images give
exactly one process's errors; only rank 0 writes files; `shutdown` leaves no gloo thread behind."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from paper_alexnet import config
from paper_alexnet.run import checkpoint, metrics
from paper_alexnet.run.distributed import World, local_batch_size, replica_devices
from paper_alexnet.evaluate import evaluate
from paper_alexnet.train import train
from conftest import make_prepared
from faults import REPO, child_env
from test_train import SMALL_NET

# The Figure-1 net has no dropout: with dropout the ranks would draw their own masks (seeded by
# (seed, step, rank)), which no single process reproduces.
SETTINGS = SMALL_NET + ["train.steps_per_epoch=3", "train.epochs=1", "train.log_every=1",
                        "model.devices=[auto]"]


def test_global_batch_is_split_evenly():
    assert local_batch_size(128, World(0, 4)) == 32
    with pytest.raises(ValueError, match="divisible"):
        local_batch_size(128, World(0, 3))
    assert replica_devices(World(), ("cpu",)) == ("cpu",)
    with pytest.raises(ValueError, match="auto"):
        replica_devices(World(1, 2), ("cuda:0", "cuda:1"))


def test_two_gloo_processes_equal_one(data_root, tmp_path):
    cfg = config.load(None, SETTINGS)
    single = tmp_path / "single"
    train(cfg, data_root, single, quiet=True)

    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "paper_alexnet", "train", "--data", data_root, "--run-dir", str(run),
           *[f"{s}" for s in SETTINGS]]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("{}\n")
    cmd.insert(cmd.index("--data"), "--config")
    cmd.insert(cmd.index("--config") + 1, str(recipe))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    _, a = checkpoint.load_latest(single)
    _, b = checkpoint.load_latest(run)
    assert a["global_step"] == b["global_step"] == 3
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-5, atol=1e-6)
    assert a["config"] == b["config"]
    # one metrics file, one log line per step (rank 0 only), the same losses to float tolerance
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["images"] for r in train_records] == [8, 8, 8]      # 2 ranks x 4 = the global batch
    single_losses = [r["loss"] for r in metrics.read_metrics(single, "train")]
    assert [r["loss"] for r in train_records] == pytest.approx(single_losses, rel=1e-5)


def test_two_gloo_processes_evaluate_as_one(tmp_path):
    """`alexnet eval` of a two-net ensemble, centre crop and ten crops, as two gloo processes (each
    evaluates its share of the images; the error sums are all-reduced) equals one process exactly.
    21 val images of 7 classes: shares of 11 and 10, in batches of 4, so every count ends in a
    partial batch, and the ranks' and the single process's batches all differ."""
    root = make_prepared(tmp_path / "data", classes=7, train_per_class=2, val_per_class=3)
    nets = []
    for seed in (0, 1):
        cfg = config.load(None, SMALL_NET + ["model.num_classes=7", "train.steps_per_epoch=1",
                                             "train.epochs=1", f"train.seed={seed}",
                                             "eval.ten_crop=true"])
        train(cfg, root, tmp_path / f"net{seed}", quiet=True)
        nets.append(checkpoint.load_latest(tmp_path / f"net{seed}")[0])
    one = evaluate(nets, root, "val", ten_crop=True, batch_size=4)

    out = tmp_path / "two.json"
    args = [sys.executable, "-m", "paper_alexnet", "eval", "--data", root, "--out", str(out),
            "--batch-size", "4", *[a for net in nets for a in ("--checkpoint", str(net))]]
    world = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=free_port(), WORLD_SIZE=2,
                 LOCAL_WORLD_SIZE=2)
    ranks = [subprocess.Popen(args, cwd=REPO, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              env=child_env(**world, RANK=r, LOCAL_RANK=r)) for r in (0, 1)]
    for p in ranks:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stdout[-3000:] + stderr[-3000:]
    two = json.loads(out.read_text())
    assert two["images"] == one["images"] == 21
    for view in ("center", "ten_crop"):
        assert two[view] == one[view]               # exactly: sums of whole counts, one division
        assert 0 < one[view]["top1"] < 1, one[view]         # not a trivial number


# A DDP step, the last collectives train() makes (an all-reduce, then a barrier), then shutdown.
# Each of two processes prints its threads before init_from_env and after shutdown.
SHUTDOWN_SCRIPT = """
import json, os, torch
from paper_alexnet.run import distributed

def threads():
    return sorted(open(f"/proc/self/task/{t}/comm").read().strip()
                  for t in os.listdir("/proc/self/task"))

def one_step(world):
    net = distributed.wrap(torch.nn.Linear(3, 2), world)     # DDP imports torch._dynamo
    net(torch.ones(4, 3)).sum().backward()
    distributed.all_reduce_sum(torch.ones(1), world)
    distributed.barrier(world)

before = threads()
world = distributed.init_from_env()
one_step(world)
distributed.shutdown(world)
print(json.dumps(dict(rank=world.rank, before=before, after=threads())))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="lists threads through /proc")
def test_shutdown_leaves_no_gloo_thread(tmp_path):
    """destroy_process_group must free the gloo group, whose destructor joins its worker threads:
    a worker that lived on into interpreter shutdown aborted the process (SIGABRT, 3 of 130
    fault-free torchrun runs before the fix; distributed.shutdown explains). Launched as torchrun
    would, without its agent (faster)."""
    script = tmp_path / "one_step.py"
    script.write_text(SHUTDOWN_SCRIPT)
    world = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=free_port(), WORLD_SIZE=2,
                 LOCAL_WORLD_SIZE=2)
    ranks = [subprocess.Popen([sys.executable, str(script)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=child_env(**world, RANK=r, LOCAL_RANK=r)) for r in (0, 1)]
    outputs = [p.communicate(timeout=120) for p in ranks]
    for p, (out, err) in zip(ranks, outputs):
        assert p.returncode == 0, out[-3000:] + err[-3000:]
        report = json.loads(out.splitlines()[-1])
        assert not [t for t in report["after"] if "gloo" in t], report
        assert len(report["after"]) == len(report["before"]), report
