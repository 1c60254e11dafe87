"""§6, Tables 1–2: top-1 and top-5 error, centre crop and ten crops, for one net or several.

Ten crops (§4.1): the four corner 224 patches and the centre one of the 256 image, and their
horizontal reflections; the SOFTMAX outputs over the ten are averaged. An ensemble ("5 CNNs",
Table 2) averages the nets' softmax outputs (each already averaged over its views). Both averages
are means of probabilities, so their order does not matter.

Honest checkpoint choice: `--run-dir` evaluates the run's newest (final) checkpoint, `--checkpoint`
the named ones; nothing here picks the best checkpoint on the set it reports. Every image of the
split is seen exactly once (across ranks too): the count of each index is checked, else it fails.

`alexnet eval --run-dir RUN | --checkpoint CKPT [--checkpoint CKPT2 …] [--data ROOT] [--split val]
[--out FILE]` writes RUN/result.json (or FILE). `evaluate(checkpoints, data_root, split, ten_crop)`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from paper_alexnet import checkpoint, config, distributed, metrics
from paper_alexnet.precision import autocast, resolve_precision


class EvaluationError(RuntimeError):
    """An evaluation that would not be a fair count (images missed or counted twice, mismatched
    ensemble members)."""


def count_errors(models, batches, *, views: int, split_len: int, world=None, dtype=None,
                 index_space=None) -> dict:
    """Top-1/top-5 error of the softmax average of `models` over `views` views per image.

    `batches` yields (images (n·views, C, S, S), labels (n,), indices (n,)), as data.eval_batches.
    Returns {"images", "top1", "top5", "members": [{"top1", "top5"} per model]}; sums stay on the
    device until the end (one sync). `index_space`: the split's image indices (default
    0..split_len-1); each must be seen exactly once over all ranks, else EvaluationError.
    """
    world = world or distributed.World()
    out_device = models[0].output_device
    sums = torch.zeros(2 * (len(models) + 1), dtype=torch.float64, device=out_device)
    seen = []
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    with torch.no_grad():
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
    for m, mode in zip(models, was_training):
        m.train(mode)
    index_space = np.arange(split_len) if index_space is None else np.asarray(index_space)
    _check_coverage(torch.cat(seen) if seen else torch.zeros(0, dtype=torch.int64), index_space,
                    world)
    sums = distributed.all_reduce_sum(sums.to(distributed.collective_device(world, out_device)),
                                      world)
    values = (sums / len(index_space)).tolist()   # SYNC POINT: once per evaluation
    return dict(images=len(index_space), top1=values[0], top5=values[1],
                members=[dict(top1=values[2 * j], top5=values[2 * j + 1])
                         for j in range(1, len(models) + 1)])


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


def _member(path, devices):
    """(config, model in eval mode) of one checkpoint, loaded with weights_only=True."""
    from paper_alexnet import model as model_lib
    state = checkpoint.load(path)
    cfg = config.build(config.RunConfig, state["config"])
    model = model_lib.build(cfg.model, devices if devices is not None else cfg.model.devices)
    model.load_state_dict(state["model"])
    return cfg, model.eval(), state


def evaluate(checkpoints, data_root, split: str = "val", ten_crop: bool = True,
             batch_size: int | None = None, devices=None) -> dict:
    """§6 errors of one checkpoint, or of the softmax-averaged ensemble of several."""
    from paper_alexnet import data as data_lib
    world = distributed.current_world()
    if not checkpoints:
        raise EvaluationError("no checkpoint to evaluate: name one with --checkpoint or --run-dir")
    if devices is None and world.distributed:
        devices = distributed.replica_devices(world, ("auto",))
    loaded = [_member(p, devices) for p in checkpoints]
    cfg = loaded[0][0]
    for path, (c, _, _) in zip(checkpoints[1:], loaded[1:]):
        # the same views must mean the same thing for every member
        for key in ("data", "model.input_size", "model.in_channels", "model.num_classes"):
            section, _, field = key.partition(".")
            a, b = getattr(cfg, section), getattr(c, section)
            if field:
                a, b = getattr(a, field), getattr(b, field)
            if a != b:
                raise EvaluationError(f"{path} differs from {checkpoints[0]} in {key} ({b!r} vs "
                                      f"{a!r}): ensemble members must share the input pipeline")
    if batch_size is not None:
        cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, batch_size=batch_size))
    models = [m for _, m, _ in loaded]
    dtype = resolve_precision(cfg, models[0].input_device)
    _, indices = data_lib.split_indices(data_root, split, cfg)
    result = dict(split=split, images=len(indices), checkpoints=[str(p) for p in checkpoints],
                  steps=[s.get("global_step") for _, _, s in loaded],
                  epochs=[s.get("epoch") for _, _, s in loaded],
                  planned_epochs=[c.train.epochs for c, _, _ in loaded],
                  code_version=checkpoint.code_version())
    view_sets = [("center", 1)] + ([("ten_crop", 10)] if ten_crop else [])
    for view, n_views in view_sets:
        batches = data_lib.eval_batches(data_root, split, cfg, view=view, rank=world.rank,
                                        world_size=world.world_size,
                                        device=models[0].input_device)
        result[view] = count_errors(models, batches, views=n_views, split_len=len(indices),
                                    world=world, dtype=dtype, index_space=indices)
    return result


def _format(result: dict) -> str:
    lines = [f"{result['split']}: {result['images']} images, {len(result['checkpoints'])} "
             f"net(s){' (softmax average)' if len(result['checkpoints']) > 1 else ''}"]
    for view in ("center", "ten_crop"):
        if view in result:
            r = result[view]
            lines.append(f"  {view:<9} top-1 error {100 * r['top1']:6.2f}%   top-5 error "
                         f"{100 * r['top5']:6.2f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from data_prep.shards import FormatError
    parser = argparse.ArgumentParser(prog="alexnet eval", description="Top-1/top-5 error (§6) "
                                     "with the centre crop and ten crops; several checkpoints = "
                                     "an ensemble (softmax average).")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-dir", help="evaluate this run's final (newest) checkpoint")
    which.add_argument("--checkpoint", action="append", help="a checkpoint file (repeat for an "
                       "ensemble)")
    parser.add_argument("--data", default=os.environ.get("ALEXNET_DATA"),
                        help="prepared dataset ROOT (default: $ALEXNET_DATA)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--no-ten-crop", action="store_true", help="centre crop only")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--out", help="result JSON (default: RUN/result.json with --run-dir)")
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error("no prepared data: pass --data ROOT or set ALEXNET_DATA")
    if args.run_dir is None and args.out is None:
        parser.error("with --checkpoint, name the result file with --out FILE")
    world = distributed.init_from_env()
    try:
        if args.run_dir is not None:
            found = checkpoint.list_checkpoints(args.run_dir)
            if not found:
                raise EvaluationError(f"{args.run_dir} holds no checkpoint (train it first: "
                                      f"alexnet train --run-dir {args.run_dir})")
            newest = checkpoint.load_latest(args.run_dir)
            checkpoints = [newest[0]]
        else:
            checkpoints = args.checkpoint
        result = evaluate(checkpoints, args.data, args.split, ten_crop=not args.no_ten_crop,
                          batch_size=args.batch_size)
    except (EvaluationError, checkpoint.CheckpointError, config.ConfigError, ValueError,
            FormatError) as err:                     # FormatError: --data is not prepared
        print(f"alexnet eval: {err}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown(world)
    if world.is_main:
        out = Path(args.out) if args.out else Path(args.run_dir) / "result.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(_format(result))
        if any(e is not None and e < p for e, p in zip(result["epochs"],
                                                         result["planned_epochs"])):
            print("note: a checkpoint is from an unfinished run (epoch < train.epochs)")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
