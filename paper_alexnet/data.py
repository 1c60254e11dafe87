"""§2, §4.1, §6 input pipeline: prepared splits -> augmented float32 batches on the device.

Two backends behind one interface (`cfg.data.backend`), with the same augmentation semantics:
- "cpu": worker processes (a torch DataLoader over whole batches) decode with torchvision's CPU
  decoder (libjpeg-turbo: the same pixels as PIL, about twice as fast, docs/pipeline.md) and cut
  the uint8 windows (`augment.crop_flip`); the main process copies them to the device (pinned,
  non_blocking) where the mean is subtracted and PCA lighting added (`augment.photometric`);
- "gpu": workers only read the JPEG bytes; the batch is decoded in one call of
  `torchvision.io.decode_jpeg(list, device=device)` (nvjpeg on CUDA: its pixels differ from
  libjpeg-turbo's by about one level on average) and cut on the device.
Raw-encoded splits (CIFAR-10, Fashion-MNIST) need no decode: both backends send uint8 arrays.

Every random draw depends only on (seed, epoch, sample index) (see augment.py): 0 or N workers,
any rank, any backend give the same crops, flips and lighting for a sample. The sample order of an
epoch is a permutation drawn from (seed, epoch); each global batch of `optim.batch_size` is split
into `world_size` consecutive shares; the last incomplete batch is dropped. Mean image and PCA are
the train split's (`data_prep.stats`), used for every split.
"""
from __future__ import annotations

import os
import signal
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data_prep import exits, shards
from data_prep import stats as prep_stats
from paper_alexnet import augment

HOLDOUT_KEY = 2012  # fixed, not the run's seed: every run holds out the same train images


class DataError(exits.Failure, ValueError):
    """The prepared data cannot serve this config (too few images for a batch, images smaller
    than the crops, …); the message names the folder and the key to change."""


def open_split(root, split: str) -> shards.PreparedSplit:
    return shards.PreparedSplit(Path(root) / split)


def split_indices(root, split: str, cfg):
    """(PreparedSplit, sorted indices) of a split. With schedule.signal_split == "train_holdout",
    "train" is the train split less `data.holdout` images chosen once (HOLDOUT_KEY) and
    "train_holdout" is those images; any other split is used whole."""
    holding_out = cfg.schedule.signal_split == "train_holdout"
    if split == "train_holdout" and not holding_out:
        raise DataError("split 'train_holdout' exists only with schedule.signal_split="
                        "train_holdout (otherwise those images are trained on)")
    data = open_split(root, "train" if split == "train_holdout" else split)
    everything = np.arange(len(data), dtype=np.int64)
    if split not in ("train", "train_holdout") or not holding_out:
        return data, everything
    if not 0 < cfg.data.holdout < len(data):
        raise DataError(f"data.holdout={cfg.data.holdout} must be between 1 and the "
                        f"{len(data)} images of {data.path} minus one")
    held = np.sort(np.random.default_rng(HOLDOUT_KEY).permutation(len(data))[:cfg.data.holdout])
    return data, (held if split == "train_holdout" else np.setdiff1d(everything, held))


def epoch_order(seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """The sample order of an epoch: a permutation of `indices` drawn from (seed, epoch) only."""
    return np.random.default_rng([seed % 2**63, epoch, 0xA1E]).permutation(indices)


def rank_share(cfg, world_size: int) -> int:
    if cfg.optim.batch_size % world_size:
        raise DataError(f"optim.batch_size={cfg.optim.batch_size} (the global batch) does not "
                        f"divide among {world_size} processes; choose a multiple of {world_size}")
    return cfg.optim.batch_size // world_size


def _steps(n_images: int, cfg, where) -> int:
    full = n_images // cfg.optim.batch_size
    if full == 0:
        raise DataError(f"{where} has {n_images} training images, fewer than one batch of "
                        f"optim.batch_size={cfg.optim.batch_size}: set optim.batch_size="
                        f"{max(n_images, 1)} or less, or prepare more data")
    cap = cfg.train.steps_per_epoch
    return min(full, cap) if cap > 0 else full


def steps_per_epoch(root, cfg, world_size: int = 1) -> int:
    """Global batches per epoch (the last incomplete one dropped), capped by
    train.steps_per_epoch when it is above 0."""
    data, indices = split_indices(root, "train", cfg)
    rank_share(cfg, world_size)
    return _steps(len(indices), cfg, data.path)


def view_size(cfg, data) -> int:
    """Side of the views: the model's input size, which a stored image must contain for crops."""
    size, (h, w, c) = cfg.model.input_size, data.image_shape
    if cfg.data.geometry == "crop" and (h < size or w < size):
        raise DataError(f"{data.path} holds {h}x{w} images, smaller than model.input_size="
                        f"{size}: use data.geometry=resize for small images")
    if c != cfg.model.in_channels:
        raise DataError(f"{data.path} holds {c}-channel images, model.in_channels="
                        f"{cfg.model.in_channels}: set model.in_channels={c}")
    return size


def device_stats(root, cfg, data, device) -> dict:
    """The train split's mean image (C, H, W) and PCA as float32 tensors on the device."""
    s = prep_stats.load(root)
    if tuple(s["mean"].shape) != tuple(data.image_shape):
        raise DataError(f"mean image under {root} is {s['mean'].shape}, {data.path} holds "
                        f"{data.image_shape} images: re-run 'alexnet prep' for this root")
    out = {"mean": torch.as_tensor(s["mean"], dtype=torch.float32).permute(2, 0, 1).to(device)}
    if cfg.data.pca_std > 0:
        if data.image_shape[2] != 3:
            raise DataError(f"PCA lighting (data.pca_std={cfg.data.pca_std}) needs RGB images; "
                            f"{data.path} holds {data.image_shape[2]}-channel ones: set "
                            f"data.pca_std=0")
        out["eigval"] = torch.as_tensor(s["eigval"], dtype=torch.float32).to(device)
        out["eigvec"] = torch.as_tensor(s["eigvec"], dtype=torch.float32).to(device)
    return out


def _chw(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) -> a (C, H, W) view. PreparedSplit's arrays are read-only; we only copy out
    of them, so torch's warning about non-writable arrays does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(image).permute(2, 0, 1)


class _Batches(Dataset):
    """Item k = batch k of a fixed list, loaded in a worker process: labels, the views' (oy, ox,
    flip, source) and either uint8 pixels (cut into windows when job["cut"]) or JPEG bytes."""

    def __init__(self, data, batches, job: dict):
        self.data, self.batches, self.job = data, batches, job

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, k):
        idx, job = self.batches[k], self.job
        out = {"indices": torch.from_numpy(idx), "labels": torch.from_numpy(self.data.labels[idx])}
        if job["kind"] == "train":
            d = augment.draw_train(job["seed"], job["epoch"], idx, job["offsets"], job["flip"],
                                   job["pca_std"])
            oy, ox, flip, source = d.oy, d.ox, d.flip, np.arange(len(idx))
            out["alpha"] = torch.from_numpy(d.alpha.astype(np.float32))
        else:
            vy, vx, vf = job["views"]
            oy, ox, flip = np.tile(vy, len(idx)), np.tile(vx, len(idx)), np.tile(vf, len(idx))
            source = np.repeat(np.arange(len(idx)), len(vy))
        out.update(oy=torch.from_numpy(oy), ox=torch.from_numpy(ox),
                   flip=torch.from_numpy(flip), source=torch.from_numpy(source))
        if job["read_bytes"]:
            blobs = [np.frombuffer(self.data.read(i), dtype=np.uint8) for i in idx]
            out["bytes"] = torch.from_numpy(np.concatenate(blobs))
            out["lengths"] = torch.tensor([len(b) for b in blobs])
            return out
        if self.data.encoding == "jpeg":
            images = [decode_jpegs([self.data.read(i)], "cpu", job["channels"])[0] for i in idx]
        else:
            images = [_chw(self.data.image(i)) for i in idx]
        if job["cut"]:   # straight from each decoded image into the batch: no stacked copy
            out["images"] = augment.crop_flip(images, oy, ox, flip, job["size"], source)
        else:
            out["images"] = torch.stack(images)
        return out


def decode_jpegs(blobs, device, channels: int) -> list[torch.Tensor]:
    """JPEG bytes (bytes or uint8 tensors) -> (C, H, W) uint8 tensors on `device`, in one
    decode_jpeg call (nvjpeg's batched decode on CUDA)."""
    from torchvision.io import ImageReadMode, decode_jpeg
    blobs = [torch.frombuffer(bytearray(b), dtype=torch.uint8) if isinstance(b, bytes) else b
             for b in blobs]
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    with warnings.catch_warnings():   # torchvision 0.29 points to torchcodec, not a dependency here
        warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)
        return decode_jpeg(blobs, mode=mode, device=device)


def _on_device(batch, job, stats, cfg, device):
    """Decode (gpu backend), cut (if the workers did not), subtract the mean, add lighting."""
    non_blocking = device.type == "cuda"
    if "bytes" in batch:
        blobs = list(torch.split(batch["bytes"], batch["lengths"].tolist()))
        images = torch.stack(decode_jpegs(blobs, device, job["channels"]))
    else:
        images = batch["images"].to(device, non_blocking=non_blocking)
    oy, ox, flip, source = (batch[k] for k in ("oy", "ox", "flip", "source"))  # pinned on CUDA
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    shift = None
    if "alpha" in batch and "eigval" in stats:
        alpha = batch["alpha"].to(device, non_blocking=non_blocking)
        shift = augment.lighting_shift(alpha, stats["eigval"], stats["eigvec"], cfg.data.pca_scale)
    size = job["size"]
    if cfg.data.geometry == "resize":
        out = augment.resize_views(images, stats["mean"], size, flip, shift)
    else:
        views = images if job["cut"] else augment.crop_flip(images, oy, ox, flip, size, source)
        mean = augment.mean_views(stats["mean"], oy, ox, flip, size, cfg.data.mean)
        out = augment.photometric(views, mean, shift, fmt)
    labels = batch["labels"].to(device, non_blocking=non_blocking)
    return out.contiguous(memory_format=fmt), labels, batch["indices"]


def worker_count(setting) -> int:
    """`data.workers` as a number: "auto" is min(4, the CPU cores this process may use), so a
    small machine gets no more decode processes than it has cores (and no DataLoader warning)."""
    if setting != "auto":
        return int(setting)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:     # no sched_getaffinity (macOS)
        cores = os.cpu_count() or 1
    return min(4, cores)


def _stream(root, cfg, data, batches, job, device):
    """Set up eagerly (so configuration errors raise at the call), then a generator of batches."""
    device = torch.device(device)
    if cfg.data.backend not in ("cpu", "gpu"):
        raise DataError(f"data.backend {cfg.data.backend!r} is not one of cpu, gpu")
    job["read_bytes"] = cfg.data.backend == "gpu" and data.encoding == "jpeg"
    job["cut"] = cfg.data.backend == "cpu" and cfg.data.geometry == "crop"
    job["channels"] = data.image_shape[2]
    stats = device_stats(root, cfg, data, device)
    workers = worker_count(cfg.data.workers)
    loader = DataLoader(_Batches(data, batches, job), batch_size=None, num_workers=workers,
                        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None,
                        worker_init_fn=_worker_signals)
    return (_on_device(batch, job, stats, cfg, device) for batch in start_workers(loader))


def start_workers(loader: DataLoader):
    """iter(loader), its worker processes started with SIGTERM and SIGINT blocked.

    A scheduler's SIGTERM (timeout, SLURM, `kill -TERM -- -PGID`) and a terminal's Ctrl-C reach
    the whole process group. torch's workers die of SIGTERM, and the training process then fails
    with "DataLoader worker … is killed by signal" wherever it is, even while writing the
    checkpoint of the stop. Blocked, the signals wait in the workers (see `_worker_signals`), so
    only the training process decides when to stop (run/preemption.py); it then shuts its workers
    down as after any epoch. Signals that reach the training process while its workers start
    stay pending for those milliseconds and are handled right after."""
    if not loader.num_workers:
        return iter(loader)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT))
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_signals(worker_id: int):
    """A worker's `worker_init_fn`: its SIGINTs stay blocked for good; of its SIGTERMs it obeys
    only its parent's, which is how the training process ends a worker that does not stop by
    itself (multiprocessing's terminate() at exit). Where sigwaitinfo is missing (macOS), SIGTERM
    is unblocked: the worker dies of anyone's, as torch's workers do."""
    if not hasattr(signal, "sigwaitinfo"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM,))
        return
    threading.Thread(target=_obey_parent_sigterm, args=(os.getppid(),), daemon=True).start()


def _obey_parent_sigterm(parent: int):
    while True:
        if signal.sigwaitinfo((signal.SIGTERM,)).si_pid == parent:
            os._exit(0)


def train_batches(root, cfg, epoch: int, start_step: int = 0, rank: int = 0, world_size: int = 1,
                  device="cpu"):
    """This rank's (images, labels) for steps start_step.. of `epoch` (errors raise at the call)."""
    data, indices = split_indices(root, "train", cfg)
    share, batch = rank_share(cfg, world_size), cfg.optim.batch_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    order = epoch_order(cfg.train.seed, epoch, indices)
    lo = rank * share
    batches = [order[s * batch + lo: s * batch + lo + share]
               for s in range(start_step, _steps(len(indices), cfg, data.path))]
    size = view_size(cfg, data)
    h, w, _ = data.image_shape
    if cfg.data.geometry == "crop" and h != w:
        raise DataError(f"{data.path} holds {h}x{w} images; §2 crops assume square ones")
    job = dict(kind="train", seed=cfg.train.seed, epoch=epoch, size=size, flip=cfg.data.flip,
               offsets=h - size + 1 if cfg.data.geometry == "crop" else 1,
               pca_std=cfg.data.pca_std)
    return ((x, y) for x, y, _ in _stream(root, cfg, data, batches, job, device))


def eval_batches(root, split: str, cfg, view: str = "center", rank: int = 0, world_size: int = 1,
                 device="cpu", batch_size: int | None = None, limit: int | None = None):
    """(images, labels, indices) covering every image of `split` once across the ranks (disjoint
    consecutive shares, the last batch possibly partial). view "ten_crop" gives (N*10, C, S, S),
    the ten views of an image consecutive (§6). `limit`: only that many images, spread evenly
    over the split (figures of a split stored class by class)."""
    data, indices = split_indices(root, split, cfg)
    if limit is not None and limit < len(indices):
        indices = indices[np.linspace(0, len(indices) - 1, max(limit, 1)).round().astype(int)]
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    share = np.array_split(indices, world_size)[rank]
    per_batch = batch_size or cfg.eval.batch_size
    batches = [share[i:i + per_batch] for i in range(0, len(share), per_batch)]
    size = view_size(cfg, data)
    if cfg.data.geometry == "resize" and view != "center":
        raise DataError(f"eval view {view!r} needs data.geometry=crop; resized images have one "
                        f"view (use view='center')")
    h, w, _ = data.image_shape
    job = dict(kind="eval", size=size, views=augment.eval_offsets(h, w, size, view))
    return _stream(root, cfg, data, batches, job, device)
