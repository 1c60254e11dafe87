"""§5 at scale (docs/ARCHITECTURE.md decision 7): torchrun + DDP, each process one full two-tower
replica.

The paper trained one network on two GTX 580s, one tower per GPU (§3.2). Here a process holds that
whole two-tower replica (on two GPUs, on one, or on the CPU) and DDP averages gradients between the
processes. DDP is built with `device_ids=None`, the form it needs for a module that spans several
devices. The configured batch (128, §5) is the GLOBAL batch: each of the `world_size` ranks
trains on its share (`batch_size // world_size` images, `data.train_batches` hands out the shares),
and DDP's gradient average over ranks of per-rank batch means equals the mean over the global batch
because the shares are equal.

Only rank 0 writes files (config, metrics, checkpoints, results); every rank reads the same newest
checkpoint when a run resumes.

Launch: `torchrun --nproc-per-node N -m paper_alexnet train …` (or `alexnet train` under it).
torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT; without them
everything here is the single-process identity.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """Where this process stands: rank among world_size, and its rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_env(backend: str | None = None) -> World:
    """Join the process group torchrun describes in the environment (no-op for one process).

    Backend: NCCL where CUDA is present, gloo on the CPU (or as named).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return World()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    world = World(rank, world_size, local_rank, local_world)
    if not dist.is_initialized():
        _import_before_the_group()
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            # NCCL collectives run on the current device: make it this rank's first GPU
            torch.cuda.set_device(torch.device(replica_devices(world, ("auto",))[0]))
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                store=_attempt_store(rank, world_size))
    return world


def _import_before_the_group():
    """Import torch.distributed.nn while no process group exists. Its functions take
    `group=group.WORLD` as a default argument, bound at import time, and DDP's constructor imports
    it (through torch._dynamo). Imported after init_process_group, those ten defaults hold the
    default group for good: destroy_process_group cannot free it, and gloo's worker threads live on
    into interpreter shutdown, where one of them aborted the process (see `shutdown`)."""
    import torch.distributed.nn  # noqa: F401


def _attempt_store(rank: int, world_size: int):
    """The env:// store under a prefix of its own per torchrun attempt. torchrun --max-restarts
    keeps ONE store across restarts (torch 2.14), so a restarted group would read the previous
    attempt's keys, e.g. the dead peers' addresses, and fail with "Connection refused" (4 of
    8 restarts here before this; pytorch/pytorch#167288). tests/test_faults_torchrun.py."""
    from torch.distributed.constants import default_pg_timeout
    store, _, _ = next(dist.rendezvous("env://", rank, world_size, timeout=default_pg_timeout))
    store.set_timeout(default_pg_timeout)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"paper_alexnet/attempt_{attempt}", store)


def current_world() -> World:
    """The World of an already initialised process group (or the single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    world_size = dist.get_world_size()
    rank = dist.get_rank()
    return World(rank, world_size, int(os.environ.get("LOCAL_RANK", rank)),
                 int(os.environ.get("LOCAL_WORLD_SIZE", world_size)))


def replica_devices(world: World, model_devices: tuple[str, ...]) -> tuple[str, ...]:
    """The devices of this rank's replica.

    Single process: `model.devices` as configured. Under torchrun with `model.devices=[auto]`: the
    GPUs of this machine are split between its local ranks, two per replica where there are enough
    (the paper's placement: towers on cuda:2r and cuda:2r+1), else one; the CPU without CUDA.
    Explicit device names under torchrun would put every rank on the same devices: refused.
    """
    if not world.distributed:
        return tuple(model_devices)
    if tuple(model_devices) != ("auto",):
        if tuple(model_devices) == ("cpu",):
            return ("cpu",)
        raise ValueError(f"model.devices={list(model_devices)} names devices explicitly, which "
                         f"every one of the {world.world_size} ranks would share; use "
                         "model.devices=[auto] under torchrun (each rank then takes its own GPUs)")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return ("cpu",)
    per_replica = 2 if count >= 2 * world.local_world_size else 1
    if count < world.local_world_size:
        raise ValueError(f"{world.local_world_size} processes on this machine but only {count} "
                         "CUDA device(s): use --nproc-per-node <= the number of GPUs")
    first = world.local_rank * per_replica
    return tuple(f"cuda:{first + i}" for i in range(per_replica))


def local_batch_size(global_batch: int, world: World) -> int:
    """§5's batch is global: each rank gets an equal share (an uneven split biases the mean)."""
    if global_batch % world.world_size:
        raise ValueError(f"optim.batch_size={global_batch} does not split evenly over "
                         f"{world.world_size} processes; choose a batch size divisible by the "
                         "number of processes")
    return global_batch // world.world_size


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """DDP around the replica (device_ids=None: the module spans its own devices), or the model."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=None)


def all_reduce_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Sum over ranks, in place (a collective: call it at log steps, not every step)."""
    if world.distributed:
        nccl = dist.get_backend() == "nccl"
        if nccl == (tensor.device.type == "cuda"):
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        else:   # NCCL reduces CUDA tensors only, gloo here CPU ones: a round trip
            there = tensor.to(torch.device("cuda", torch.cuda.current_device()) if nccl
                              else torch.device("cpu"))
            dist.all_reduce(there, op=dist.ReduceOp.SUM)
            tensor.copy_(there)
    return tensor


def collective_device(world: World, fallback: torch.device) -> torch.device:
    """Where tensors for collectives live: the CPU for gloo, this rank's GPU for NCCL."""
    if world.distributed and dist.get_backend() == "nccl":
        return fallback
    return torch.device("cpu")


def barrier(world: World):
    if world.distributed:
        dist.barrier()


def shutdown(world: World):
    """Destroy the process group, and with it gloo's worker threads, before the interpreter exits.

    The group is freed (its destructor joins the threads) only if nothing else holds it: call this
    after the DDP wrapper is gone (train() has returned). A worker thread that outlives the group
    may still hold the last collectives (train()'s final barrier keeps the all-reduce it waited
    on); releasing their tensors takes the GIL, and a thread asking for the GIL while the
    interpreter shuts down aborts the process ("terminate called without an active exception",
    SIGABRT: 3 of 130 fault-free torchrun runs before `_import_before_the_group`).
    tests/test_distributed.py checks that no gloo thread is left."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
