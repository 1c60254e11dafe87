"""What the §5 loop (train.py) holds besides the run, and its own three callbacks.

`Loop.open` does the start-up that writes: config.yaml, metrics.jsonl's resume events, the
device settings, the preemption handlers. The loop then talks to everything around the SGD step
through callbacks (run/callbacks.py), in this order at every step and epoch end:

1. `TrainLog`     metrics.jsonl and the progress line (every record of a step comes first);
2. `Checkpoints`  a checkpoint every `train.checkpoint_every` steps and at every epoch end;
3. `Preemption`   SIGTERM/SIGINT asked for a stop (run/preemption.py): checkpoint, log, exit 75;
4. the caller's callbacks (Figure 1's stop at the target, tests' faults), which see every step
   with its checkpoint already written.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from data_prep.progress import seconds_left
from paper_alexnet import config, resume
from paper_alexnet.run import checkpoint, distributed, metrics, preemption, watchdog
from paper_alexnet.run.callbacks import Callback, Progress, first_stop
from paper_alexnet.run.precision import resolve_precision


@dataclass
class Loop:
    """The run, where it writes and how it reports, the NaN guard's device flag, the callbacks."""

    run: resume.Run
    run_dir: Path
    world: distributed.World
    net: torch.nn.Module            # the model as stepped (DDP or compiled wrapper, or itself)
    dtype: torch.dtype | None       # autocast dtype, None = float32
    log: metrics.MetricsLog | None  # main rank only
    quiet: bool
    stop: preemption.StopRequest
    running: metrics.RunningMeans   # loss and error sums since the last log step, on the device
    first_bad: torch.Tensor         # the first non-finite step, on the device (run/watchdog.py)
    callbacks: list = field(default_factory=list)
    val: dict = field(default_factory=dict)         # the newest epoch's evaluation
    dropped: bool = False                            # did that epoch end divide the rate
    stopped: str | None = None                       # a callback's reason to stop
    last: dict = field(default_factory=dict)         # the newest logged training means
    train_time: float = 0.0         # seconds of training steps only (between log steps)
    window_start: float = field(default_factory=time.perf_counter)
    first_step: int = 0
    code_version: str = field(default_factory=checkpoint.code_version)     # runs git once

    @classmethod
    def open(cls, run: resume.Run, run_dir: Path, world, quiet: bool, allow_change,
             callbacks) -> "Loop":
        cfg, model = run.cfg, run.model
        log = metrics.MetricsLog(run_dir, resume_step=run.global_step if run.resumed_from
                                 else None) if world.is_main else None
        net = distributed.wrap(model, world)
        if cfg.train.compile:
            net = torch.compile(net)             # checkpoints save `model`, never this wrapper
        stop = preemption.StopRequest(announce=preemption.TRAINING if world.is_main else None)
        loop = cls(run=run, run_dir=run_dir, world=world, net=net,
                   dtype=resolve_precision(cfg, model.input_device), log=log, quiet=quiet,
                   stop=stop, running=metrics.RunningMeans(model.output_device),
                   first_bad=torch.full((), -1, dtype=torch.int64, device=model.output_device),
                   first_step=run.global_step)
        loop.callbacks = [TrainLog(loop), Checkpoints(loop), Preemption(loop), *callbacks]
        loop._write_start(allow_change)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        # Fixed batch shapes: let cuDNN time its kernels once and keep the fastest
        # (docs/speed.md); its choice may vary from run to run, so not for a deterministic run.
        torch.backends.cudnn.benchmark = not cfg.train.deterministic
        stop.install()
        return loop

    def _write_start(self, allow_change):
        run, log = self.run, self.log
        if self.world.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config_text = config.dump(run.cfg)
            (self.run_dir / "config.yaml").write_text(config_text)
            self.say(f"run {self.run_dir}\n--- config ---\n{config_text}--------------")
            if run.note:
                self.say(run.note)
        if run.resumed_from is not None:
            self.say(f"resumed from {run.resumed_from}: " + resume.position(
                run.epoch, run.step_in_epoch, run.global_step, run.steps, run.cfg.train.epochs))
        if log is not None and run.data_changed:
            print(f"alexnet train: WARNING: {run.data_changed}", file=sys.stderr, flush=True)
            log.log("event", run.global_step, run.epoch, event="data_changed", data=run.data)
        if log is not None and run.changes:
            allowed = [k for k in run.changes if k in allow_change]
            log.log("event", run.global_step, run.epoch, event="config_changed",
                    changes=run.changes,
                    **({"allowed_by": [f"--allow-change {k}" for k in allowed]} if allowed else {}))
            if allowed:
                self.say("changed on request, recorded in metrics.jsonl: " + "; ".join(
                    f"{k} {run.changes[k][0]!r} -> {run.changes[k][1]!r}" for k in allowed))

    def say(self, *parts):
        if self.world.is_main and not self.quiet:
            print(*parts, flush=True)

    # Sync points: log steps and checkpoint steps read the device (docs/ARCHITECTURE.md decision 5).
    @property
    def checkpoints(self) -> "Checkpoints":
        return next(c for c in self.callbacks if isinstance(c, Checkpoints))

    def is_log_step(self, global_step: int, step_in_epoch: int) -> bool:
        return (global_step % self.run.cfg.train.log_every == 0
                or step_in_epoch == self.run.steps)

    def is_checkpoint_step(self, global_step: int) -> bool:
        return global_step % self.run.cfg.train.checkpoint_every == 0

    def at_sync_point(self) -> bool:
        """Has the step just taken a sync point (a log or checkpoint step)?"""
        run = self.run
        return self.is_log_step(run.global_step, run.step_in_epoch) or \
            self.is_checkpoint_step(run.global_step)

    def progress(self, with_val: bool = False) -> Progress:
        run = self.run
        return Progress(self.run_dir, run.epoch, run.step_in_epoch, run.global_step,
                        run.cfg.train.epochs, dict(self.val) if with_val else {})

    def epoch_logged(self) -> int:
        """The epoch a record of this point belongs to (the one in progress, or the one done)."""
        return self.run.epoch + (self.run.step_in_epoch > 0)

    def hook(self, name: str) -> str | None:
        """Ask every callback at this point; the first reason to stop is kept and logged."""
        reason = first_stop(self.callbacks, name, self.progress(name == "on_epoch_end"))
        if reason and not self.stopped:
            self.stopped = reason
            if self.log is not None:
                self.log.log("event", self.run.global_step, self.epoch_logged(),
                             event="stopped", reason=reason)
            self.say(f"stopped: {reason}")
        return reason

    def after_backward(self, loss: torch.Tensor):
        """Callbacks with `on_backward` see the step's loss and gradients before the update."""
        for c in self.callbacks:
            if hasattr(c, "on_backward"):
                c.on_backward(self.progress(), loss, self.run.model)

    def save(self, milestone: bool = False):
        """A checkpoint of where the run stands, after the NaN guard (nothing bad is saved)."""
        run = self.run
        watchdog.check_finite(self.first_bad, self.world, "before saving a checkpoint")
        if self.world.is_main:
            self.log.sync()
            state = dict(model={k: v.detach().cpu() for k, v in run.model.state_dict().items()},
                         optimizer=run.optimizer.state_dict(), schedule=run.schedule.state_dict(),
                         epoch=run.epoch, step=run.step_in_epoch, global_step=run.global_step,
                         rng=checkpoint.rng_state(), config=config.to_dict(run.cfg),
                         code_version=self.code_version, data=run.data)
            checkpoint.save(self.run_dir, state, run.global_step, run.cfg.train.keep_last,
                            milestone)
        self.window_start = time.perf_counter()

    def close(self):
        self.stop.restore()
        if self.log is not None:
            self.log.close()

    def summary(self) -> dict:
        run, cfg = self.run, self.run.cfg
        done, train_time = run.global_step - self.first_step, self.train_time
        return dict(run_dir=str(self.run_dir), epochs=cfg.train.epochs,
                    global_step=run.global_step,
                    resumed_from=str(run.resumed_from) if run.resumed_from else None,
                    train_loss=self.last.get("loss", math.nan),
                    train_error=self.last.get("error", math.nan), val=self.val,
                    lr=run.schedule.lr, train_time_s=train_time, stopped=self.stopped,
                    images_per_s=(done * cfg.optim.batch_size / train_time if train_time
                                  else math.nan),
                    local_batch=distributed.local_batch_size(cfg.optim.batch_size, self.world))


class TrainLog(Callback):
    """metrics.jsonl and the progress line: training means and rate at log steps; the epoch's
    evaluation, a rate drop and the not-learning report at epoch ends."""

    def __init__(self, loop: Loop):
        self.loop = loop

    def on_step_end(self, progress: Progress) -> None:
        loop, run = self.loop, self.loop.run
        if not loop.at_sync_point():     # every record of a step is logged before its checkpoint
            return
        means = loop.running.flush(distributed=loop.world.distributed)   # SYNC POINT
        # Throughput: wall clock between two log steps, each of which ends in a sync, so the
        # window holds exactly the training steps (evaluation and checkpoints fall outside).
        now = time.perf_counter()
        window = now - loop.window_start
        loop.train_time += window
        rate = means["count"] * loop.world.world_size / window if window > 0 else math.nan
        total = run.steps * run.cfg.train.epochs
        eta = seconds_left(total - run.global_step, run.global_step - loop.first_step,
                           loop.train_time)
        loop.last.update(loss=means["loss"], error=means["top1"], lr=run.schedule.lr)
        if loop.log:
            loop.log.log("train", run.global_step, run.epoch + 1, **loop.last,
                         images=means["count"], images_per_s=rate, train_time_s=loop.train_time)
        loop.say(f"epoch {run.epoch + 1}/{run.cfg.train.epochs} step {run.global_step}/{total} "
                 f"loss {means['loss']:.4f} err {100 * means['top1']:.1f}% lr "
                 f"{run.schedule.lr:g} {rate:.1f} img/s ETA {metrics.format_duration(eta)} "
                 f"(training only)")
        loop.window_start = time.perf_counter()

    def on_epoch_end(self, progress: Progress) -> None:
        loop, run, val = self.loop, self.loop.run, self.loop.val
        split = run.cfg.schedule.signal_split
        if loop.log:
            loop.log.log("val", run.global_step, run.epoch, split=split, top1=val["top1"],
                         top5=val["top5"], images=val["images"])
            if loop.dropped:
                loop.log.log("lr", run.global_step, run.epoch, lr=run.schedule.lr,
                             drops=run.schedule.drops)
        loop.say(f"epoch {run.epoch}/{run.cfg.train.epochs}: {split} (centre crop) top-1 error "
                 f"{100 * val['top1']:.2f}%, top-5 {100 * val['top5']:.2f}%"
                 + (f"; learning rate divided -> {run.schedule.lr:g}" if loop.dropped else ""))
        if loop.log:
            watchdog.report_not_learning(loop.log, loop.run_dir, run.cfg.model.num_classes,
                                         run.cfg.train.not_learning_epochs, run.global_step,
                                         run.epoch)


class Checkpoints(Callback):
    """Every `train.checkpoint_every` steps inside an epoch, and at every epoch end (a milestone
    every `train.milestone_every` epochs, kept for good)."""

    def __init__(self, loop: Loop):
        self.loop, self.saved_at = loop, None

    def on_step_end(self, progress: Progress) -> None:
        run = self.loop.run
        if self.loop.is_checkpoint_step(run.global_step) and run.step_in_epoch < run.steps:
            self.save()

    def on_epoch_end(self, progress: Progress) -> None:
        self.save(milestone=self.loop.run.epoch % self.loop.run.cfg.train.milestone_every == 0)

    def save(self, milestone: bool = False):
        self.loop.save(milestone)
        self.saved_at = self.loop.run.global_step

    def save_unless_saved(self):
        """The checkpoint of this step, unless it was just written."""
        if self.saved_at != self.loop.run.global_step:
            self.save()


class Preemption(Callback):
    """A SIGTERM/SIGINT (run/preemption.py) that every rank agreed on stops the run at the next step
    or epoch end: checkpoint (unless just written), log, raise `preemption.Preempted` (exit 75).
    Not after the last epoch: that run has finished."""

    def __init__(self, loop: Loop):
        self.loop = loop

    def on_step_end(self, progress: Progress) -> None:
        run = self.loop.run
        if run.step_in_epoch < run.steps and self.agreed(self.loop.at_sync_point()):
            self.stop_here()

    def on_epoch_end(self, progress: Progress) -> None:
        run = self.loop.run
        if run.epoch < run.cfg.train.epochs and not self.loop.stopped and self.agreed(True):
            self.stop_here()

    def agreed(self, at_sync_point: bool) -> bool:
        loop = self.loop
        return loop.stop.agreed(loop.world, at_sync_point, loop.run.model.output_device)

    def stop_here(self):
        loop = self.loop
        loop.checkpoints.save_unless_saved()
        if loop.log is not None:
            loop.log.log("event", loop.run.global_step, loop.epoch_logged(), event="preempted",
                         signal=loop.stop.signal_name)
        raise preemption.Preempted(loop.stop.signal_name, loop.run.global_step)
