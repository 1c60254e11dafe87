"""§6, Tables 1–2: top-1 and top-5 error, centre crop and ten crops, for one net or several.

Ten crops (§4.1): the four corner 224 patches and the centre one of the 256 image, and their
horizontal reflections; the SOFTMAX outputs over the ten are averaged. An ensemble ("5 CNNs",
Table 2) averages the nets' softmax outputs (each already averaged over its views). Both averages
are means of probabilities, so their order does not matter. Members must agree on what changes the
pixels a network sees (INPUT_KEYS), not on how they were loaded (workers, backend, batch size).

Honest checkpoint choice: `--run-dir` evaluates the run's newest (final) checkpoint, `--checkpoint`
the named ones; nothing here picks the best checkpoint on the set it reports. When the newest is
damaged, the one evaluated instead is named loudly and result.json records it ("final": false).
Every image of the split is seen exactly once (across ranks too): the count of each index is
checked, else it fails.

`alexnet eval --run-dir RUN | --checkpoint CKPT [--checkpoint CKPT2 …] [--data ROOT] [--split val]
[--device D] [--out FILE] [key=value …]` checks the output path, the data and the classes first
(exit 2, nothing written), prints progress with rate and ETA, prints the results, then writes
RUN/result.json (or FILE) without losing a result already there (run/results.py).
`evaluate(checkpoints, data_root, split, ten_crop, …)` from Python.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from data_prep import exits
from data_prep.progress import seconds_left
from paper_alexnet import config
from paper_alexnet.run import checkpoint, distributed, metrics, preflight, results
from paper_alexnet.run.precision import autocast, resolve_precision

# Declared on the config fields (config.ROLES): what ensemble members must agree on (on a train
# split also which images it holds), and what `alexnet eval` may set.
INPUT_KEYS = config.keys_with("input")
HOLDOUT_KEYS = config.keys_with("holdout")
EVAL_SETTINGS = config.keys_with("eval")
PROGRESS_EVERY_S = 10.0


class EvaluationError(exits.Failure, RuntimeError):
    """An evaluation that would not be a fair count (images missed or counted twice, mismatched
    ensemble members)."""


def error_rates(models, batches, *, views: int, split_len: int, world=None, dtype=None,
                 index_space=None, progress=None) -> dict:
    """Top-1/top-5 error of the softmax average of `models` over `views` views per image.

    `batches` yields (images (n·views, C, S, S), labels (n,), indices (n,)), as data.eval_batches.
    Returns {"images", "top1", "top5", "members": [{"top1", "top5"} per model]}; sums stay on the
    device until the end (one sync). `index_space`: the split's image indices (default
    0..split_len-1); each must be seen exactly once over all ranks, else EvaluationError.
    `progress(images_done)`, if given, is called after every batch (no device sync).
    """
    world = world or distributed.World()
    out_device = models[0].output_device
    sums = torch.zeros(2 * (len(models) + 1), dtype=torch.float64, device=out_device)
    seen, done = [], 0
    with torch.no_grad(), _eval_mode(models):
        for images, labels, indices in batches:
            n = labels.shape[0]
            if images.shape[0] != n * views:
                raise EvaluationError(f"a batch of {n} images came with {images.shape[0]} views, "
                                      f"expected {views} per image")
            labels = labels.to(out_device)
            probs = []
            for m in models:
                with autocast(m.input_device, dtype):
                    logits = m(images)                              # (n·views, classes)
                p = logits.float().softmax(dim=1).view(n, views, -1).mean(dim=1)   # (n, classes)
                probs.append(p.to(out_device))
            ensemble = torch.stack(probs).mean(dim=0)              # (n, classes) §6 average
            for j, p in enumerate([ensemble] + probs):
                e1, e5 = metrics.topk_errors(p, labels, ks=(1, 5))
                sums[2 * j] += e1
                sums[2 * j + 1] += e5
            seen.append(torch.as_tensor(indices).cpu())
            done += n
            if progress is not None:
                progress(done)
    index_space = np.arange(split_len) if index_space is None else np.asarray(index_space)
    _check_coverage(torch.cat(seen) if seen else torch.zeros(0, dtype=torch.int64), index_space,
                    world)
    sums = distributed.all_reduce_sum(sums.to(distributed.collective_device(world, out_device)),
                                      world)
    values = (sums / len(index_space)).tolist()   # SYNC POINT: once per evaluation
    return dict(images=len(index_space), top1=values[0], top5=values[1],
                members=[dict(top1=values[2 * j], top5=values[2 * j + 1])
                         for j in range(1, len(models) + 1)])


@contextlib.contextmanager
def _eval_mode(models):
    """Every net in eval mode (dropout off, §4.2) inside; each back in its own mode after, also
    when the evaluation fails."""
    was_training = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for m, mode in zip(models, was_training):
            m.train(mode)


def _check_coverage(seen: torch.Tensor, index_space: np.ndarray, world):
    """Each index of the split exactly once, over all ranks (counts are summed with all_reduce)."""
    size = int(max(index_space.max(initial=-1), seen.max().item() if len(seen) else -1)) + 1
    counts = torch.bincount(seen.long(), minlength=size).to(torch.int64)
    counts = distributed.all_reduce_sum(counts, world)
    expected = torch.zeros(size, dtype=torch.int64)
    expected[torch.as_tensor(index_space, dtype=torch.int64)] = 1
    if not torch.equal(counts, expected):
        missed = int(((expected == 1) & (counts == 0)).sum())
        twice = int((counts > 1).sum())
        extra = int(((expected == 0) & (counts > 0)).sum())
        raise EvaluationError(f"evaluation did not see every image of the split exactly once: "
                              f"{missed} missed, {twice} seen more than once, {extra} not in the "
                              f"split (of {len(index_space)}); the error would be biased")


def check_settings(overrides) -> None:
    """ConfigError unless every `key=value` is one of EVAL_SETTINGS (and a valid value)."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key not in EVAL_SETTINGS:
            raise config.ConfigError(f"{item}: alexnet eval takes only {', '.join(EVAL_SETTINGS)};"
                                     f" everything else is the checkpoint's own config, which its "
                                     f"network was trained with", key)
    config.load(None, overrides)


def _check_members(checkpoints, cfgs, split: str):
    """Members must agree on INPUT_KEYS (plus HOLDOUT_KEYS on train splits)."""
    keys = INPUT_KEYS + (HOLDOUT_KEYS if split in ("train", "train_holdout") else ())
    for path, c in zip(checkpoints[1:], cfgs[1:]):
        diff = config.differences(c, cfgs[0])
        differ = [f"{k} ({diff[k][1]!r} vs {diff[k][0]!r})" for k in keys if k in diff]
        if differ:
            raise preflight.StartError(f"{path} differs from {checkpoints[0]} in "
                                       f"{', '.join(differ)}: ensemble members must see the same "
                                       f"pixels")


def _progress(view: str, total: int, say, world_size: int):
    """A callback for error_rates: a line every PROGRESS_EVERY_S seconds and at the end."""
    start = time.perf_counter()
    last = [start]

    def update(done: int):
        now = time.perf_counter()
        done = min(done * world_size, total)      # this rank's count, scaled to all ranks
        if done < total and now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        rate = done / (now - start) if now > start else math.nan
        left = seconds_left(total - done, done, now - start)
        say(f"  {view}: {done}/{total} images ({100 * done / max(total, 1):.0f}%) "
            f"{rate:.1f} img/s ETA {metrics.format_duration(left)}")
    return update


def evaluate(checkpoints, data_root, split: str = "val", ten_crop: bool | None = None,
             batch_size: int | None = None, devices=None, overrides=(), say=None) -> dict:
    """§6 errors of one checkpoint, or of the softmax-averaged ensemble of several.
    `ten_crop`: None follows the (first) checkpoint's eval.ten_crop after `overrides`;
    `overrides`: EVAL_SETTINGS as key=value; `say`: where progress lines go (None: nowhere).
    Start-up problems (data, classes, devices, members that disagree) raise preflight.StartError
    before any image is evaluated."""
    from paper_alexnet import data as data_lib
    world = distributed.current_world()
    if not checkpoints:
        raise EvaluationError("no checkpoint to evaluate: name one with --checkpoint or --run-dir")
    with preflight.starting():
        root, loaded = _load_members(checkpoints, data_root, split, devices, overrides, world)
        cfg = config.build_with_overrides(config.RunConfig, config.to_dict(loaded[0][0]),
                                          list(overrides) + ([f"eval.batch_size={batch_size}"]
                                                             if batch_size is not None else []))
        ten_crop = cfg.eval.ten_crop if ten_crop is None else ten_crop
        if ten_crop and cfg.data.geometry == "resize":
            raise preflight.StartError("ten crops need data.geometry=crop: this network was "
                                       "trained on resized images, which have one view; "
                                       "evaluate the centre crop (--no-ten-crop)")
        models = [m for _, m, _ in loaded]
        _, indices = data_lib.split_indices(root, split, cfg)
        view_sets = [("center", 1)] + ([("ten_crop", 10)] if ten_crop else [])
        streams = {view: data_lib.eval_batches(root, split, cfg, view=view, rank=world.rank,
                                               world_size=world.world_size,
                                               device=models[0].input_device)
                   for view, _ in view_sets}      # built now: their errors raise before any work
    result = _result_header(checkpoints, loaded, root, split, len(indices), world)
    dtype = resolve_precision(cfg, models[0].input_device)
    for view, n_views in view_sets:
        progress = _progress(view, len(indices), say, world.world_size) if say else None
        result[view] = error_rates(models, streams[view], views=n_views, split_len=len(indices),
                                    world=world, dtype=dtype, index_space=indices,
                                    progress=progress)
    return result


def _load_members(checkpoints, data_root, split: str, devices, overrides, world) -> tuple:
    """(data root, [(config, model, state)] of each checkpoint) once the settings, the data,
    the devices, the members' agreement and their class counts are checked."""
    check_settings(overrides)
    root = preflight.check_data_root(data_root)
    if any(o.split("=", 1)[0].strip() == "model.devices" for o in overrides):
        devices = config.load(None, overrides).model.devices
    if devices is None and world.distributed:
        devices = distributed.replica_devices(world, ("auto",))
    loaded = [checkpoint.load_model(p, devices) for p in checkpoints]
    _check_members(checkpoints, [c for c, _, _ in loaded], split)
    for path, (c, _, _) in zip(checkpoints, loaded):
        preflight.check_classes(c.model.num_classes, root, split, str(path))
    return root, loaded


def _result_header(checkpoints, loaded, root, split: str, images: int, world) -> dict:
    """What result.json says besides the errors: what was evaluated on which data, by which
    code; a data_note (also printed, loudly but not refused) when the data changed since
    training."""
    notes = [results.data_change(s.get("data"), root, Path(p).name)
             for p, (_, _, s) in zip(checkpoints, loaded)]
    notes = [n for n in notes if n]
    for note in notes if world.is_main else ():   # still these nets' errors, so not refused
        print(f"alexnet eval: WARNING: {note}", file=sys.stderr, flush=True)
    return dict(split=split, images=images, checkpoints=[str(p) for p in checkpoints],
                steps=[s.get("global_step") for _, _, s in loaded],
                epochs=[s.get("epoch") for _, _, s in loaded],
                planned_epochs=[c.train.epochs for c, _, _ in loaded],
                data_manifest_sha256=results.data_id(root, split),
                code_version=checkpoint.code_version(),
                **({"data_note": "; ".join(notes)} if notes else {}))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of images (e.g. "
                                         f"--batch-size 128)")
    return value


def _asks_ten_crop(item: str) -> bool:
    """True for an override that sets eval.ten_crop=true (a bad value is refused later)."""
    if item.split("=", 1)[0].strip() != "eval.ten_crop":
        return False
    try:
        return config.load(None, [item]).eval.ten_crop
    except config.ConfigError:
        return False


def _start(args, out: Path, overrides: list[str], world, say) -> tuple[list, str | None]:
    """The checks before anything is evaluated or written (StartError, exit 2): the output path,
    the settings, the checkpoints; (checkpoints, a warning about the one chosen or None)."""
    from data_prep.files import output_problem, overlap_problem
    if world.is_main:
        problem = output_problem(out, "file")
        if problem:
            raise preflight.StartError(f"{'--out' if args.out else 'result file'} {out}: "
                                       f"{problem}: choose another path")
        problem = overlap_problem(out, "--out" if args.out else "result file",
                                  [("--data", args.data)], runs=False)
        if problem:
            raise preflight.StartError(problem)
    check_settings(overrides)
    if args.run_dir is None:
        for p in args.checkpoint:
            if not Path(p).is_file():
                raise preflight.StartError(f"--checkpoint {p} does not exist")
        return args.checkpoint, None
    path, warning, line = results.run_checkpoint(args.run_dir)
    say and say(line)
    return [path], warning


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alexnet eval", description="Top-1/top-5 error (§6) "
                                     "with the centre crop and ten crops; several checkpoints = "
                                     "an ensemble (softmax average).")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-dir", help="evaluate this run's final (newest) checkpoint")
    which.add_argument("--checkpoint", action="append", help="a checkpoint file (repeat for an "
                       "ensemble)")
    parser.add_argument("--data", default=os.environ.get("ALEXNET_DATA"),
                        help="prepared dataset ROOT (default: $ALEXNET_DATA)")
    parser.add_argument("--split", default="val", help="prepared split to evaluate on "
                        "(default: %(default)s)")
    parser.add_argument("--no-ten-crop", action="store_true", help="centre crop only; same as "
                        "eval.ten_crop=false (default: the checkpoint's eval.ten_crop)")
    parser.add_argument("--batch-size", type=_positive, help="images per batch (default: the "
                        "checkpoint's eval.batch_size); same as eval.batch_size=N")
    parser.add_argument("--device", help="where the networks run (cpu, cuda:0, …); same as "
                        "model.devices=[DEVICE] (default: the checkpoint's model.devices)")
    parser.add_argument("--out", help="result JSON (default: RUN/result.json with --run-dir)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help=f"evaluation settings: {', '.join(EVAL_SETTINGS)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done; 2 the command cannot start as given (nothing evaluated or written);
    1 the evaluation failed; 75 stopped by SIGTERM or Ctrl-C (nothing written)."""
    from data_prep.interrupt import Interrupted, stop_at_once
    parser = _parser()
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error("no prepared data: pass --data ROOT or set ALEXNET_DATA")
    if args.run_dir is None and args.out is None:
        parser.error("with --checkpoint, name the result file with --out FILE")
    if args.no_ten_crop and any(_asks_ten_crop(o) for o in args.overrides):
        parser.error("--no-ten-crop contradicts eval.ten_crop=true: give one of them")
    overrides = (list(args.overrides) + ([f"model.devices=[{args.device}]"] if args.device else [])
                 + (["eval.ten_crop=false"] if args.no_ten_crop else []))
    out = Path(args.out) if args.out else Path(args.run_dir) / "result.json"
    world = distributed.init_from_env()
    say = print if world.is_main else None
    warning, result = None, {}

    def work():
        nonlocal warning
        with preflight.starting():
            checkpoints, warning = _start(args, out, overrides, world, say)
        if warning and world.is_main:
            print(f"alexnet eval: WARNING: {warning}", file=sys.stderr, flush=True)
        with stop_at_once():
            result.update(evaluate(checkpoints, args.data, args.split, ten_crop=None,
                                   batch_size=args.batch_size, overrides=overrides, say=say))
    try:             # a stop: the result is written only at the end
        code = exits.run("alexnet eval", work, failures=(ValueError,), hints={
            Interrupted: f"nothing was written: run the same command again (exit status "
                         f"{exits.STOPPED})"})
    finally:
        distributed.shutdown(world)
    if code != exits.DONE:
        return code
    return _write(result, warning, out) if world.is_main else 0


def _write(result: dict, warning: str | None, out: Path) -> int:
    """Print the numbers, then write them to `out` (0), or say why they could not be (1)."""
    unfinished = any(e is not None and e < p for e, p in zip(result["epochs"],
                                                               result["planned_epochs"]))
    result["final"] = not warning and not unfinished
    if warning:
        result["checkpoint_note"] = warning
    print(results.format_result(result))          # the numbers first, then the file
    if unfinished and not warning:
        print("note: a checkpoint is from an unfinished run (epoch < train.epochs)")
    if warning:
        print(f"alexnet eval: WARNING: {warning}", file=sys.stderr)
    try:
        written = results.write_result(out, result)
    except OSError as err:
        print(f"alexnet eval: the results above could not be written to {out} "
              f"({err.strerror or err}): free space or choose another --out and run again",
              file=sys.stderr)
        return 1
    kept = written.get("kept_from_earlier")
    print(f"wrote {out}" + (f" (kept {', '.join(kept)} from the earlier evaluation of the same "
                            f"checkpoint)" if kept else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
