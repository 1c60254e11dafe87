"""§3.3 Local response normalisation, three conventions, a reference and a fast implementation.

    b_c = a_c / (k + coefficient · Σ_{j=max(0, c−n/2)}^{min(C−1, c+n/2)} a_j²)^β     over dim 1 of (N, C, H, W)

The sum runs over the channels that exist (the window is clipped at 0 and C−1, never wrapped, never
renormalised by the number of channels it covers). The three conventions (docs/paper.md §3,
docs/lrn.md):

    "cuda-convnet" coefficient α/n on Σa², k=2   (the author's code; the default)
    "as-printed"   coefficient α   on Σa², k=2   (the formula as printed in §3.3)
    "caffe"        coefficient α/n on Σa², k=1   (bvlc_alexnet)

`lrn_reference` is `torch.nn.functional.local_response_norm` with docs/paper.md's parameters: a
chain of generic ops kept as the reference. The fast path is one autograd.Function with a
hand-derived backward (docs/lrn.md): the channel window sum is a product with a banded C×C matrix of
ones, which maps onto the matrix units and reads channels_last memory without a copy; the power is
computed in float32. On CUDA it runs the Triton kernels of lrn_triton.py; inside torch.compile the
fast path is the same formula in plain ops (`_lrn_traced`), which autograd differentiates and
inductor fuses.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Convention:
    """One LRN parameter set. `alpha` is torch's (it divides by `size`): coefficient on Σa² = alpha/size."""
    name: str
    size: int      # n, channels in the window
    alpha: float   # as passed to F.local_response_norm
    beta: float
    k: float

    @property
    def coefficient(self) -> float:
        """The factor multiplying Σ_j a_j² inside the bracket (docs/paper.md §3 table, column 2)."""
        return self.alpha / self.size


# docs/paper.md §3: n=5, α=1e-4, β=0.75; the table's "torch equivalent" column, verbatim.
# The default is what the author's code computes from those printed constants: cuda-convnet and
# cuda-convnet2 (layer.py, NormLayerParser) divide the configured scale by the window size, and
# their ImageNet configs set scale=0.0001, size=5, pow=0.75, minDiv=2 (docs/lrn.md).
CONVENTIONS = {
    "cuda-convnet": Convention("cuda-convnet", size=5, alpha=1e-4, beta=0.75, k=2.0),
    "as-printed": Convention("as-printed", size=5, alpha=5e-4, beta=0.75, k=2.0),
    "caffe": Convention("caffe", size=5, alpha=1e-4, beta=0.75, k=1.0),
}
DEFAULT = "cuda-convnet"
# "fast": the autograd.Function below, with the Triton kernels of lrn_triton.py on CUDA (torch ops on
# CPU); "fast-ops": the same Function with torch ops everywhere (for comparisons); inside
# torch.compile both are _lrn_traced's plain ops, which inductor fuses. "reference": torch's composite.
IMPLS = ("fast", "fast-ops", "reference")
_TRITON = {}   # device type -> lrn_triton module, or None where Triton cannot be imported


def get_convention(convention: str | Convention) -> Convention:
    if isinstance(convention, Convention):
        return convention
    if convention not in CONVENTIONS:
        raise ValueError(f"paper_alexnet/lrn.py: unknown LRN convention {convention!r}; "
                         f"choose one of {sorted(CONVENTIONS)} (docs/paper.md §3)")
    return CONVENTIONS[convention]


def _check_input(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"paper_alexnet/lrn.py: LRN expects (N, C, H, W), got shape {tuple(x.shape)}")


def lrn_reference(x: torch.Tensor, convention: str | Convention = DEFAULT) -> torch.Tensor:
    """The slow composite: torch's own LRN with the parameters of docs/paper.md §3's table.

    torch has no CPU avg_pool3d for bfloat16/float16, so there (only) it runs in float32 and rounds
    the result back; on CUDA every dtype runs as torch does it.
    """
    cv = get_convention(convention)
    if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
        y = F.local_response_norm(x.float(), cv.size, alpha=cv.alpha, beta=cv.beta, k=cv.k)
        return y.to(x.dtype)
    return F.local_response_norm(x, cv.size, alpha=cv.alpha, beta=cv.beta, k=cv.k)


def _band(channels: int, size: int, device, dtype) -> torch.Tensor:
    """M[c, j] = 1 where j is in c's window [c − size//2, c + (size−1)//2] (torch's padding), else 0.

    Rows are clipped by construction at 0 and C−1: the product sums the existing channels only.
    """
    idx = torch.arange(channels, device=device)
    offset = idx.unsqueeze(0) - idx.unsqueeze(1)          # (C, C): j − c
    return ((offset >= -(size // 2)) & (offset <= (size - 1) // 2)).to(dtype)


def _window_sum(t: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """out[:, c] = Σ_j band[c, j] · t[:, j] for a float (N, C, H, W) t, keeping t's memory format."""
    n, c, h, w = t.shape
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        # (N·H·W, C) rows, channels innermost: one plain matmul, no copy.
        rows = t.permute(0, 2, 3, 1).reshape(-1, c)
        return (rows @ band.t()).view(n, h, w, c).permute(0, 3, 1, 2)
    # (N, C, H·W): the band multiplies from the left, batched over images.
    return torch.matmul(band, t.contiguous().view(n, c, h * w)).view(n, c, h, w)


def _neg_power(d: torch.Tensor, beta: float) -> torch.Tensor:
    """d^−β; for the paper's β=0.75 as rsqrt(d)·sqrt(rsqrt(d)): two cheap passes instead of pow
    (pow is ~6× slower than rsqrt on the CPU measured in docs/lrn.md)."""
    if beta == 0.75:
        r = torch.rsqrt(d)
        return torch.sqrt(r).mul_(r)
    return torch.pow(d, -beta)


class _LRNFunction(torch.autograd.Function):
    """y = x · s,  s = d^−β,  d = k + coefficient · B (x²)  (B the banded window matrix).

    Backward (docs/lrn.md):  ∂L/∂x = g · s − 2β·coefficient · x · Bᵀ(g · x · s / d).
    Saves x (input dtype), s and s/d (compute dtype): backward is then four elementwise passes and one
    matmul, nothing recomputed. All arithmetic in float32 (float64 stays float64); the result has
    the input's dtype, so bfloat16 under autocast accumulates the window sum in float32.
    """

    @staticmethod
    def forward(ctx, x, size, coefficient, beta, k, allow_triton):
        ctx.size, ctx.coefficient, ctx.beta, ctx.k = size, coefficient, beta, k
        kernels = _triton_kernels(x) if allow_triton else None
        ctx.triton = kernels is not None
        if ctx.triton:   # fused: saves x only, the backward kernel recomputes d
            ctx.save_for_backward(x)
            return kernels.forward(x, size, coefficient, beta, k)
        compute = torch.float64 if x.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.to(compute)
            band = _band(x.shape[1], size, x.device, compute)
            d = _window_sum(xf * xf, band.mul_(coefficient)).add_(k)   # (N, C, H, W)
            s = _neg_power(d, beta)
            s_over_d = s / d
            y = xf * s
        ctx.save_for_backward(x, s, s_over_d)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        if ctx.triton:
            (x,) = ctx.saved_tensors
            gx = _TRITON["cuda"].backward(x, g, ctx.size, ctx.coefficient, ctx.beta, ctx.k)
            return gx, None, None, None, None, None
        x, s, s_over_d = ctx.saved_tensors
        with torch.autocast(device_type=g.device.type, enabled=False):
            xf = x.to(s.dtype)
            gf = g.to(s.dtype)
            band = _band(x.shape[1], ctx.size, x.device, s.dtype)
            # ∂b_i/∂a_j = δ_ij s_i − 2β·coef · a_i a_j (s_i / d_i) · B[i, j]; sum over i with g_i.
            t = _window_sum(torch.mul(gf, xf).mul_(s_over_d), band.t())
            gx = torch.addcmul(gf * s, xf, t, value=-2.0 * ctx.beta * ctx.coefficient)
        return gx.to(x.dtype), None, None, None, None, None


def _triton_kernels(x: torch.Tensor):
    """lrn_triton where x can use it (CUDA, Triton importable, supported layout), else None."""
    if not x.is_cuda:
        return None
    if "cuda" not in _TRITON:
        try:
            from paper_alexnet import lrn_triton
        except ImportError:   # no Triton for this platform: the torch-ops path is used instead
            lrn_triton = None
        _TRITON["cuda"] = lrn_triton
    kernels = _TRITON["cuda"]
    return kernels if kernels is not None and kernels.supports(x) else None


def _lrn_traced(x: torch.Tensor, cv: Convention) -> torch.Tensor:
    """The fast path's formula in plain differentiable ops, used inside torch.compile only.

    Under bf16 autocast, Dynamo loses the outer autocast state after _LRNFunction's forward turns
    autocast off (torch 2.11 on the H100 and 2.14.1 on CPU: "Input type (BFloat16) and bias type
    (float) should be the same" at conv2; docs/speed.md). These ops need no autocast switch: float32
    elementwise work and the window sum as n shifted slices of the zero-padded squares (the clipped
    window of the formula), which inductor fuses into one kernel; autograd derives the backward."""
    xf = x if x.dtype == torch.float64 else x.float()
    c, before, after = x.shape[1], cv.size // 2, (cv.size - 1) // 2
    sq = F.pad(xf * xf, (0, 0, 0, 0, before, after))     # zero channels beyond 0 and C−1
    window = sum(sq[:, o:o + c] for o in range(cv.size))  # Σ_{j=c−before}^{c+after} a_j²
    return (xf * (window * cv.coefficient + cv.k).pow(-cv.beta)).to(x.dtype)


def local_response_norm(x: torch.Tensor, convention: str | Convention = DEFAULT,
                        impl: str = "fast") -> torch.Tensor:
    """LRN over dim 1 of (N, C, H, W) with one of CONVENTIONS, by the fast or the reference path."""
    _check_input(x)
    cv = get_convention(convention)
    if impl in ("fast", "fast-ops") and torch.compiler.is_compiling():
        return _lrn_traced(x, cv)
    if impl in ("fast", "fast-ops"):
        return _LRNFunction.apply(x, cv.size, cv.coefficient, cv.beta, cv.k, impl == "fast")
    if impl == "reference":
        return lrn_reference(x, cv)
    raise ValueError(f"paper_alexnet/lrn.py: unknown LRN impl {impl!r}; choose one of {IMPLS}")


class LocalResponseNorm(nn.Module):
    """§3.3 LRN as a layer (after the ReLU of conv1 and conv2, per tower)."""

    def __init__(self, convention: str = DEFAULT, impl: str = "fast"):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"paper_alexnet/lrn.py: unknown LRN impl {impl!r}; choose one of {IMPLS}")
        self.convention = get_convention(convention)
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H, W)
        return local_response_norm(x, self.convention, self.impl)

    def extra_repr(self) -> str:
        cv = self.convention
        return (f"convention={cv.name!r}, size={cv.size}, coefficient={cv.coefficient:g}, "
                f"beta={cv.beta}, k={cv.k}, impl={self.impl!r}")
