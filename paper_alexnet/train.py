"""§5: training. One flat loop: batch → forward → cross-entropy (batch mean) → backward → §5 step.

`alexnet train --config FILE [--data ROOT] [--run-dir DIR] [section.key=value …]` (`main`), or
`train(cfg, data_root, run_dir)` from Python. A run directory is the unit of work
(docs/ARCHITECTURE.md decision 6): it holds config.yaml, metrics.jsonl, checkpoints/ and resumes by
itself from its newest valid checkpoint.

- After every epoch the network is evaluated on `schedule.signal_split` (centre crop) and the §5
  schedule sees that error (divide ε by 10 on a plateau, three times).
- No host synchronisation inside the step (docs/ARCHITECTURE.md decision 5): loss and error sums
  stay on the device (`metrics.RunningMeans`); they are read at log steps only. The NaN guard is
  explained at `_check_finite`.
- Reproducibility: the weights are initialised from `train.seed`; before every step the torch RNGs
  (dropout masks) are seeded from (seed, step, rank), and augmentation draws depend only on (seed,
  epoch, image index) (augment.py). So a run killed mid-epoch and resumed from a checkpoint
  continues bit-identically on the CPU (tests/test_train.py). The RNG states are also saved.
- A checkpoint is written every `train.checkpoint_every` steps and at the end of every epoch; every
  log record of that step is written first, so the log is never older than the checkpoint.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from paper_alexnet import (checkpoint, config, distributed, fault_hook, metrics, optim,
                           preemption, watchdog)
from paper_alexnet.evaluate import count_errors
from paper_alexnet.precision import autocast, resolve_precision


# Keys a resumed run may change (they do not change what is computed, only how long, how often it
# is logged or saved, and where it runs): e.g. `alexnet train --run-dir RUN train.epochs=120`
# extends a run. Any other difference from RUN/config.yaml is an error naming the keys.
RESUME_MAY_CHANGE = ("train.epochs", "train.log_every", "train.checkpoint_every", "train.keep_last",
                     "train.milestone_every", "train.compile", "data.workers", "model.devices",
                     "eval.batch_size", "eval.ten_crop",
                     "train.not_learning_epochs")


def resolve_run_config(requested, run_dir) -> tuple[config.RunConfig, dict]:
    """The config of the run in `run_dir` and the keys changed on resume ({key: [old, new]}).

    A new run takes `requested`. A run directory with a config.yaml keeps it: `requested=None`
    means "resume as saved"; a requested config may differ from it only in RESUME_MAY_CHANGE.
    """
    saved_path = Path(run_dir) / "config.yaml"
    if not saved_path.is_file():
        if requested is None:
            raise config.ConfigError(f"{saved_path} does not exist: pass --config FILE to start a "
                                     "new run in this directory")
        return requested, {}
    saved = config.load(saved_path)
    if requested is None:
        return saved, {}
    old, new = config.flatten(config.to_dict(saved)), config.flatten(config.to_dict(requested))
    changes = {k: [old[k], new[k]] for k in old if old[k] != new[k]}
    refused = {k: v for k, v in changes.items() if k not in RESUME_MAY_CHANGE}
    if refused:
        listed = "; ".join(f"{k}: saved {a!r}, given {b!r}" for k, (a, b) in refused.items())
        raise config.ConfigError(f"{saved_path} is the config of this run and the given one "
                                 f"differs in {listed}. Resume with the run's own config (omit "
                                 f"--config), or start a new --run-dir. Keys a resume may change: "
                                 f"{', '.join(RESUME_MAY_CHANGE)}")
    return requested, changes


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stops and nothing after the last good checkpoint is
    saved."""


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one training step (dropout masks): a function of (seed, step, rank) only,
    so a resumed run draws the same masks as an uninterrupted one."""
    return (seed * 1_000_003 + step * 8191 + rank * 131_071 + 1) % (2 ** 63)


def forward_backward(net, optimizer, images, labels, device: torch.device,
                     dtype: torch.dtype | None):
    """The step up to its gradients: forward under autocast, the §5 loss (batch-mean
    cross-entropy, in float32), backward. No host sync. Shared by the loop below and `alexnet
    bench` (experiments/bench.py), so the benchmark times exactly the training step; the loop
    checks the loss and calls optimizer.step() after it. Returns (logits, loss)."""
    with autocast(device, dtype):
        logits = net(images)                          # (n, classes)
    loss = F.cross_entropy(logits.float(), labels)    # §5: the batch MEAN
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return logits, loss


def _check_finite(first_bad: torch.Tensor, world, where: str):
    """Raise NonFiniteLoss if any step since the start (on any rank) had a non-finite loss.

    Design: every step records, on the device, the first step whose loss was not finite
    (`first_bad`, -1 if none); no sync. This is read (a sync point) before the optimiser step
    wherever reading is free or already happens: on the CPU at every step (CPU tensors are
    synchronous anyway, so the bad update is never applied), on a GPU at log steps and before every
    checkpoint save. On a GPU a bad update may therefore be applied in memory for up to log_every
    steps, but no checkpoint is written after it: the newest checkpoint on disk stays the last good
    one, and the message names the first bad step.
    """
    flag = first_bad.detach().to(distributed.collective_device(world, first_bad.device)).clone()
    if world.distributed:
        # the earliest bad step of any rank (−1 = none): all ranks then stop together
        flag = torch.where(flag < 0, torch.full_like(flag, 2 ** 62), flag)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        flag = torch.where(flag == 2 ** 62, torch.full_like(flag, -1), flag)
    bad = int(flag.item())   # SYNC POINT (see the docstring: CPU every step, GPU at log/save steps)
    if bad >= 0:
        raise NonFiniteLoss(f"the training loss or a gradient was NaN or infinite at step "
                            f"{bad + 1} (detected "
                            f"{where}); the run stopped before saving anything after it, so the "
                            "newest checkpoint is the last good state. Lower optim.lr, or check "
                            "the prepared data ('alexnet prep verify ROOT'), then resume.")


def evaluate_signal(model, data_lib, data_root, cfg, world, dtype) -> dict:
    """Centre-crop top-1/top-5 error on `schedule.signal_split` (the §5 schedule's signal), every
    image of the split seen once across the ranks."""
    split = cfg.schedule.signal_split
    _, indices = data_lib.split_indices(data_root, split, cfg)
    batches = data_lib.eval_batches(data_root, split, cfg, view="center", rank=world.rank,
                                    world_size=world.world_size, device=model.input_device)
    return count_errors([model], batches, views=1, split_len=len(indices), world=world,
                        dtype=dtype, index_space=indices)


def train(cfg: config.RunConfig | None, data_root, run_dir, *, after_step=None,
          quiet: bool = False) -> dict:
    """Train (or resume) the run in `run_dir`; returns a summary dict. `cfg=None` resumes with the
    run directory's own config. `after_step(global_step)` is called after every step, after any
    checkpoint of that step is saved (tests use it to kill a run)."""
    from paper_alexnet import data as data_lib   # the input pipeline (owned by data.py)
    from paper_alexnet import model as model_lib
    world = distributed.current_world()
    run_dir = Path(run_dir)
    cfg, changes = resolve_run_config(cfg, run_dir)
    distributed.barrier(world)        # every rank has read config.yaml before rank 0 rewrites it
    say = (lambda *a: None) if (quiet or not world.is_main) else (lambda *a: print(*a, flush=True))
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_text = config.dump(cfg)
        (run_dir / "config.yaml").write_text(config_text)
        say(f"run {run_dir}\n--- config ---\n{config_text}--------------")
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True)
    # Fixed batch shapes: let cuDNN time its kernels once and keep the fastest (docs/speed.md);
    # its choice may vary from run to run, so not when a deterministic run is asked for.
    torch.backends.cudnn.benchmark = not cfg.train.deterministic

    devices = distributed.replica_devices(world, cfg.model.devices)
    torch.manual_seed(cfg.train.seed)             # §5 init: the same on every rank
    model = model_lib.build(cfg.model, devices)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = optim.make_optimizer(model, cfg.optim)
    schedule = optim.make_schedule(cfg.schedule, optimizer)
    epoch, start_step, global_step, resumed_from = 0, 0, 0, None
    found = checkpoint.load_latest(run_dir)      # every rank reads the same newest checkpoint
    if found is not None:
        resumed_from, state = found
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        checkpoint.set_rng_state(state["rng"])
        epoch, start_step, global_step = state["epoch"], state["step"], state["global_step"]
        say(f"resumed from {resumed_from} (epoch {epoch}, step {start_step} of it, "
            f"{global_step} steps done)")
    log = metrics.MetricsLog(run_dir, resume_step=global_step if found else None) \
        if world.is_main else None
    if log is not None and changes:
        log.log("event", global_step, epoch, event="config_changed", changes=changes)

    net = distributed.wrap(model, world)
    if cfg.train.compile:
        net = torch.compile(net)                 # checkpoints save `model`, never this wrapper
    dtype = resolve_precision(cfg, model.input_device)
    steps = data_lib.steps_per_epoch(data_root, cfg, world.world_size)
    total_steps = steps * cfg.train.epochs
    local_batch = distributed.local_batch_size(cfg.optim.batch_size, world)
    running = metrics.RunningMeans(model.output_device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=model.output_device)
    # SIGTERM/SIGINT -> checkpoint and exit 75 (preemption.py); ALEXNET_FAULT: tests only
    fault, stop = fault_hook.from_env(world.rank), preemption.StopRequest().install()
    check_every_step = model.output_device.type == "cpu"
    # Throughput: wall clock between two log steps, each of which ends in a sync, so the window
    # holds exactly the training steps (evaluation and checkpoint writing fall outside windows).
    clock = dict(train_time=0.0, window_start=time.perf_counter(), first_step=global_step)
    last, val = {}, {}
    code_version = checkpoint.code_version()      # once: it runs git

    def save(epoch_done: int, step_in_epoch: int, milestone: bool):
        _check_finite(first_bad, world, "before saving a checkpoint")
        if world.is_main:
            log.sync()
            state = dict(model={k: v.detach().cpu() for k, v in model.state_dict().items()},
                         optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
                         epoch=epoch_done, step=step_in_epoch, global_step=global_step,
                         rng=checkpoint.rng_state(), config=config.to_dict(cfg),
                         code_version=code_version)
            checkpoint.save(run_dir, state, global_step, cfg.train.keep_last, milestone)
        clock["window_start"] = time.perf_counter()

    def stop_here(epoch_now: int, step_in_epoch: int, saved: bool):
        """Preempted (preemption.py): checkpoint this step unless just done, log it, stop."""
        if not saved:
            save(epoch_now, step_in_epoch, milestone=False)
        if log is not None:
            log.log("event", global_step, epoch_now + (step_in_epoch > 0), event="preempted",
                    signal=stop.signal_name)
        raise preemption.Preempted(stop.signal_name, global_step)

    def log_train(epoch_now: int):
        means = running.flush(distributed=world.distributed)     # SYNC POINT: log steps only
        now = time.perf_counter()
        window = now - clock["window_start"]
        clock["train_time"] += window
        rate = means["count"] * world.world_size / window if window > 0 else math.nan
        done = global_step - clock["first_step"]
        eta = (total_steps - global_step) * clock["train_time"] / done
        last.update(loss=means["loss"], error=means["top1"], lr=schedule.lr)
        if log:
            log.log("train", global_step, epoch_now + 1, **last, images=means["count"],
                    images_per_s=rate,
                    train_time_s=clock["train_time"])
        say(f"epoch {epoch_now + 1}/{cfg.train.epochs} step {global_step}/{total_steps} "
            f"loss {means['loss']:.4f} err {100 * means['top1']:.1f}% lr {schedule.lr:g} "
            f"{rate:.1f} img/s ETA {metrics.format_duration(eta)} (training only)")
        clock["window_start"] = time.perf_counter()

    try:
        for epoch in range(epoch, cfg.train.epochs):
            model.train()
            batches = data_lib.train_batches(data_root, cfg, epoch, start_step, world.rank,
                                             world.world_size, model.input_device)
            for step_in_epoch in range(start_step, steps):
                images, labels = next(batches)
                images = images.contiguous(memory_format=memory_format)
                labels = labels.to(model.output_device, non_blocking=True)
                torch.manual_seed(step_seed(cfg.train.seed, global_step, world.rank))
                logits, loss = forward_backward(net, optimizer, images, labels,
                                                model.input_device, dtype)
                fault_hook.inject(fault, global_step, loss, model)    # no-op unless testing
                finite = torch.isfinite(loss.detach()) & watchdog.finite_grads(model,
                                                                              loss.device)
                first_bad = torch.where(finite | (first_bad >= 0), first_bad,
                                        torch.full_like(first_bad, global_step))
                is_log = (global_step + 1) % cfg.train.log_every == 0 or step_in_epoch + 1 == steps
                is_ckpt = (global_step + 1) % cfg.train.checkpoint_every == 0
                if check_every_step or is_log or is_ckpt:
                    _check_finite(first_bad, world, "before the optimiser step")
                optimizer.step()
                top1, = metrics.topk_errors(logits.detach(), labels, ks=(1,))
                running.update(labels.shape[0], loss=loss.detach() * labels.shape[0], top1=top1)
                global_step += 1
                if is_log or is_ckpt:      # every record of a step is logged before its checkpoint
                    log_train(epoch)
                if is_ckpt and step_in_epoch + 1 < steps:
                    save(epoch, step_in_epoch + 1, milestone=False)
                if step_in_epoch + 1 < steps and stop.agreed(world, is_log or is_ckpt,
                                                             model.output_device):
                    stop_here(epoch, step_in_epoch + 1, saved=is_ckpt)
                if after_step is not None:
                    after_step(global_step)
            start_step = 0
            val = evaluate_signal(model, data_lib, data_root, cfg, world, dtype)
            model.train()
            dropped = schedule.observe(epoch + 1, val["top1"])
            if log:
                log.log("val", global_step, epoch + 1, split=cfg.schedule.signal_split,
                        top1=val["top1"], top5=val["top5"], images=val["images"])
                if dropped:
                    log.log("lr", global_step, epoch + 1, lr=schedule.lr, drops=schedule.drops)
            say(f"epoch {epoch + 1}/{cfg.train.epochs}: {cfg.schedule.signal_split} (centre crop) "
                f"top-1 error {100 * val['top1']:.2f}%, top-5 {100 * val['top5']:.2f}%"
                + (f"; learning rate divided -> {schedule.lr:g}" if dropped else ""))
            if log:
                watchdog.report_not_learning(log, run_dir, cfg.model.num_classes,
                                             cfg.train.not_learning_epochs, global_step, epoch + 1)
            save(epoch + 1, 0, milestone=(epoch + 1) % cfg.train.milestone_every == 0)
            if epoch + 1 < cfg.train.epochs and stop.agreed(world, True, model.output_device):
                stop_here(epoch + 1, 0, saved=True)
    finally:
        stop.restore()
        if log is not None:
            log.close()
    distributed.barrier(world)
    done, train_time = global_step - clock["first_step"], clock["train_time"]
    return dict(run_dir=str(run_dir), epochs=cfg.train.epochs, global_step=global_step,
                resumed_from=str(resumed_from) if resumed_from else None,
                train_loss=last.get("loss", math.nan), train_error=last.get("error", math.nan),
                val=val, lr=schedule.lr, train_time_s=train_time,
                images_per_s=done * cfg.optim.batch_size / train_time if train_time else math.nan,
                local_batch=local_batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="alexnet train", description="Train AlexNet (§5) into a run directory; resumes "
        "automatically from the run directory's newest valid checkpoint.")
    parser.add_argument("--config", help="recipe YAML (e.g. experiments/configs/paper.yaml); "
                        "optional when resuming: the run directory's config.yaml is used")
    parser.add_argument("--data", default=os.environ.get("ALEXNET_DATA"),
                        help="prepared dataset ROOT (default: $ALEXNET_DATA)")
    parser.add_argument("--run-dir", help="run directory (default: $ALEXNET_RUNS/<config name>)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error("no prepared data: pass --data ROOT or set ALEXNET_DATA")
    run_dir = args.run_dir
    if run_dir is None:
        runs = os.environ.get("ALEXNET_RUNS")
        if runs is None or args.config is None:
            parser.error("no run directory: pass --run-dir DIR, or set ALEXNET_RUNS and --config")
        run_dir = Path(runs) / Path(args.config).stem
    try:
        if args.config is None and not (Path(run_dir) / "config.yaml").is_file():
            parser.error(f"{run_dir} holds no config.yaml: pass --config FILE to start a run")
        cfg = None
        if args.config is not None or args.overrides:
            base = args.config if args.config is not None else Path(run_dir) / "config.yaml"
            cfg = config.load(base, args.overrides)
    except config.ConfigError as err:
        print(f"alexnet train: {err}", file=sys.stderr)
        return 2
    from data_prep.shards import FormatError
    world = distributed.init_from_env()
    try:
        result = train(cfg, args.data, run_dir)
    except preemption.Preempted as err:
        if world.is_main:
            print(f"alexnet train: {err}", file=sys.stderr)
        return preemption.EXIT_PREEMPTED
    except (config.ConfigError, NonFiniteLoss, checkpoint.CheckpointError, FormatError) as err:
        print(f"alexnet train: {err}", file=sys.stderr)      # FormatError: --data is not prepared
        return 1
    except OSError as err:   # e.g. a full disk: checkpoints are atomic, the newest one is intact
        print(f"alexnet train: {err}; the newest checkpoint in {run_dir} is intact: fix the cause "
              "(e.g. free disk space) and run the same command to resume", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown(world)
    if world.is_main:
        print(f"done: {result['global_step']} steps, {result['images_per_s']:.1f} images/s "
              f"(training only); run directory {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
