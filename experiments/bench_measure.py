"""The measuring functions of `alexnet bench` (experiments/bench.py; docs/speed.md).

Each returns plain dicts of seconds and images/s. Timing: untimed warm-up calls first; then rounds
in which every variant runs in turn (a noisy machine disturbs them alike); on CUDA two events around
each round's calls and one synchronize after the end event; the median round is the figure.
`GroupedAlexNet` is Fig. 2 written with grouped convolutions: the yardstick the two towers must meet.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from experiments import bench_lrn
from paper_alexnet import config, lrn, optim
from paper_alexnet.model import AlexNet, conv1_padding
from paper_alexnet.run.precision import autocast
from paper_alexnet.train import forward_backward

LRN_SHAPES = {"conv1": (48, 55, 55), "conv2": (128, 27, 27)}   # one tower's (C, H, W), Fig. 2


class GroupedAlexNet(nn.Module):
    """Fig. 2 written as one stream (Caffe's bvlc_alexnet way): groups=2 in conv2, conv4, conv5
    (each tower sees only its own half), full conv3, fc6, fc7, fc8 (the crossings), LRN within
    each half of the channels (§3.3: the window never spans towers). Given the same weights
    (`copy_towers`) it computes the same function as `AlexNet(config)`."""

    def __init__(self, cfg: config.ModelConfig = config.ModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv2d(3, 96, 11, 4)
        self.conv2 = nn.Conv2d(96, 256, 5, 1, 2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, 1, 1)
        self.conv4 = nn.Conv2d(384, 384, 3, 1, 1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, 1, 1, groups=2)
        self.fc6, self.fc7 = nn.Linear(9216, 4096), nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, cfg.num_classes)
        self.lrn = None if cfg.lrn == "off" else lrn.LocalResponseNorm(cfg.lrn, cfg.lrn_impl)
        self.dropout = nn.Dropout(cfg.dropout)

    def _norm(self, x):
        """LRN per tower: each half of the channels on its own. A half is a strided view; it is
        made dense in x's layout first, so that the fast LRN (its Triton kernels on CUDA) takes
        it as it takes a tower's activations: the grouped model gets the same LRN speed."""
        if self.lrn is None:
            return x
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) \
            else torch.contiguous_format
        return torch.cat([self.lrn(h.contiguous(memory_format=fmt)) for h in x.chunk(2, dim=1)], 1)

    def forward(self, x):
        x = F.pad(x, conv1_padding(self.cfg.conv1_padding, x.shape[-2], x.shape[-1]))
        x = F.max_pool2d(self._norm(F.relu(self.conv1(x))), 3, 2)   # (N, 96, 27, 27)
        x = F.max_pool2d(self._norm(F.relu(self.conv2(x))), 3, 2)   # (N, 256, 13, 13)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))               # (N, 384, 13, 13)
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2).flatten(1)    # (N, 9216)
        x = self.dropout(F.relu(self.fc6(x)))
        x = self.dropout(F.relu(self.fc7(x)))
        return self.fc8(x)


def copy_towers(grouped: GroupedAlexNet, model: AlexNet) -> GroupedAlexNet:
    """Give `grouped` the weights of the two-tower `model`: tower A's kernels/units first."""
    with torch.no_grad():
        for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"):
            a, b = getattr(model.tower_a, name), getattr(model.tower_b, name)
            getattr(grouped, name).weight.copy_(torch.cat([a.weight, b.weight]))
            getattr(grouped, name).bias.copy_(torch.cat([a.bias, b.bias]))
        grouped.fc8.load_state_dict(model.fc8.state_dict())
    return grouped


def build_variant(name: str, device: torch.device) -> nn.Module:
    """The networks the step table compares (all with 1000 classes, random §5 / default init)."""
    if name == "faithful":
        return AlexNet(config.ModelConfig(), devices=(str(device),))
    if name == "no_lrn":
        return AlexNet(config.ModelConfig(lrn="off"), devices=(str(device),))
    if name == "grouped":
        return GroupedAlexNet().to(device)
    if name == "torchvision":
        import torchvision
        return torchvision.models.alexnet(weights=None, num_classes=1000).to(device)
    raise ValueError(f"experiments/bench_measure.py: unknown variant {name!r}; choose faithful, "
                     f"no_lrn, grouped or torchvision")


@dataclasses.dataclass(frozen=True)
class Setting:
    """How a step runs: the same for every network it compares."""
    dtype: torch.dtype | None     # autocast dtype, None = fp32
    channels_last: bool
    compiled: bool = False

    @property
    def label(self) -> str:
        return (f"{'bf16' if self.dtype == torch.bfloat16 else 'fp32'}"
                f"{' channels_last' if self.channels_last else ' contiguous'}"
                f"{' compiled' if self.compiled else ' eager'}")


def fast_setting(device: torch.device, compiled: bool = False) -> Setting:
    """The fastest step we know for the device: bf16 autocast + channels_last on CUDA (H100:
    8.2 vs 12.6 ms fp32 contiguous, docs/model.md); fp32 channels_last on the CPU (no bf16 units
    on the machines measured; channels_last 1.1-1.4x faster there, BENCHMARKS.md)."""
    if device.type == "cuda":
        return Setting(torch.bfloat16, True, compiled)
    return Setting(None, True, compiled)


def make_step(net: nn.Module, device: torch.device, setting: Setting, batch: int, seed: int = 0):
    """A closure running one training step on fixed random inputs (no host sync inside)."""
    fmt = torch.channels_last if setting.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt).train()
    optimizer = optim.make_optimizer(net, config.OptimConfig())
    runner = torch.compile(net) if setting.compiled else net
    gen = torch.Generator().manual_seed(seed)
    images = (torch.randn(batch, 3, 224, 224, generator=gen) * 50).to(device)
    images = images.contiguous(memory_format=fmt)
    labels = torch.randint(0, 1000, (batch,), generator=gen).to(device)

    def step():
        forward_backward(runner, optimizer, images, labels, device, setting.dtype)
        optimizer.step()
    return step


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rounds(fns: dict, device: torch.device, warmup: int, rounds: int, iters: int,
                errors: dict | None = None) -> dict:
    """Seconds per call of each fn: `warmup` untimed calls each, then `rounds` rounds in which
    each fn runs `iters` calls back to back; returns {name: [seconds per call, per round]}.
    With `errors` given, a fn that raises during its warm-up (a compile failure) is recorded
    there as "Type: message" and left out, instead of stopping the whole run."""
    live = {}
    for name, fn in fns.items():
        try:
            for _ in range(warmup):
                fn()
            live[name] = fn
        except Exception as err:   # noqa: BLE001 -- reported in the table and the JSON
            if errors is None:
                raise
            errors[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    _sync(device)
    times = {name: [] for name in live}
    for _ in range(rounds):
        for name, fn in live.items():
            if device.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(iters):
                    fn()
                end.record()
                end.synchronize()                  # the only sync: after the timed region
                times[name].append(start.elapsed_time(end) / 1000 / iters)
            else:
                t0 = time.perf_counter()
                for _ in range(iters):
                    fn()
                times[name].append((time.perf_counter() - t0) / iters)
    return times


def _summary(seconds: list[float], images: int) -> dict:
    med = statistics.median(seconds)
    return dict(ms=1000 * med, images_per_s=images / med, rounds_ms=[1000 * s for s in seconds])


def measure_lrn(device, batch: int, dtype, iters: int, formats=(True, False)) -> list[dict]:
    """LRN forward+backward at conv1 and conv2 sizes (one tower), fast vs reference."""
    out = []
    for layer, chw in LRN_SHAPES.items():
        for cl in formats:
            r = bench_lrn.benchmark(shape=(batch, *chw), dtype=dtype, device=device,
                                    iters=iters, warmup=2, channels_last=cl,
                                    impls=("fast", "reference"))
            out.append(dict(layer=layer, **r))
    return out


def measure_steps(device, batch: int, variants, settings, warmup: int, rounds: int,
                  iters: int = 1) -> dict:
    """Train-step time of every (variant, setting), interleaved round by round. A variant that
    fails (e.g. to compile) is reported with its error instead of a time."""
    fns, errors = {}, {}
    for setting in settings:
        for name in variants:
            torch.manual_seed(0)
            fns[(name, setting)] = make_step(build_variant(name, device), device, setting, batch)
    times = time_rounds(fns, device, warmup, rounds, iters, errors)
    out = {}
    for (name, s) in fns:
        row = dict(variant=name, setting=s.label)
        row.update(_summary(times[(name, s)], batch) if (name, s) in times
                   else dict(error=errors[(name, s)]))
        out[f"{name} | {s.label}"] = row
    return out


def measure_ten_crop(device, images: int, setting: Setting, warmup: int, rounds: int) -> dict:
    """§6 evaluation of the faithful network, model only: 10 views per image, softmax averaged."""
    fmt = torch.channels_last if setting.channels_last else torch.contiguous_format
    net = build_variant("faithful", device).to(memory_format=fmt).eval()
    views = torch.randn(images * 10, 3, 224, 224).to(device).contiguous(memory_format=fmt)

    @torch.no_grad()
    def evaluate():
        with autocast(device, setting.dtype):
            logits = net(views)
        return logits.float().softmax(1).view(images, 10, -1).mean(1)
    t = time_rounds({"ten_crop": evaluate}, device, warmup, rounds, 1)["ten_crop"]
    return dict(images=images, views=images * 10, setting=setting.label, **_summary(t, images))


def make_prepared_set(root, train_images: int, val_images: int = 0, unique: int = 64,
                      classes: int = 10) -> Path:
    """A prepared ROOT (train/ and val/ shards + stats) written with data_prep: `unique`
    synthetic images (data_prep.synthetic) through the §2 prep (shorter side 256, central crop,
    JPEG q90), repeated to `train_images` records (decoding does the same work for a repeat);
    the mean image and PCA are those of the unique images. Its classes.tsv lists 1000 classes (the
    images use the first `classes`), so the end-to-end run trains the paper's 1000-way network,
    which `alexnet train` checks against the data's class count."""
    from data_prep import shards, stats, synthetic
    from data_prep.pipeline import prepare_image
    params = dict(size=256, quality=90, max_pixels=10 ** 8, exif_transpose=False)
    prepared = []
    for k in range(unique):
        raw = synthetic.image_bytes(0, "train", k % classes, k // classes, classes)
        jpeg, pixels, _ = prepare_image(raw, f"bench_{k}.JPEG", params)
        prepared.append((jpeg, pixels, k % classes))
    root = Path(root)
    names = [(synthetic.wnid(c), f"synthetic class {c}") for c in range(max(classes, 1000))]
    for split, count in (("train", train_images), ("val", val_images)):
        if count <= 0:
            continue
        writer = shards.ShardWriter(root / split, "jpeg", (256, 256, 3), names)
        for i in range(count):
            jpeg, _, label = prepared[i % unique]
            writer.add(jpeg, label, f"{split}_{i}")
        extra = []
        if split == "train":
            acc = stats.empty((256, 256, 3))
            for _, pixels, _ in prepared:
                stats.accumulate(acc, pixels)
            stats.save(str(root / split), acc)
            extra = [shards.STATS]
        writer.finish(dict(params, source="experiments/bench_measure.py synthetic"), (), extra)
    return root


def _run_config(batch: int, setting: Setting, workers: int, backend: str, steps: int):
    return config.load(None, [f"optim.batch_size={batch}", f"data.workers={workers}",
                              f"data.backend={backend}", f"train.steps_per_epoch={steps}",
                              f"train.channels_last={str(setting.channels_last).lower()}"])


def measure_pipeline(root, device, batch: int, batches: int, workers, backends) -> dict:
    """`bench_loader.loader_benchmark`: training-loader images/s per backend and worker count, and
    the plain PIL loop and CPU decoders alone, on the prepared set; `best` = the fastest run."""
    from experiments.bench_loader import loader_benchmark
    cfg = _run_config(batch, fast_setting(device), 0, "cpu", batches + 1)
    result = loader_benchmark(root, cfg, workers=tuple(workers), batches=batches,
                              device=str(device), backends=tuple(backends))
    return dict(result, best=max(result["runs"], key=lambda r: r["images_per_s"]))


def measure_end_to_end(root, device, setting: Setting, batch: int, steps: int, warmup: int,
                       workers: int, backend: str, workdir) -> dict:
    """Training images/s of the training loop itself (`train.train`, what `alexnet train` runs:
    prepared shards → decode → augment → forward, loss, backward, the NaN/inf checks, the §5
    update, the running metrics), one epoch of `warmup + steps` steps logged every `warmup` steps:
    the rate is that of the log windows after the first (worker start-up, cudnn autotuning and
    compilation fall in the first; the epoch-end evaluation and checkpoint in none). Then, paired
    with it, the model-only rate of the same network and setting (`make_step`: fixed batch, no
    loader, no checks), timed right after (a shared machine's load drifts over minutes)."""
    import shutil

    from paper_alexnet import train
    from paper_alexnet.run import metrics
    run_dir = Path(workdir) / f"end_to_end_{backend}_{workers}"
    shutil.rmtree(run_dir, ignore_errors=True)
    precision = "bf16" if setting.dtype == torch.bfloat16 else "fp32"
    cfg = config.load(None, [
        f"optim.batch_size={batch}", f"data.workers={workers}", f"data.backend={backend}",
        f"train.steps_per_epoch={warmup + steps}", "train.epochs=1", f"train.log_every={warmup}",
        f"train.precision={precision}", f"train.channels_last={str(setting.channels_last).lower()}",
        f"train.compile={str(setting.compiled).lower()}", f"model.devices=[{device}]",
        "train.keep_last=1", "train.not_learning_epochs=0", f"eval.batch_size={batch}",
        "eval.ten_crop=false"])
    train.train(cfg, root, run_dir, quiet=True)
    first, *windows = metrics.read_metrics(run_dir, "train")     # first: the warm-up window
    seconds = windows[-1]["train_time_s"] - first["train_time_s"]
    images = sum(r["images"] for r in windows)
    shutil.rmtree(run_dir, ignore_errors=True)                    # a 0.5 GB checkpoint
    torch.manual_seed(0)
    step = make_step(build_variant("faithful", device), device, setting, batch)
    model_only = time_rounds({"faithful": step}, device, warmup, 1, steps)["faithful"][0]
    return dict(backend=backend, workers=workers, steps=steps, setting=setting.label,
                images_per_s=images / seconds, ms=1000 * seconds * batch / images,
                model_only_images_per_s=batch / model_only)
