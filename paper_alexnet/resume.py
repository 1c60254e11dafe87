"""§5 runs take days: which config a resumed run directory takes, what a resume may change, and the
words that say where a run stands (docs/ARCHITECTURE.md decision 6; docs/training.md, "Resuming").

- A run directory is locked by its first checkpoint, not by its config.yaml: until a checkpoint
  exists nothing computed would be kept, so a start that failed (a bad value, a missing device,
  data too small) never blocks the corrected command; the new config replaces config.yaml.
- Once a checkpoint exists, a config given on resume may differ from RUN/config.yaml only in
  RESUME_MAY_CHANGE (how long, how often, where), and in ON_REQUEST keys (`optim.lr`) when the
  command says `--allow-change KEY`: the change is then recorded in metrics.jsonl. The network of
  the checkpoint must be the one the config describes (every model.* key but model.devices).
- `start(...)`: everything of a run that can fail before its first step, with nothing written:
  config, data checks (run/preflight.py), devices, network, optimiser, schedule, the newest
  checkpoint loaded into them, the first batches. train.py writes config.yaml only after it.
- `position(...)` counts epochs as the progress line does; `diverged(...)` says what works after a
  NaN or infinite loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from paper_alexnet import config, optim
from paper_alexnet.run import checkpoint, distributed, preflight, results

# What a resume may change, declared on the config fields (config.ROLES): e.g. `alexnet train
# --run-dir RUN train.epochs=120` extends a run; `--allow-change optim.lr` lowers the rate by hand.
RESUME_MAY_CHANGE = config.keys_with("resume")
ON_REQUEST = config.keys_with("on_request")


def resolve_run_config(requested, run_dir, saved_in_checkpoint: dict | None = None,
                       allow_change=()) -> tuple[config.RunConfig, dict, str | None]:
    """(config of the run, changes {key: [old, new]} to record, a note to print or None).

    `requested`: the config given (None = "as saved"); `saved_in_checkpoint`: the config dict of
    the newest checkpoint, None when the run has none (then the run is not locked yet).
    """
    saved_path = Path(run_dir) / "config.yaml"
    saved = config.load(saved_path) if saved_path.is_file() else None
    if saved_in_checkpoint is None:
        if requested is None and saved is None:
            raise config.ConfigError(f"{saved_path} does not exist: pass --config FILE to start a "
                                     "new run in this directory")
        if requested is None or saved is None or requested == saved:
            return requested or saved, {}, None
        return requested, {}, (f"{saved_path} is from a start that saved no checkpoint: replaced "
                               f"by the config given now")
    in_checkpoint = config.build(config.RunConfig, saved_in_checkpoint)
    reference = saved if saved is not None else in_checkpoint
    cfg = reference if requested is None else requested
    changes = config.differences(cfg, reference)
    refused = {k: v for k, v in changes.items()
               if k not in RESUME_MAY_CHANGE and not (k in allow_change and k in ON_REQUEST)}
    if refused:
        listed = "; ".join(f"{k}: saved {a!r}, given {b!r}" for k, (a, b) in refused.items())
        on_request = [k for k in refused if k in ON_REQUEST]
        hint = (f" To change {', '.join(on_request)} from here on, add "
                f"{' '.join('--allow-change ' + k for k in on_request)} (recorded in "
                f"metrics.jsonl)." if on_request else "")
        source = saved_path if saved is not None else \
            f"the newest checkpoint in {checkpoint.checkpoint_dir(run_dir)}"
        raise config.ConfigError(f"{source} holds the config of this run and the given one "
                                 f"differs in {listed}. Resume with the run's own config (omit "
                                 f"--config), or start a new --run-dir.{hint} Keys a resume may "
                                 f"change: {', '.join(RESUME_MAY_CHANGE)}")
    _check_network(cfg, in_checkpoint, run_dir)
    return cfg, changes, None


def _check_network(cfg: config.RunConfig, in_checkpoint: config.RunConfig, run_dir):
    """The checkpoint holds the network the config describes (model.*, except where it runs)."""
    differ = {k: v for k, v in config.differences(cfg, in_checkpoint).items()
              if k.startswith("model.") and k != "model.devices"}
    if differ:
        listed = "; ".join(f"{k}={a!r} in the checkpoint, {b!r} in the config"
                           for k, (a, b) in differ.items())
        raise config.ConfigError(f"the newest checkpoint in {checkpoint.checkpoint_dir(run_dir)} "
                                 f"holds another network than the config describes ({listed}): "
                                 f"resume with the config that trained it, or start a new "
                                 f"--run-dir")


@dataclass
class Run:
    """A run as `start` finds it, and where it stands as the loop goes on: `epoch` epochs done,
    `step_in_epoch` steps of the next one, `global_step` steps in all."""
    cfg: config.RunConfig
    root: Path                      # the prepared data
    steps: int                      # steps per epoch
    model: torch.nn.Module
    memory_format: torch.memory_format
    optimizer: torch.optim.Optimizer
    schedule: optim.Schedule
    data: dict                      # identity of the prepared data (results.data_identity)
    changes: dict                   # config keys changed on resume: {key: [old, new]}
    note: str | None = None         # said once at start (config.yaml replaced)
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    resumed_from: Path | None = None
    batches: Iterator | None = None  # the next epoch's batches, built by start (errors raise early)
    data_changed: str | None = None  # a resume on other data than the checkpoint's: the warning


def start(requested, data_root, run_dir: Path, world, allow_change=()) -> Run:
    """Everything that can fail before the first step, with nothing written: the run's config
    (resume.py), the data (run/preflight.py: a prepared ROOT, enough images for a batch, the classes
    of model.num_classes), the devices, the network, optimiser and schedule, the newest checkpoint
    loaded into them, the first epoch's batches. Errors are one line (preflight.StartError)."""
    from paper_alexnet import data as data_lib   # the input pipeline (owned by data.py)
    from paper_alexnet import model as model_lib
    check_run_dir(run_dir, data_root)
    found = checkpoint.load_latest(run_dir)      # every rank reads the same newest checkpoint
    cfg, changes, note = resolve_run_config(requested, run_dir,
                                            found[1]["config"] if found else None, allow_change)
    root = preflight.check_data_root(data_root)
    steps = data_lib.steps_per_epoch(root, cfg, world.world_size)
    for split in ("train", cfg.schedule.signal_split):
        preflight.check_classes(cfg.model.num_classes, root, split, "model.num_classes")
    devices = distributed.replica_devices(world, cfg.model.devices)
    torch.manual_seed(cfg.train.seed)             # §5 init: the same on every rank
    model = model_lib.build(cfg.model, devices)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = optim.make_optimizer(model, cfg.optim)
    schedule = optim.make_schedule(cfg.schedule, optimizer)
    run = Run(cfg=cfg, root=root, steps=steps, model=model, memory_format=memory_format,
              optimizer=optimizer, schedule=schedule, data=results.data_identity(root),
              changes=changes, note=note)
    if found is not None:
        restore(run, *found)
    if run.epoch < cfg.train.epochs:      # built now: its errors (crop sizes, stats) raise here
        run.batches = data_lib.train_batches(root, cfg, run.epoch, run.step_in_epoch,
                                             world.rank, world.world_size, model.input_device)
    return run


def check_run_dir(run_dir: Path, data_root) -> None:
    """StartError unless --run-dir can be written and lies apart from --data."""
    from data_prep.files import output_problem, overlap_problem
    problem = output_problem(run_dir)
    if problem:
        raise preflight.StartError(f"--run-dir {run_dir}: {problem}: choose a run directory "
                                   f"that can be written")
    problem = overlap_problem(run_dir, "--run-dir", [("--data", data_root)], itself=("run",))
    if problem:
        raise preflight.StartError(problem)


def restore(run: Run, path: Path, state: dict) -> None:
    """Load checkpoint `state` (read from `path`) into the run: weights, momentum, schedule, the
    random streams and the position; a network it does not fit is a StartError."""
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.schedule.load_state_dict(state["schedule"])
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise preflight.StartError(f"{path} does not fit the network of this config "
                                   f"({first}): resume with the config that trained it, or "
                                   f"start a new --run-dir") from None
    if run.schedule.base_lr != run.cfg.optim.lr:      # optim.lr changed with --allow-change
        run.schedule.rebase(run.cfg.optim.lr)
    checkpoint.set_rng_state(state["rng"])
    change = results.data_change(state.get("data"), run.root, path.name)
    if change:     # said loudly, not refused: the user may have meant it (docs/training.md)
        run.data_changed = f"{change}; the resumed run continues on it (recorded in metrics.jsonl)"
    run.epoch, run.step_in_epoch = state["epoch"], state["step"]
    run.global_step, run.resumed_from = state["global_step"], path


def position(epoch: int, step_in_epoch: int, global_step: int, steps: int, epochs: int) -> str:
    """Where a checkpoint stands, counted as the progress line counts ("epoch 2/3 step 7/9")."""
    total = steps * epochs
    if step_in_epoch:
        return (f"epoch {epoch + 1}/{epochs} step {global_step}/{total} ({step_in_epoch} of the "
                f"epoch's {steps} steps done)")
    if epoch >= epochs:
        return f"all {epochs} epochs done, step {global_step}/{total}: nothing left to train"
    return f"epoch {epoch}/{epochs} done, step {global_step}/{total}; next: epoch {epoch + 1}"


def diverged(bad_step: int, detected: str, run_dir, data_root, lr: float) -> str:
    """The message of a NaN or infinite loss at `bad_step` (1-based): what actually works now
    (`lr`: the run's optim.lr, the rate before any schedule drop)."""
    saved = checkpoint.list_checkpoints(run_dir)
    lower = f"optim.lr={lr / 10:g}"
    head = (f"the training loss or a gradient was NaN or infinite at step {bad_step} (detected "
            f"{detected}); nothing after it was saved. ")
    data = "If the rate is not the cause, check the prepared data ('alexnet prep verify ROOT')."
    if not saved:
        return head + (f"No checkpoint was written before it, so the run directory is not locked: "
                       f"run the same command with a lower rate (e.g. {lower}). {data}")
    step = saved[-1][0]
    return head + (f"The newest checkpoint (step {step}) is the last good state: resume it with a "
                   f"lower rate, recorded in metrics.jsonl: alexnet train --run-dir {run_dir} "
                   f"--data {data_root} --allow-change optim.lr {lower}; or start afresh in a new "
                   f"--run-dir. {data}")
