"""§5: training. One flat loop: batch → forward → cross-entropy (batch mean) → backward → §5 step.

`alexnet train --config FILE [--data ROOT] [--run-dir DIR] [section.key=value …]` (`main`), or
`train(cfg, data_root, run_dir)` from Python. A run directory is the unit of work
(docs/ARCHITECTURE.md decision 6): it holds config.yaml, metrics.jsonl, checkpoints/ and resumes by
itself from its newest valid checkpoint.

- After every epoch the network is evaluated on `schedule.signal_split` (centre crop) and the §5
  schedule sees that error (divide ε by 10 on a plateau, three times).
- No host synchronisation inside the step (docs/ARCHITECTURE.md decision 5): loss and error sums
  stay on the device (`metrics.RunningMeans`); they are read at log steps only. The NaN guard is
  explained at `watchdog.check_finite`.
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

from data_prep.progress import seconds_left
from paper_alexnet import (checkpoint, config, distributed, fault_hook, metrics,
                           preemption, preflight, resume, watchdog)
from paper_alexnet.callbacks import Progress, first_stop
from paper_alexnet.evaluate import count_errors
from paper_alexnet.precision import autocast, resolve_precision
from paper_alexnet.watchdog import NonFiniteLoss


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
          quiet: bool = False, allow_change=(), callbacks=()) -> dict:
    """Train (or resume) the run in `run_dir`; returns a summary dict. `cfg=None` resumes with the
    run directory's own config; `allow_change`: keys of resume.ON_REQUEST a resume may change.
    Nothing is written before every start-up check passed (preflight.StartError otherwise).
    `after_step(global_step)` is called after every step, after any checkpoint of that step is
    saved (tests use it to kill a run). `callbacks`: hooks at the start, after every step and after
    every epoch that may stop the run, checkpointed and resumable (paper_alexnet/callbacks.py)."""
    from paper_alexnet import data as data_lib
    world = distributed.current_world()
    run_dir = Path(run_dir)
    with preflight.starting():
        run = resume.start(cfg, data_root, run_dir, world, tuple(allow_change))
    cfg, model, optimizer, schedule = run["cfg"], run["model"], run["optimizer"], run["schedule"]
    epoch, start_step, global_step = run["epoch"], run["start_step"], run["global_step"]
    steps, memory_format, resumed_from = run["steps"], run["memory_format"], run["resumed_from"]
    data_root, changes = run["root"], run["changes"]
    distributed.barrier(world)        # every rank has read config.yaml before rank 0 rewrites it
    say = (lambda *a: None) if (quiet or not world.is_main) else (lambda *a: print(*a, flush=True))
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_text = config.dump(cfg)
        (run_dir / "config.yaml").write_text(config_text)
        say(f"run {run_dir}\n--- config ---\n{config_text}--------------")
        if run["note"]:
            say(run["note"])
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True)
    # Fixed batch shapes: let cuDNN time its kernels once and keep the fastest (docs/speed.md);
    # its choice may vary from run to run, so not when a deterministic run is asked for.
    torch.backends.cudnn.benchmark = not cfg.train.deterministic
    if resumed_from is not None:
        say(f"resumed from {resumed_from}: "
            + resume.position(epoch, start_step, global_step, steps, cfg.train.epochs))
    log = metrics.MetricsLog(run_dir, resume_step=global_step if resumed_from else None) \
        if world.is_main else None
    if log is not None and run["data_changed"]:
        print(f"alexnet train: WARNING: {run['data_changed']}", file=sys.stderr, flush=True)
        log.log("event", global_step, epoch, event="data_changed", data=run["data"])
    if log is not None and changes:
        allowed = [k for k in changes if k in allow_change]
        log.log("event", global_step, epoch, event="config_changed", changes=changes,
                **({"allowed_by": [f"--allow-change {k}" for k in allowed]} if allowed else {}))
        if allowed:
            say("changed on request, recorded in metrics.jsonl: " + "; ".join(
                f"{k} {changes[k][0]!r} -> {changes[k][1]!r}" for k in allowed))

    net = distributed.wrap(model, world)
    if cfg.train.compile:
        net = torch.compile(net)                 # checkpoints save `model`, never this wrapper
    dtype = resolve_precision(cfg, model.input_device)
    total_steps = steps * cfg.train.epochs
    local_batch = distributed.local_batch_size(cfg.optim.batch_size, world)
    running = metrics.RunningMeans(model.output_device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=model.output_device)
    # SIGTERM/SIGINT -> checkpoint and exit 75 (preemption.py); ALEXNET_FAULT: tests only
    fault = fault_hook.from_env(world.rank)
    stop = preemption.StopRequest(announce=preemption.TRAINING if world.is_main else None).install()
    check_every_step = model.output_device.type == "cpu"
    # Throughput: wall clock between two log steps, each of which ends in a sync, so the window
    # holds exactly the training steps (evaluation and checkpoint writing fall outside windows).
    clock = dict(train_time=0.0, window_start=time.perf_counter(), first_step=global_step)
    last, val = {}, {}
    code_version = checkpoint.code_version()      # once: it runs git

    def save(epoch_done: int, step_in_epoch: int, milestone: bool):
        watchdog.check_finite(first_bad, world, "before saving a checkpoint")
        if world.is_main:
            log.sync()
            state = dict(model={k: v.detach().cpu() for k, v in model.state_dict().items()},
                         optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
                         epoch=epoch_done, step=step_in_epoch, global_step=global_step,
                         rng=checkpoint.rng_state(), config=config.to_dict(cfg),
                         code_version=code_version, data=run["data"])
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
        eta = seconds_left(total_steps - global_step, done, clock["train_time"])
        last.update(loss=means["loss"], error=means["top1"], lr=schedule.lr)
        if log:
            log.log("train", global_step, epoch_now + 1, **last, images=means["count"],
                    images_per_s=rate,
                    train_time_s=clock["train_time"])
        say(f"epoch {epoch_now + 1}/{cfg.train.epochs} step {global_step}/{total_steps} "
            f"loss {means['loss']:.4f} err {100 * means['top1']:.1f}% lr {schedule.lr:g} "
            f"{rate:.1f} img/s ETA {metrics.format_duration(eta)} (training only)")
        clock["window_start"] = time.perf_counter()

    def hook(name: str, epoch_now: int, step_in_epoch: int, val_now=None) -> str | None:
        """The callbacks' answer at this point; a stop is logged (an "event" record)."""
        reason = first_stop(callbacks, name, Progress(run_dir, epoch_now, step_in_epoch,
                                                      global_step, cfg.train.epochs,
                                                      dict(val_now or {})))
        if reason and log is not None:
            log.log("event", global_step, epoch_now + (step_in_epoch > 0), event="stopped",
                    reason=reason)
        if reason:
            say(f"stopped: {reason}")
        return reason

    stopped = None
    try:
        stopped = hook("on_start", epoch, start_step)
        for epoch in range(epoch, epoch if stopped else cfg.train.epochs):
            model.train()
            batches = run.pop("batches", None) or data_lib.train_batches(
                data_root, cfg, epoch, start_step, world.rank, world.world_size,
                model.input_device)
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
                    watchdog.check_finite(first_bad, world, "before the optimiser step")
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
                stopped = hook("on_step_end", epoch, step_in_epoch + 1)
                if stopped and step_in_epoch + 1 < steps:    # mid-epoch: checkpoint it here
                    if not is_ckpt:
                        save(epoch, step_in_epoch + 1, milestone=False)
                    break
            if stopped and step_in_epoch + 1 < steps:
                break                                        # checkpointed mid-epoch above
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
            stopped = stopped or hook("on_epoch_end", epoch + 1, 0, val)
            if stopped:
                break
            if epoch + 1 < cfg.train.epochs and stop.agreed(world, True, model.output_device):
                stop_here(epoch + 1, 0, saved=True)
    except NonFiniteLoss as err:      # say what works now (a checkpoint to resume, or none)
        raise NonFiniteLoss(resume.diverged(err.step, err.detected, run_dir, data_root,
                                            cfg.optim.lr), err.step, err.detected) from None
    finally:
        stop.restore()
        if log is not None:
            log.close()
    distributed.barrier(world)
    done, train_time = global_step - clock["first_step"], clock["train_time"]
    return dict(run_dir=str(run_dir), epochs=cfg.train.epochs, global_step=global_step,
                resumed_from=str(resumed_from) if resumed_from else None,
                train_loss=last.get("loss", math.nan), train_error=last.get("error", math.nan),
                val=val, lr=schedule.lr, train_time_s=train_time, stopped=stopped,
                images_per_s=done * cfg.optim.batch_size / train_time if train_time else math.nan,
                local_batch=local_batch)


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done; 2 the command cannot start as given (nothing written); 1 the run
    failed; 75 preempted (run the same command again); 130 aborted by a second Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="alexnet train", description="Train AlexNet (§5) into a run directory; resumes "
        "automatically from the run directory's newest valid checkpoint.")
    parser.add_argument("--config", help="a recipe name (paper, no_lrn, …: experiments/configs; "
                        "found from any directory) or a config YAML file (default: when resuming, "
                        "the run directory's config.yaml)")
    parser.add_argument("--data", default=os.environ.get("ALEXNET_DATA"),
                        help="prepared dataset ROOT (default: $ALEXNET_DATA)")
    parser.add_argument("--run-dir", help="run directory (default: $ALEXNET_RUNS/<config name>)")
    parser.add_argument("--allow-change", action="append", default=[], metavar="KEY",
                        choices=resume.ON_REQUEST, help="let a resume change KEY (e.g. a lower "
                        "optim.lr after a NaN stop); the change is recorded in metrics.jsonl "
                        "(default: none; a resume may not change the rate)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides on top of --config, e.g. optim.lr=0.02 "
                        "(`alexnet config` lists every key, its default and its §)")
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
        return preflight.EXIT_USAGE
    from data_prep.shards import FormatError
    world = distributed.init_from_env()
    try:
        result = train(cfg, args.data, run_dir, allow_change=args.allow_change)
    except preflight.StartError as err:
        print(f"alexnet train: {err}", file=sys.stderr)
        return preflight.EXIT_USAGE
    except preemption.Preempted as err:
        if world.is_main:
            print(f"alexnet train: {err}", file=sys.stderr)
        return preemption.EXIT_PREEMPTED
    except KeyboardInterrupt:
        print(f"alexnet train: aborted by a second Ctrl-C; the checkpoints in {run_dir} are "
              "intact (one being written is discarded): run the same command to resume",
              file=sys.stderr)
        return preemption.EXIT_ABORTED
    except (config.ConfigError, NonFiniteLoss, checkpoint.CheckpointError, FormatError) as err:
        print(f"alexnet train: {err}", file=sys.stderr)      # FormatError: data gone mid-run
        return 1
    except OSError as err:   # e.g. a full disk: checkpoints are atomic, the newest one is intact
        kept = (f"the newest checkpoint in {run_dir} is intact" if
                checkpoint.list_checkpoints(run_dir) else f"{run_dir} holds no checkpoint yet")
        print(f"alexnet train: {err}; {kept}: fix the cause (e.g. free disk space) and run the "
              "same command to resume", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown(world)
    if world.is_main and result["train_time_s"] == 0:     # no step ran: no rate to give
        epochs = f"{result['epochs']} epoch" + ("s" if result["epochs"] != 1 else "")
        print(f"done: nothing left to train ({epochs}, {result['global_step']} steps, done "
              f"before); run directory {run_dir}")
    elif world.is_main:
        print(f"done: {result['global_step']} steps, {result['images_per_s']:.1f} images/s "
              f"(training only); run directory {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
