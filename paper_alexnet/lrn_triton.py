"""§3.3 LRN on CUDA: Triton kernels for the forward and the backward (used by paper_alexnet.lrn).

Same mathematics as lrn._LRNFunction (docs/lrn.md): d = k + coefficient · B(x²), y = x · d^−β,
∂L/∂x = g · d^−β − 2β·coefficient · x · Bᵀ(g · x · d^−β / d). Float32 arithmetic for every input
dtype, the result in the input's dtype and layout. No atomics: deterministic.

Two designs (docs/lrn.md, "The rows kernels"):
- "elementwise" (_lrn_fwd, _lrn_bwd; any dense layout): each program takes a block of elements in
  memory order and finds each element's channel as (idx // stride_c) % C; the window sum reads the
  n channel neighbours (masked to the channels that exist: the clipped window of the formula), the
  backward recomputes d at the n neighbours its gradient depends on. Measured on an H100.
- "rows-dot" and "rows-gather" (_rows_fwd, _rows_bwd; channels_last only): x is a dense
  (N·H·W, C) row-major matrix; a program takes BLOCK_P rows × all C channels (padded to a power of
  two), so a channel is a column index: no integer division. The window sum is n shifted masked
  loads of x (cache hits, the same additions in the same order as "elementwise"); the backward
  computes d once per element and gets Bᵀ(g·x·s/d) from the tile in registers, by tl.dot with the
  band matrix in plain float32 ("rows-dot") or by n shifted tl.gather's along the channels
  ("rows-gather"), instead of recomputing d at the neighbours.
CHANNELS_LAST_KERNEL picks the design for channels_last input; NCHW always runs "elementwise".
The default stays "elementwise" because the rows kernels have only been run in Triton's
interpreter (tests/test_lrn_triton.py), never compiled for or timed on a GPU:
`experiments/bench_lrn.py`'s `compare_kernels` is the measurement that decides.
Imported lazily, only when a CUDA tensor reaches the fast path. With TRITON_INTERPRET=1 set before
triton is first imported, the kernels run on CPU tensors in Triton's interpreter instead
(tests/test_lrn_triton.py, docs/lrn.md).
"""
import contextlib

import torch
import triton
import triton.language as tl

BLOCK = 1024                     # elements per program, "elementwise"
KERNELS = ("elementwise", "rows-dot", "rows-gather")
CHANNELS_LAST_KERNEL = "elementwise"
# Widest C each rows kernel takes (wider input runs "elementwise"): rows-dot holds the CP×CP band
# matrix in registers (128 per thread at CP=128, num_warps=4); rows-gather only the BLOCK_P×CP tile.
ROWS_MAX_CHANNELS = {"rows-dot": 128, "rows-gather": 256}
ROWS_TILE = 2048                 # BLOCK_P × CP elements per program; BLOCK_P ≥ 16 (tl.dot)


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


@triton.jit
def _rows_window_sq(x_ptr, offs, cols, ok, C, BEFORE: tl.constexpr, AFTER: tl.constexpr):
    # Σ x_j² over j ∈ [c−BEFORE, c+AFTER] ∩ [0, C−1]: the order of _window_sq's additions
    acc = tl.zeros(offs.shape, tl.float32)
    for o in tl.static_range(-BEFORE, AFTER + 1):
        v = tl.load(x_ptr + offs + o, mask=ok & (cols + o >= 0) & (cols + o < C), other=0.0)
        v = v.to(tl.float32)
        acc += v * v
    return acc


@triton.jit
def _rows_fwd(x_ptr, y_ptr, R, C, coefficient, k, BETA: tl.constexpr, BEFORE: tl.constexpr,
              AFTER: tl.constexpr, BLOCK_P: tl.constexpr, CP: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)[:, None]
    cols = tl.arange(0, CP)[None, :]                 # the channel: no division
    offs = rows * C + cols
    ok = (rows < R) & (cols < C)
    x = tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    s = _power(k + coefficient * _rows_window_sq(x_ptr, offs, cols, ok, C, BEFORE, AFTER), BETA)
    tl.store(y_ptr + offs, (x * s).to(y_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _rows_bwd(x_ptr, g_ptr, gx_ptr, R, C, coefficient, k, BETA: tl.constexpr, BEFORE: tl.constexpr,
              AFTER: tl.constexpr, BLOCK_P: tl.constexpr, CP: tl.constexpr, USE_DOT: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)[:, None]
    cols = tl.arange(0, CP)[None, :]
    offs = rows * C + cols
    ok = (rows < R) & (cols < C)
    x = tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    d = k + coefficient * _rows_window_sq(x_ptr, offs, cols, ok, C, BEFORE, AFTER)
    s = _power(d, BETA)
    t = g * x * s / d                                # 0 outside the tile's rows and channels
    # u_j = Σ_i t_i over the outputs i whose window holds j: i ∈ [j−AFTER, j+BEFORE] (u = t·B)
    if USE_DOT:
        i = tl.arange(0, CP)[:, None]
        band = ((cols - i >= -BEFORE) & (cols - i <= AFTER)).to(tl.float32)     # B[i, j]
        u = tl.dot(t, band, input_precision="ieee")  # plain float32 products, no tf32 rounding
    else:
        u = tl.zeros(offs.shape, tl.float32)
        for o in tl.static_range(-AFTER, BEFORE + 1):   # _lrn_bwd's order
            i = cols + o
            t_i = tl.gather(t, tl.broadcast_to(tl.minimum(tl.maximum(i, 0), CP - 1), offs.shape), 1)
            u += tl.where((i >= 0) & (i < C), t_i, 0.0)
    gx = g * s - (2.0 * BETA) * coefficient * x * u
    tl.store(gx_ptr + offs, gx.to(gx_ptr.dtype.element_ty), mask=ok)


def supports(x: torch.Tensor) -> bool:
    """Dense contiguous or channels_last CUDA tensor of a float type."""
    return (x.is_cuda and x.dtype in (torch.float32, torch.bfloat16, torch.float16) and x.numel() > 0
            and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)))


def kernel_for(x: torch.Tensor, kernel: str | None = None) -> str:
    """The design that runs for x: `kernel` (default CHANNELS_LAST_KERNEL) for channels_last input
    up to ROWS_MAX_CHANNELS channels, "elementwise" otherwise."""
    kernel = CHANNELS_LAST_KERNEL if kernel is None else kernel
    if kernel not in KERNELS:
        raise ValueError(f"paper_alexnet/lrn_triton.py: unknown kernel {kernel!r}; "
                         f"choose one of {KERNELS}")
    if (kernel == "elementwise" or not x.is_contiguous(memory_format=torch.channels_last)
            or x.shape[1] > ROWS_MAX_CHANNELS[kernel]):
        return "elementwise"
    return kernel


def _on_device(x):
    # Triton launches on the current device; the towers may be on two. A CPU tensor gets here only
    # from the tests, with the kernels running in Triton's interpreter.
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _launch(kernel, tensors, x, size, coefficient, beta, k):
    # In memory order, channel c of element idx is (idx // stride(1)) % C in both formats.
    stride_c = x.stride(1) if x.shape[1] > 1 else 1
    grid = (triton.cdiv(x.numel(), BLOCK),)
    with _on_device(x):
        kernel[grid](*tensors, x.numel(), x.shape[1], stride_c, coefficient, k,
                     BETA=beta, BEFORE=size // 2, AFTER=(size - 1) // 2, BLOCK=BLOCK, num_warps=8)


def _launch_rows(kernel, tensors, x, size, coefficient, beta, k, **constants):
    channels = x.shape[1]
    rows = x.numel() // channels                     # N·H·W pixels, C contiguous channels each
    cp = max(16, triton.next_power_of_2(channels))
    block_p = max(16, ROWS_TILE // cp)               # 128, 64, 32, 16, 16 rows for CP 16 ... 256
    with _on_device(x):
        kernel[(triton.cdiv(rows, block_p),)](
            *tensors, rows, channels, coefficient, k, BETA=beta, BEFORE=size // 2,
            AFTER=(size - 1) // 2, BLOCK_P=block_p, CP=cp, num_warps=4, **constants)


def forward(x, size, coefficient, beta, k, kernel=None):
    y = torch.empty_like(x)                     # same strides as x (dense input)
    if kernel_for(x, kernel) == "elementwise":
        _launch(_lrn_fwd, (x, y), x, size, coefficient, beta, k)
    else:                                       # rows-dot and rows-gather share the forward
        _launch_rows(_rows_fwd, (x, y), x, size, coefficient, beta, k)
    return y


def backward(x, g, size, coefficient, beta, k, kernel=None):
    fmt = torch.contiguous_format if x.is_contiguous() else torch.channels_last
    g = g.contiguous(memory_format=fmt)          # the kernel walks x, g and ∂L/∂x in x's order
    gx = torch.empty_like(x)
    chosen = kernel_for(x, kernel)
    if chosen == "elementwise":
        _launch(_lrn_bwd, (x, g, gx), x, size, coefficient, beta, k)
    else:
        _launch_rows(_rows_bwd, (x, g, gx), x, size, coefficient, beta, k,
                     USE_DOT=chosen == "rows-dot")
    return gx
