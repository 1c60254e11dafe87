"""Running one experiment's runs: train (resuming what exists), evaluate the final checkpoint into
RUN/result.json (docs/ARCHITECTURE.md), and record what an experiment did in its experiment.json
so that `alexnet report` can regenerate its report later.

Honest checkpoint choice (§6): the newest checkpoint of a finished run is evaluated, never the best
one on the reported split. A run whose loss became NaN (train.NonFiniteLoss) is marked with an
RUN/DIVERGED file (its message names the step) and not retried (a learning-rate search expects
some to diverge). A run that raised any other error gets RUN/FAILED (the traceback), removed when
it later succeeds. `run_status` reads these back, so a report can say what became of every run it
was asked for instead of leaving it out. A preempted run (paper_alexnet.run.preemption.Preempted) is
neither: it is resumable, and the experiment commands exit with status 75 like `alexnet train`.
A SIGTERM or Ctrl-C that arrives outside training (between runs, during an evaluation) is held by
`between_runs` and acted on before the next run starts: the same exit 75.
"""
from __future__ import annotations

import contextlib
import json
import re
import time
import traceback
from pathlib import Path

from data_prep import exits
from data_prep.files import write_atomic
from experiments import rundir
from paper_alexnet import config, resume
from paper_alexnet.run import checkpoint, metrics, preemption

DIVERGED = "DIVERGED"
FAILED = "FAILED"


class RunsFailed(exits.Failure, RuntimeError):
    """Some runs of an experiment failed (each has RUN/FAILED); the others and the report were
    still done."""


def write_manifest(exp_dir: Path, manifest: dict) -> None:
    """EXP/experiment.json: the experiment's kind and parameters (atomic write)."""
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(exp_dir / "experiment.json", (json.dumps(manifest, indent=2) + "\n").encode())


def dataset_shape(data_root) -> tuple[int, int]:
    """(number of classes, image channels) of the prepared train split."""
    from data_prep.shards import PreparedSplit
    split = PreparedSplit(Path(data_root) / "train")
    return len(split.classes), int(split.image_shape[2])


_between_runs: list[preemption.StopRequest] = []   # the experiment command's own handlers


@contextlib.contextmanager
def between_runs():
    """SIGTERM/SIGINT recorded for the whole experiment command (`train.train` installs its own
    while it trains, then puts these back); `train_run` stops before starting another run."""
    stop = preemption.StopRequest().install()
    _between_runs.append(stop)
    try:
        yield stop
    finally:
        _between_runs.remove(stop)
        stop.restore()


def train_run(cfg: config.RunConfig, data_root, run_dir, quiet: bool = False,
              callbacks=()) -> bool:
    """Train (or resume, or skip if finished) one run; False if it diverged (NaN loss). With
    `quiet` (no per-step output) one line per run says how it ended, so that a long experiment
    is not silent for hours. `callbacks`: the training loop's (paper_alexnet/run/callbacks.py), e.g.
    a stop at a target."""
    from paper_alexnet import train
    for stop in _between_runs:
        if stop.requested:
            raise preemption.Preempted(stop.signal_name, None)
    run_dir = Path(run_dir)
    say = print if quiet else (lambda *a, **k: None)
    if (run_dir / DIVERGED).is_file():
        say(f"{run_dir}: diverged in an earlier attempt ({DIVERGED}): skipped", flush=True)
        return False
    start = time.perf_counter()
    try:
        summary = train.train(cfg, data_root, run_dir, quiet=quiet, callbacks=callbacks)
    except train.NonFiniteLoss as err:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / DIVERGED).write_text(f"{err}\n")
        say(f"{run_dir}: diverged at step {err.step} (NaN or infinite loss)", flush=True)
        return False
    say(finished_line(run_dir, summary, time.perf_counter() - start, cfg), flush=True)
    return True


def finished_line(run_dir, summary: dict, seconds: float, cfg) -> str:
    """'RUN: 2 epochs done (step 4), training error 71.2%, val top-1 68.8% (3s)'; a run that a
    callback stopped says where and why instead of the planned epochs."""
    if summary.get("stopped"):
        trained = ("" if summary["train_time_s"] == 0 else
                   f", training error {100 * summary['train_error']:.1f}%")
        return (f"{run_dir}: stopped at step {summary['global_step']}: {summary['stopped']}"
                f"{trained} ({metrics.format_duration(seconds)})")
    epochs = f"{summary['epochs']} epoch" + ("s" if summary["epochs"] != 1 else "")
    if summary["train_time_s"] == 0:
        return f"{run_dir}: already finished ({epochs}): nothing left to train"
    val = summary.get("val") or {}
    return (f"{run_dir}: {epochs} done (step {summary['global_step']}), "
            f"training error {100 * summary['train_error']:.1f}%"
            + (f", {cfg.schedule.signal_split} top-1 {100 * val['top1']:.1f}%" if val else "")
            + f" ({metrics.format_duration(seconds)})")


def final_checkpoint(run_dir) -> Path:
    found = checkpoint.load_latest(run_dir)
    if found is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint: train it first")
    return Path(found[0])


def evaluate_into(checkpoints: list[Path], data_root, split: str, ten_crop: bool,
                  out: Path) -> dict:
    """§6 errors of one checkpoint or of an ensemble, written to `out` (result.json format; a
    result already there is kept: paper_alexnet/run/results.py)."""
    from paper_alexnet.evaluate import evaluate
    from paper_alexnet.run.results import write_result
    result = evaluate([str(p) for p in checkpoints], data_root, split, ten_crop=ten_crop)
    return write_result(out, result)     # a result of other checkpoints goes to the history


def is_evaluated(run_dir: Path, split: str) -> bool:
    """result.json exists, is of this split, and is of the newest checkpoint."""
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        return False
    result = json.loads(path.read_text())
    newest = checkpoint.list_checkpoints(run_dir)
    return (result.get("split") == split and bool(newest)
            and Path(result.get("checkpoints", [""])[0]).name == newest[-1][1].name)


def train_and_evaluate(cfg: config.RunConfig, data_root, run_dir, split: str = "val",
                       quiet: bool = False) -> dict | None:
    """Train (resuming), then evaluate the final checkpoint into RUN/result.json unless that is
    already done. None if the run diverged."""
    run_dir = Path(run_dir)
    try:
        recorded = recorded_result(cfg, run_dir, split)
        if recorded is not None:
            return recorded
        if not train_run(cfg, data_root, run_dir, quiet=quiet):
            return None
        if is_evaluated(run_dir, split):
            result = json.loads((run_dir / "result.json").read_text())
        else:
            result = evaluate_into([final_checkpoint(run_dir)], data_root, split,
                                   cfg.eval.ten_crop, run_dir / "result.json")
    except preemption.Preempted:
        raise                        # resumable: not a failure
    except Exception:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / FAILED).write_text(traceback.format_exc())
        raise
    (run_dir / FAILED).unlink(missing_ok=True)
    return result


def recorded_result(cfg: config.RunConfig, run_dir: Path, split: str) -> dict | None:
    """The result of a run trained elsewhere whose record was copied here (config.yaml,
    metrics.jsonl and result.json of `split`, no checkpoint: rundir.copy_record): done, nothing to
    train. None when the run directory is not such a record. Its config must be the one asked for,
    except where a resume may change it without changing what was trained (how often it logs, how
    many workers; train.epochs must be the same: a shorter run is not this run)."""
    result = rundir.read_result(run_dir)
    if result is None or result.get("split") != split or checkpoint.list_checkpoints(run_dir):
        return None
    differ = {k: v for k, v in config.differences(cfg, rundir.read_config(run_dir)).items()
              if k not in resume.RESUME_MAY_CHANGE or k == "train.epochs"}
    if differ:
        listed = "; ".join(f"{k}: recorded {a!r}, asked {b!r}" for k, (a, b) in differ.items())
        raise config.ConfigError(f"{run_dir} holds the record of a run with another config "
                                 f"({listed}): move it away to train this run here")
    return result


def run_status(run_dir, split: str, resume: str = "the same command") -> tuple[str, str]:
    """(state, words) of one run directory, for a report: state is "finished" (result.json of
    `split`), "diverged", "failed", "unfinished" or "not started"; words say where it stopped and
    what to do (`resume`: the command that resumes it)."""
    run_dir = Path(run_dir)
    result = run_dir / "result.json"
    if result.is_file():
        evaluated_on = json.loads(result.read_text()).get("split")
        if evaluated_on == split:
            return "finished", "finished"
    records = metrics.read_metrics(run_dir) if run_dir.is_dir() else []
    val_steps = [int(r["step"]) for r in records if r.get("kind") == "val"]
    if (run_dir / DIVERGED).is_file():
        message = (run_dir / DIVERGED).read_text().strip()
        found = re.search(r"at step (\d+)", message)
        if found is None:
            return "diverged", f"diverged in epoch {len(val_steps) + 1} (NaN or infinite loss)"
        step = int(found.group(1))
        epoch = 1 + sum(s < step for s in val_steps)
        return "diverged", (f"diverged at epoch {epoch} (NaN or infinite loss at step {step}); "
                            f"not retried while RUN/{DIVERGED} exists")
    if (run_dir / FAILED).is_file():
        lines = [x for x in (run_dir / FAILED).read_text().strip().splitlines() if x.strip()]
        return "failed", (f"failed: {lines[-1].strip() if lines else 'no reason recorded'} "
                          f"(traceback in RUN/{FAILED}; {resume} retries it)")
    if not (run_dir / "config.yaml").is_file():
        return "not started", f"not started: {resume} runs it"
    total = config.load(run_dir / "config.yaml").train.epochs
    events = [r for r in records if r.get("kind") == "event" and r.get("event") == "preempted"]
    stopped = (f", preempted by {events[-1].get('signal', 'a signal')} at step {events[-1]['step']}"
               if events and records[-1] is events[-1] else "")
    if result.is_file():
        return "unfinished", (f"evaluated on split {evaluated_on!r}, not {split!r}: {resume} "
                              f"evaluates it on {split!r}")
    if len(val_steps) >= total:
        return "unfinished", f"trained ({total} epochs), not evaluated: {resume} evaluates it"
    return "unfinished", (f"unfinished ({len(val_steps)} of {total} epochs done{stopped}): "
                          f"resume with {resume}")
