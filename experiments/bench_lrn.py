"""§3.3 LRN measured: our fast path against torch's composite (`benchmark`, CPU or CUDA), and on
CUDA the Triton kernel designs side by side (`compare_kernels`, the measurement that decides
lrn_triton.CHANNELS_LAST_KERNEL; docs/lrn.md). Benchmarks live here, beside the bench they serve
(experiments/bench.py), not in the runtime modules.
"""
from __future__ import annotations

import time

import torch

from paper_alexnet import lrn_triton
from paper_alexnet.lrn import DEFAULT, get_convention, local_response_norm, lrn_reference


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_fwd_bwd(fn, x: torch.Tensor, g: torch.Tensor, reps: int) -> float:
    """Seconds per forward+backward of fn at x, averaged over reps back-to-back calls."""
    xs = [x.detach().requires_grad_() for _ in range(reps)]
    _sync(x.device)
    t0 = time.perf_counter()
    for xi in xs:
        fn(xi).backward(g)
    _sync(x.device)
    return (time.perf_counter() - t0) / reps


def benchmark(shape=(32, 48, 55, 55), dtype=torch.float32, device="cpu", convention=DEFAULT,
              iters: int = 20, warmup: int = 3, channels_last: bool = False,
              impls=("fast", "reference"), seed: int = 0) -> dict:
    """Forward+backward time of several LRN impls in the same run, on the same input.

    Inputs look like post-ReLU conv1 activations (non-negative, tens of units). The impls are timed
    in turn, `iters` rounds, so that a shared, noisy machine disturbs them alike; each round averages
    10 calls on CUDA (1 on CPU); the median round is reported. `speedup` = reference / fast.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = (torch.randn(shape, generator=gen) * 20).relu().to(device, dtype).contiguous(memory_format=fmt)
    g = torch.randn(shape, generator=gen).to(device, dtype).contiguous(memory_format=fmt)
    reps = 10 if device.type == "cuda" else 1
    fns = {impl: (lambda t, impl=impl: local_response_norm(t, convention, impl)) for impl in impls}
    for fn in fns.values():
        _time_fwd_bwd(fn, x, g, warmup)
    rounds = {impl: [] for impl in impls}
    for _ in range(iters):
        for impl, fn in fns.items():
            rounds[impl].append(_time_fwd_bwd(fn, x, g, reps))
    times = {impl: sorted(r)[iters // 2] for impl, r in rounds.items()}
    result = {"shape": tuple(shape), "dtype": str(dtype).replace("torch.", ""), "device": str(device),
              "convention": convention, "channels_last": channels_last, "iters": iters,
              "times_s": times, "torch": torch.__version__, "threads": torch.get_num_threads()}
    if "fast" in times and "reference" in times:
        result["speedup"] = times["reference"] / times["fast"]
    return result


def compare_kernels(shape=(128, 48, 55, 55), dtype=torch.bfloat16, iters=20, convention=DEFAULT):
    """On CUDA, channels_last: ms per forward+backward of each of KERNELS that takes `shape` and of
    torch's reference (CUDA events, the mean of `iters` calls after one warm-up call), and the
    largest |difference| of each rows kernel's output and gradient from "elementwise"'s. The
    measurement that decides CHANNELS_LAST_KERNEL (docs/lrn.md)."""
    cv = get_convention(convention)
    params = (cv.size, cv.coefficient, cv.beta, cv.k)
    gen = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    x = (torch.randn(shape, generator=gen) * 20).relu()     # post-ReLU conv1-like activations
    x = x.to("cuda", dtype).contiguous(memory_format=cl)
    g = torch.randn(shape, generator=gen).to("cuda", dtype).contiguous(memory_format=cl)

    def fwd_bwd(name):
        if name == "reference":
            xr = x.detach().requires_grad_()
            y = lrn_reference(xr, cv)
            return y, torch.autograd.grad(y, xr, g)[0]
        return (lrn_triton.forward(x, *params, kernel=name),
                lrn_triton.backward(x, g, *params, kernel=name))

    result = {"shape": tuple(shape), "dtype": str(dtype), "device": torch.cuda.get_device_name()}
    outputs = {}
    names = [name for name in lrn_triton.KERNELS
             if lrn_triton.kernel_for(x, name) == name]     # rows-dot: C ≤ 128
    for name in names + ["reference"]:
        try:
            outputs[name] = fwd_bwd(name)                    # compiles the kernels
        except Exception as error:   # a design that fails to compile must not hide the others
            result[f"{name}_error"] = repr(error)[:500]
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(iters):
            fwd_bwd(name)
        end.record()
        end.synchronize()
        result[f"{name}_ms"] = start.elapsed_time(end) / iters
    for name in [n for n in names[1:] if n in outputs]:
        for what, mine, theirs in zip(("y", "grad"), outputs[name], outputs["elementwise"]):
            diff = (mine.float() - theirs.float()).abs().max().item()
            result[f"{name}_max_abs_diff_{what}"] = diff
    return result
