"""§3.3 LRN on CUDA: the measurement that decides lrn_triton.CHANNELS_LAST_KERNEL (docs/lrn.md).

`compare_kernels` times lrn_triton's kernel designs against each other and against torch's
composite (lrn.lrn_reference). It sits above both: lrn imports lrn_triton (lazily), and
lrn_triton imports nothing of ours.
"""
from __future__ import annotations

import torch

from paper_alexnet import lrn_triton
from paper_alexnet.lrn import DEFAULT, get_convention, lrn_reference


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
