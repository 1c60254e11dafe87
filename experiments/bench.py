"""Speed: `alexnet bench`, every speed figure of the project in ONE run.

    alexnet bench [--device cpu|cuda] [--batch 128] [--quick] [--compile] [--json OUT]

On whatever device is present it measures, in this order and in the same process:
1. LRN (§3.3) forward+backward, our fast path vs torch's composite (`bench_lrn.benchmark`), at
   conv1's (N, 48, 55, 55) and conv2's (N, 128, 27, 27) activations of one tower;
2. the training step (forward, backward, the §5 optimiser step) of the faithful two-tower network
   vs torchvision's AlexNet (its own architecture, 1000 classes) vs the faithful network without
   LRN vs the same network written with grouped convolutions (GroupedAlexNet: what the paper's
   model would cost if it did not keep its towers apart), all in the same precision and memory
   format (CUDA: bf16 autocast + channels_last, eager, and compiled with --compile; CPU: fp32
   channels_last), and
   the faithful network's plain step (fp32, contiguous, eager) for reference;
3. ten-crop evaluation (§6) of the faithful network, model only;
4. the input pipeline alone (`bench_loader.loader_benchmark`) on a small prepared set that it
   writes with data_prep into a temporary folder (synthetic images, §2 prep: 256×256 JPEG q90);
5. end-to-end training (prepared shards → decode → augment → step) and its ratio to the
   model-only rate of the same step.
Timing: warm-up iterations excluded; on CUDA events around the timed region only (no sync inside
it); the variants are timed in turn, round after round, so that a noisy machine disturbs them
alike; the median round is reported. Prints absolute figures and ratios; --json writes everything
with the hardware, the versions and the date. The measuring functions: bench_measure.py;
what is measured and why: docs/speed.md.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from data_prep import exits
from data_prep.files import output_problem
from experiments.bench_measure import (Setting, fast_setting, make_prepared_set,
                                       measure_end_to_end, measure_lrn, measure_pipeline,
                                       measure_steps, measure_ten_crop)

TARGETS = {  # the speed targets: (what, minimum)
    "lrn_speedup_gpu_bf16_conv1": ("LRN fast / reference, GPU bf16, conv1", 3.0),
    "lrn_speedup_cpu_conv1": ("LRN fast / reference, CPU, conv1", 1.5),
    "faithful_vs_torchvision": ("faithful step rate / torchvision's", 0.9),
    "towers_vs_grouped": ("two towers on one device / grouped convolutions", 1.0),
    "end_to_end_vs_model": ("end-to-end training rate / model-only", 0.8),
}


def environment(device: torch.device) -> dict:
    """Hardware, versions and date of this run (STYLE: speed claims name them)."""
    import numpy
    import PIL
    import torchvision
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    env = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               cpu=cpu, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
               load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
               gpu=None, python=platform.python_version(), torch=torch.__version__,
               torchvision=torchvision.__version__, pillow=PIL.__version__,
               numpy=numpy.__version__, platform=platform.platform())
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), gpu_count=torch.cuda.device_count())
    return env


def ratios(result: dict) -> dict:
    """Every ratio the report gives, computed from the measured values in `result`."""
    out = {}
    steps = {k: v for k, v in result["steps"].items() if "images_per_s" in v}
    for key, row in steps.items():
        if row["variant"] != "faithful":
            continue
        for other in ("torchvision", "grouped", "no_lrn"):
            twin = steps.get(key.replace("faithful", other, 1))
            if twin:
                out[f"faithful / {other} ({row['setting']})"] = \
                    row["images_per_s"] / twin["images_per_s"]
    fast, plain = steps.get(result["model_only_key"]), steps.get(result["plain_key"])
    if fast and plain:
        out["faithful fast / plain step"] = fast["images_per_s"] / plain["images_per_s"]
    e2e = [r for r in result.get("end_to_end") or [] if "images_per_s" in r]
    if e2e:   # against the model-only rate measured right after it, on the same network
        best = max(e2e, key=lambda r: r["images_per_s"] / r["model_only_images_per_s"])
        out["end-to-end / model-only"] = best["images_per_s"] / best["model_only_images_per_s"]
    for r in result["lrn"]:
        out[f"LRN fast / reference {r['layer']} {r['dtype']} "
            f"{'channels_last' if r['channels_last'] else 'contiguous'}"] = r["speedup"]
    return out


def targets(result: dict) -> dict:
    """The speed targets: value, minimum, and met / unmet / not measured (on this device)."""
    r, device = result["ratios"], result["settings"]["device"]
    fmt = "channels_last" if result["settings"]["channels_last"] else "contiguous"
    label = result["model_only_key"].split(" | ")[1]
    values = {
        "lrn_speedup_gpu_bf16_conv1": r.get(f"LRN fast / reference conv1 bfloat16 {fmt}")
        if device == "cuda" else None,
        "lrn_speedup_cpu_conv1": r.get(f"LRN fast / reference conv1 float32 {fmt}")
        if device == "cpu" else None,
        "faithful_vs_torchvision": r.get(f"faithful / torchvision ({label})"),
        "towers_vs_grouped": r.get(f"faithful / grouped ({label})"),
        "end_to_end_vs_model": r.get("end-to-end / model-only"),
    }
    elsewhere = {"lrn_speedup_gpu_bf16_conv1": device != "cuda",
                 "lrn_speedup_cpu_conv1": device != "cpu"}

    def status(key, value, minimum):
        if value is None:
            return "not measured (other device)" if elsewhere.get(key) else "not measured (failed)"
        return "met" if value >= minimum else "unmet"
    return {key: dict(what=what, minimum=minimum, value=values[key],
                      status=status(key, values[key], minimum))
            for key, (what, minimum) in TARGETS.items()}


def report(result: dict) -> str:
    """The tables `alexnet bench` prints."""
    env, st = result["environment"], result["settings"]
    lines = [f"alexnet bench, {env['date']}: {st['device']}, batch {st['batch']}"
             f"{' (quick)' if st['quick'] else ''}",
             f"  CPU {env['cpu']} ({env['cpu_count']} cores, {env['torch_threads']} torch threads,"
             f" load average {env['load_average']}); GPU {env['gpu']}",
             f"  python {env['python']}, torch {env['torch']}, torchvision {env['torchvision']}, "
             f"pillow {env['pillow']}", "",
             "LRN forward+backward (ms, median of rounds)       fast   reference   speedup"]
    for r in result["lrn"]:
        fmt = "channels_last" if r["channels_last"] else "contiguous"
        lines.append(f"  {r['layer']} {str(tuple(r['shape'])):<18} {r['dtype']:<8} {fmt:<13} "
                     f"{1000 * r['times_s']['fast']:7.2f} {1000 * r['times_s']['reference']:9.2f}"
                     f" {r['speedup']:8.2f}x")
    lines += [f"  {dtype}: FAILED: {text}" for dtype, text in result["lrn_errors"].items()]
    lines += ["", f"train step, batch {st['batch']} (median of {st['rounds']} rounds, "
                  f"{st['warmup']} warm-up)          ms/step    images/s"]
    for key, row in result["steps"].items():
        text = (f"{row['ms']:9.1f} {row['images_per_s']:11.1f}" if "ms" in row
                else f"  FAILED: {row['error']}")
        lines.append(f"  {key:<48}{text}")
    tc = result["ten_crop"]
    lines += [""] + ([f"ten-crop evaluation: FAILED: {tc['error']}"] if "error" in tc else
                     [f"ten-crop evaluation, model only ({tc['images']} images = {tc['views']} "
                      f"views, {tc['setting']}): {tc['images_per_s']:.1f} images/s"])
    pipe = result.get("pipeline")
    if pipe and "error" in pipe:
        lines += ["", f"input pipeline alone: FAILED: {pipe['error']}"]
    elif pipe:
        lines += ["", "input pipeline alone (bench_loader.loader_benchmark), images/s"]
        lines += [f"  backend {r['backend']:<4} workers {r['workers']:<3} {r['images_per_s']:9.1f}"
                  for r in pipe["runs"]]
        lines.append(f"  plain PIL loop {pipe['plain_pil_loop']:.1f}; decode alone: PIL "
                     f"{pipe.get('decode_pil', 0):.1f}, torchvision CPU "
                     f"{pipe.get('decode_torchvision_cpu', 0):.1f}")
    for r in result.get("end_to_end") or []:
        lines.append(f"end-to-end training (backend {r['backend']}, {r['workers']} workers"
                     + (f"): FAILED: {r['error']}" if "error" in r else
                        f", {r['steps']} steps): {r['images_per_s']:.1f} images/s; the same "
                        f"network right after, model only: {r['model_only_images_per_s']:.1f}"))
    lines += ["", "ratios (rates: higher is faster)"]
    lines += [f"  {k:<66} {v:7.3f}" for k, v in result["ratios"].items()]
    lines += ["", "speed targets"]
    lines += [f"  {t['what']:<50} >= {t['minimum']:<4} "
              f"{'' if t['value'] is None else format(t['value'], '.3f'):>7}  {t['status']}"
              for t in result["targets"].values()]
    return "\n".join(lines)


def plan(device: torch.device, batch: int, quick: bool) -> dict:
    """How much to measure: rounds, warm-up and sizes per device (quick = a few minutes on a
    2-core CPU)."""
    cores = os.cpu_count() or 1
    cuda = device.type == "cuda"
    workers = max(1, min(cores - 1, 15))
    return dict(
        warmup=(3 if cuda else 1) if quick else (10 if cuda else 2),
        rounds=5 if quick else (10 if cuda else 5),
        iters=10 if cuda else 1,                       # steps per timed round
        lrn_iters=5 if quick else 15,
        ten_crop_images=batch if cuda else max(1, batch // 4 if quick else batch),
        pipeline_batches=5 if quick else 20,
        pipeline_workers=sorted({0, 1, min(4, workers), min(8, workers), workers}) if cuda
        else sorted({0, min(1, cores - 1)}),
        backends=("cpu", "gpu") if cuda else ("cpu",),
        # CPU device: the step takes every core, so a decode worker competes with it; 0 workers
        # (decode between steps) is measured too, and the ratio takes the faster
        e2e=[("cpu", workers), ("gpu", 4)] if cuda
        else sorted({("cpu", 0), ("cpu", min(1, cores - 1))}),
        e2e_warmup=(5 if cuda else 1) if quick else (10 if cuda else 2),
        e2e_steps=(20 if cuda else 5) if quick else (50 if cuda else 8),
        unique_images=32 if quick else 256)


def _attempt(log, what: str, fn, *args):
    """fn(*args), or {"error": ...} if it raises: one failing section (a decoder missing on this
    machine, say) is reported in the table and the JSON, and the other sections still run."""
    try:
        return fn(*args)
    except Exception as err:   # noqa: BLE001 -- reported, not hidden
        text = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"
        log(f"{what} FAILED: {text}")
        return {"error": text}


PLAIN = Setting(None, False, False)   # fp32, contiguous, eager: the reference step


def _lrn_rows(log, device, batch, dtype_fast, iters) -> tuple[list, dict]:
    """LRN timed at the fast setting's dtype (and float32 too on a GPU); a dtype that fails gives
    an error entry, not an exception."""
    dtypes = [dtype_fast or torch.float32] + ([torch.float32] if device.type == "cuda" else [])
    rows, errors = [], {}
    for dtype in dtypes:
        got = _attempt(log, "LRN", measure_lrn, device, batch, dtype, iters)
        if isinstance(got, dict):
            errors[str(dtype)] = got["error"]
        else:
            rows += got
    return rows, errors


def _train_steps(device, batch, p, fast, compile_: bool) -> dict:
    timing = (p["warmup"], p["rounds"], p["iters"])
    variants = ("faithful", "torchvision", "no_lrn", "grouped")
    steps = measure_steps(device, batch, variants, [fast], *timing)
    steps.update(measure_steps(device, batch, ("faithful",), [PLAIN], *timing))
    if compile_:   # the pair the targets compare; compiling all four would take minutes more
        steps.update(measure_steps(device, batch, ("faithful", "torchvision"),
                                   [fast_setting(device, compiled=True)], *timing))
    return steps


def _input_side(log, device, batch, p, fast, workdir) -> dict:
    """The input pipeline alone and end to end, on a prepared set written for the purpose."""
    log("writing a prepared set with data_prep ...")
    e2e_batches = p["e2e_warmup"] + p["e2e_steps"]
    root = make_prepared_set(Path(workdir) / "prepared",
                             batch * max(p["pipeline_batches"] + 1, e2e_batches),
                             val_images=batch, unique=p["unique_images"])
    log("input pipeline ...")
    pipeline = _attempt(log, "input pipeline", measure_pipeline, root, device, batch,
                        p["pipeline_batches"], p["pipeline_workers"], p["backends"])
    log("end to end ...")
    end_to_end = [dict(_attempt(log, f"end to end ({backend})", measure_end_to_end, root, device,
                                fast, batch, p["e2e_steps"], p["e2e_warmup"], w, backend,
                                workdir),
                       backend=backend, workers=w)
                  for backend, w in p["e2e"]]
    return dict(pipeline=pipeline, end_to_end=end_to_end)


def run(device, batch: int, quick: bool, compile_: bool, workdir, log=print,
        overrides: dict | None = None) -> dict:
    """Everything `alexnet bench` measures, as one dict (see the module docstring);
    `overrides` replaces entries of `plan` (the tests run it at a tiny size)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True    # fixed shapes: let cuDNN pick its fastest kernels
    p = {**plan(device, batch, quick), **(overrides or {})}
    fast = fast_setting(device)
    result = dict(environment=environment(device),
                  settings=dict(device=device.type, batch=batch, quick=quick, compile=compile_,
                                channels_last=fast.channels_last, **p),
                  model_only_key=f"faithful | {fast.label}",
                  plain_key=f"faithful | {PLAIN.label}")
    log("LRN ...")
    result["lrn"], result["lrn_errors"] = _lrn_rows(log, device, batch, fast.dtype,
                                                    p["lrn_iters"])
    log("train steps ...")
    result["steps"] = _train_steps(device, batch, p, fast, compile_)
    log("ten-crop evaluation ...")
    result["ten_crop"] = _attempt(log, "ten-crop evaluation", measure_ten_crop, device,
                                  p["ten_crop_images"], fast, p["warmup"], p["rounds"])
    result.update(_input_side(log, device, batch, p, fast, workdir))
    result["ratios"] = ratios(result)
    result["targets"] = targets(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="alexnet bench", description="Measure, in one run on one device: LRN fast vs "
        "reference; the train step of the faithful AlexNet vs torchvision's, vs no LRN, vs "
        "grouped convolutions; ten-crop evaluation; the input pipeline; end-to-end training. "
        "Prints absolute figures and ratios. Time: on an H100 about 2-3 minutes (plus compile "
        "time with --compile); on a 2-core CPU --quick takes a few minutes, and the full-size "
        "default (batch 128) takes 30 minutes or more there.")
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        help="default: cuda if present, else cpu")
    parser.add_argument("--batch", type=int, help="images per step (default 128, the paper's; "
                        "16 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller sets")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd steps")
    parser.add_argument("--json", metavar="OUT", help="write every figure, with hardware, "
                        "versions and date, to this JSON file (default: none, print only)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return exits.run("alexnet bench", lambda: measure(args, device, argv))


def usage_problem(args, device: str) -> str | None:
    """What makes the command unable to start (checked first: the measurement takes minutes)."""
    for flag, value in (("--batch", args.batch), ("--threads", args.threads)):
        if value is not None and value < 1:
            return f"{flag} {value}: must be at least 1"
    problem = args.json and output_problem(args.json, "file")
    if problem:
        return f"--json {args.json}: {problem}: choose another file"
    if device == "cuda" and not torch.cuda.is_available():
        return ("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False); "
                "use --device cpu")
    return None


def measure(args, device: str, argv) -> None:
    """Time everything, print the report, write --json."""
    problem = usage_problem(args, device)
    if problem:
        raise exits.UsageError(problem)
    batch = args.batch if args.batch is not None else (16 if args.quick else 128)
    if args.threads:
        torch.set_num_threads(args.threads)
    say = lambda text: print(f"[bench] {text}", file=sys.stderr, flush=True)   # noqa: E731
    with tempfile.TemporaryDirectory(prefix="alexnet-bench-") as workdir:
        result = run(device, batch, args.quick, args.compile, workdir, log=say)
    result["command"] = "alexnet bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(report(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    raise SystemExit(main())
