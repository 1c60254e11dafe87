"""§5: training. One flat loop: batch → forward → cross-entropy (batch mean) → backward → §5 step;
logging, checkpoints and stops plug in as callbacks (loop.py, run/callbacks.py).

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
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from data_prep import exits
from paper_alexnet import config, resume
from paper_alexnet.run import checkpoint, distributed, metrics, preemption, preflight, watchdog
from paper_alexnet.evaluate import error_rates
from paper_alexnet.loop import Loop
from paper_alexnet.run.precision import autocast
from paper_alexnet.run.watchdog import NonFiniteLoss


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


def train_step(loop, images, labels):
    """One §5 step: this step's dropout seed, forward and backward, the NaN guard, the update,
    the running means (on the device)."""
    run = loop.run
    images = images.contiguous(memory_format=run.memory_format)
    labels = labels.to(run.model.output_device, non_blocking=True)
    torch.manual_seed(step_seed(run.cfg.train.seed, run.global_step, loop.world.rank))
    logits, loss = forward_backward(loop.net, run.optimizer, images, labels,
                                    run.model.input_device, loop.dtype)
    loop.after_backward(loss)
    finite = torch.isfinite(loss.detach()) & watchdog.finite_grads(run.model, loss.device)
    loop.first_bad = torch.where(finite | (loop.first_bad >= 0), loop.first_bad,
                                 torch.full_like(loop.first_bad, run.global_step))
    n, k = run.global_step + 1, run.step_in_epoch + 1
    if (run.model.output_device.type == "cpu" or loop.is_log_step(n, k)
            or loop.is_checkpoint_step(n)):          # reading the flag is a sync point
        watchdog.check_finite(loop.first_bad, loop.world, "before the optimiser step")
    run.optimizer.step()
    top1, = metrics.topk_errors(logits.detach(), labels, ks=(1,))
    loop.running.update(labels.shape[0], loss=loss.detach() * labels.shape[0], top1=top1)
    run.global_step, run.step_in_epoch = n, k


def evaluate_signal(loop) -> dict:
    """Centre-crop top-1/top-5 error on `schedule.signal_split` (the §5 schedule's signal), every
    image of the split seen once across the ranks."""
    from paper_alexnet import data
    run, world = loop.run, loop.world
    split = run.cfg.schedule.signal_split
    _, indices = data.split_indices(run.root, split, run.cfg)
    batches = data.eval_batches(run.root, split, run.cfg, view="center", rank=world.rank,
                                world_size=world.world_size, device=run.model.input_device)
    return error_rates([run.model], batches, views=1, split_len=len(indices), world=world,
                        dtype=loop.dtype, index_space=indices)


def epoch_batches(loop):
    """This epoch's remaining batches (start-up built the first epoch's, to raise early)."""
    from paper_alexnet import data
    run, world = loop.run, loop.world
    batches, run.batches = run.batches, None
    return batches or data.train_batches(run.root, run.cfg, run.epoch, run.step_in_epoch,
                                         world.rank, world.world_size, run.model.input_device)


def train(cfg: config.RunConfig | None, data_root, run_dir, *, quiet: bool = False,
          allow_change=(), callbacks=()) -> dict:
    """Train (or resume) the run in `run_dir`; returns a summary dict. `cfg=None` resumes with the
    run directory's own config; `allow_change`: keys of resume.ON_REQUEST a resume may change.
    Nothing is written before every start-up check passed (preflight.StartError otherwise).
    `callbacks`: hooks at the start, after every step and every epoch (run/callbacks.py), called
    after the loop's own (loop.py: log, checkpoint, preemption)."""
    world = distributed.current_world()
    with preflight.starting():
        run = resume.start(cfg, data_root, Path(run_dir), world, tuple(allow_change))
    distributed.barrier(world)        # every rank has read config.yaml before rank 0 rewrites it
    loop = Loop.open(run, Path(run_dir), world, quiet, allow_change, callbacks)
    try:
        loop.hook("on_start")
        while not loop.stopped and run.epoch < run.cfg.train.epochs:
            run.model.train()
            batches = epoch_batches(loop)
            while not loop.stopped and run.step_in_epoch < run.steps:
                train_step(loop, *next(batches))
                loop.hook("on_step_end")
            if run.step_in_epoch < run.steps:        # stopped mid-epoch: checkpoint it here
                loop.checkpoints.save_unless_saved()
                break
            loop.val = evaluate_signal(loop)              # §5: the schedule's signal
            loop.dropped = run.schedule.observe(run.epoch + 1, loop.val["top1"])
            run.epoch, run.step_in_epoch = run.epoch + 1, 0
            loop.hook("on_epoch_end")
    except NonFiniteLoss as err:      # say what works now (a checkpoint to resume, or none)
        raise NonFiniteLoss(resume.diverged(err.step, err.detected, run_dir, data_root,
                                            run.cfg.optim.lr), err.step, err.detected) from None
    finally:
        loop.close()
    distributed.barrier(world)
    return loop.summary()


def _parser() -> argparse.ArgumentParser:
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
    return parser


def _run_dir(args, parser) -> Path:
    """--run-dir, or $ALEXNET_RUNS/<config name>; a bad command line exits 2 here."""
    if args.data is None:
        parser.error("no prepared data: pass --data ROOT or set ALEXNET_DATA")
    run_dir = args.run_dir
    if run_dir is None:
        runs = os.environ.get("ALEXNET_RUNS")
        if runs is None or args.config is None:
            parser.error("no run directory: pass --run-dir DIR, or set ALEXNET_RUNS and --config")
        run_dir = Path(runs) / Path(args.config).stem
    if args.config is None and not (Path(run_dir) / "config.yaml").is_file():
        parser.error(f"{run_dir} holds no config.yaml: pass --config FILE to start a run")
    return run_dir


def main(argv: list[str] | None = None, callbacks=()) -> int:
    """`callbacks`: passed to `train` (tests inject faults with them). Exit status: 0 done; 2 the
    command cannot start as given (nothing written); 1 the run failed; 75 preempted (run the same
    command again); 130 aborted by a second Ctrl-C."""
    parser = _parser()
    args = parser.parse_args(argv)
    run_dir = _run_dir(args, parser)
    with_config = args.config is not None or args.overrides
    base = args.config if args.config is not None else Path(run_dir) / "config.yaml"
    world, result = distributed.init_from_env(), {}

    def work():
        cfg = None
        if with_config:
            with preflight.starting():                # a bad config: a bad command line
                cfg = config.load(base, args.overrides)
        result.update(train(cfg, args.data, run_dir, allow_change=args.allow_change,
                            callbacks=callbacks))

    def kept():      # checkpoints are atomic: the newest one is intact
        return (f"the newest checkpoint in {run_dir} is intact" if
                checkpoint.list_checkpoints(run_dir) else f"{run_dir} holds no checkpoint yet")
    hints = {KeyboardInterrupt: f"the checkpoints in {run_dir} are intact (one being written is "
                                "discarded): run the same command to resume",
             OSError: lambda: f"{kept()}: fix the cause (e.g. free disk space) and run the same "
                              "command to resume"}
    try:     # a preemption is reported by the main process alone
        code = exits.run("alexnet train", work, hints=hints,
                         quiet=() if world.is_main else (preemption.Preempted,),
                         aborted="aborted by a second Ctrl-C")
    finally:
        distributed.shutdown(world)
    if code == exits.DONE and world.is_main:
        print(_done_line(result, run_dir))
    return code


def _done_line(result: dict, run_dir) -> str:
    if result["train_time_s"] == 0:     # no step ran: no rate to give
        epochs = f"{result['epochs']} epoch" + ("s" if result["epochs"] != 1 else "")
        return (f"done: nothing left to train ({epochs}, {result['global_step']} steps, done "
                f"before); run directory {run_dir}")
    return (f"done: {result['global_step']} steps, {result['images_per_s']:.1f} images/s "
            f"(training only); run directory {run_dir}")


if __name__ == "__main__":
    raise SystemExit(main())
