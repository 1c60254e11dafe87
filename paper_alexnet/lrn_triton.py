"""§3.3 LRN on CUDA: one Triton kernel for the forward, one for the backward (used by paper_alexnet.lrn).

Same mathematics as lrn._LRNFunction (docs/lrn.md): d = k + coefficient · B(x²), y = x · d^−β,
∂L/∂x = g · d^−β − 2β·coefficient · x · Bᵀ(g · x · d^−β / d). Each program takes a block of elements
in memory order; the window sum reads each element's n neighbours along the channel axis (masked to
the channels that exist: the clipped window of the formula), which are adjacent in channels_last
memory and one plane apart in NCHW, so the extra reads hit the caches. The backward recomputes d at
the n channels its element's gradient depends on instead of storing it: the forward reads x and
writes y, the backward reads x and g and writes ∂L/∂x, the least memory traffic the operation allows.
Float32 arithmetic for every input dtype. No atomics: deterministic.
Imported lazily, only when a CUDA tensor reaches the fast path. With TRITON_INTERPRET=1 set before
triton is first imported, the kernels run on CPU tensors in Triton's interpreter instead
(tests/test_lrn_triton.py, docs/lrn.md).
"""
import contextlib

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _power(d, BETA: tl.constexpr):
    if BETA == 0.75:
        r = tl.math.rsqrt(d)
        return r * tl.sqrt(r)          # d^-0.5 · d^-0.25
    return tl.exp2(-BETA * tl.log2(d))


@triton.jit
def _window_sq(x_ptr, idx, c, mask, C, stride_c, SHIFT: tl.constexpr,
               BEFORE: tl.constexpr, AFTER: tl.constexpr):
    # Σ x_j² over j ∈ [c+SHIFT−BEFORE, c+SHIFT+AFTER] ∩ [0, C−1]
    acc = tl.zeros(idx.shape, tl.float32)
    for o in tl.static_range(SHIFT - BEFORE, SHIFT + AFTER + 1):
        ok = mask & (c + o >= 0) & (c + o < C)
        v = tl.load(x_ptr + idx + o * stride_c, mask=ok, other=0.0).to(tl.float32)
        acc += v * v
    return acc


@triton.jit
def _lrn_fwd(x_ptr, y_ptr, numel, C, stride_c, coefficient, k,
             BETA: tl.constexpr, BEFORE: tl.constexpr, AFTER: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < numel
    c = (idx // stride_c) % C            # channel of each element, in either memory format
    x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    s = _power(k + coefficient * _window_sq(x_ptr, idx, c, mask, C, stride_c, 0, BEFORE, AFTER), BETA)
    tl.store(y_ptr + idx, (x * s).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _lrn_bwd(x_ptr, g_ptr, gx_ptr, numel, C, stride_c, coefficient, k,
             BETA: tl.constexpr, BEFORE: tl.constexpr, AFTER: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < numel
    c = (idx // stride_c) % C
    # u_j = Σ_i g_i x_i s_i / d_i over the outputs i whose window holds j: i ∈ [j−AFTER, j+BEFORE]
    u = tl.zeros([BLOCK], tl.float32)
    for o in tl.static_range(-AFTER, BEFORE + 1):
        ok = mask & (c + o >= 0) & (c + o < C)
        x_i = tl.load(x_ptr + idx + o * stride_c, mask=ok, other=0.0).to(tl.float32)
        g_i = tl.load(g_ptr + idx + o * stride_c, mask=ok, other=0.0).to(tl.float32)
        d_i = k + coefficient * _window_sq(x_ptr, idx, c, mask, C, stride_c, o, BEFORE, AFTER)
        u += g_i * x_i * _power(d_i, BETA) / d_i        # 0 outside the channels (g_i = x_i = 0)
    x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    s = _power(k + coefficient * _window_sq(x_ptr, idx, c, mask, C, stride_c, 0, BEFORE, AFTER), BETA)
    gx = g * s - (2.0 * BETA) * coefficient * x * u
    tl.store(gx_ptr + idx, gx.to(gx_ptr.dtype.element_ty), mask=mask)


def supports(x: torch.Tensor) -> bool:
    """Dense contiguous or channels_last CUDA tensor of a float type."""
    return (x.is_cuda and x.dtype in (torch.float32, torch.bfloat16, torch.float16) and x.numel() > 0
            and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)))


def _launch(kernel, tensors, x, size, coefficient, beta, k):
    # In memory order, channel c of element idx is (idx // stride(1)) % C in both formats.
    stride_c = x.stride(1) if x.shape[1] > 1 else 1
    grid = (triton.cdiv(x.numel(), BLOCK),)
    # Triton launches on the current device; the towers may be on two. A CPU tensor gets here only
    # from the tests, with the kernels running in Triton's interpreter.
    on_device = torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()
    with on_device:
        kernel[grid](*tensors, x.numel(), x.shape[1], stride_c, coefficient, k,
                     BETA=beta, BEFORE=size // 2, AFTER=(size - 1) // 2, BLOCK=BLOCK, num_warps=8)


def forward(x, size, coefficient, beta, k):
    y = torch.empty_like(x)                     # same strides as x (dense input)
    _launch(_lrn_fwd, (x, y), x, size, coefficient, beta, k)
    return y


def backward(x, g, size, coefficient, beta, k):
    fmt = torch.contiguous_format if x.is_contiguous() else torch.channels_last
    g = g.contiguous(memory_format=fmt)          # the kernel walks x, g and ∂L/∂x in x's order
    gx = torch.empty_like(x)
    _launch(_lrn_bwd, (x, g, gx), x, size, coefficient, beta, k)
    return gx
