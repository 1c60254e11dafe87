"""§3.3 LRN, the CUDA Triton kernels of lrn_triton.py run on CPU in Triton's interpreter.

Triton interprets kernels on CPU tensors when TRITON_INTERPRET=1 is set before triton itself is
imported (its library functions, tl.zeros and the like, are decorated at import). So the kernels run
in a child process: this file, run as a script with that variable set, routes lrn's "fast" path to
lrn_triton as on a GPU (the same autograd.Function, forward and backward kernels) and saves the
outputs; nothing of the interpreter reaches the pytest process. The tests check them against torch's
reference in float64 and against the torch-ops path: the three conventions (they differ only in
the kernels' runtime scalars k and coefficient), float32 and bfloat16, NCHW and channels_last,
1, 7 and 13 channels (windows clipped at one or both sides), two program blocks with a masked tail,
an upstream gradient in any layout, and bit-identical reruns. The same for the channels_last "rows"
kernels (lrn_triton.CHANNELS_LAST_KERNEL = "rows-dot" or "rows-gather"), with 1, 7, 48 (conv1's),
128 (conv2's) and 256 channels, and that they compute what "elementwise" does; that the default
switch still sends channels_last input to "elementwise".
Not checked here: real CUDA code generation and speed (docs/lrn.md).
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from paper_alexnet.lrn import CONVENTIONS, local_response_norm

SHAPE = (2, 7, 5, 3)                 # edges and interior; every convention
EDGE_SHAPES = [(2, 1, 4, 3),         # one channel: its window is itself
               (3, 13, 6, 5)]        # 1170 elements: two blocks of BLOCK=1024, the second masked
ROWS_SHAPES = [(1, 7, 3, 5),     # 15 rows, one block of 128 (CP=16): every convention
               (1, 1, 3, 5),     # one channel
               (1, 48, 5, 7),    # conv1's channels: 35 rows, two blocks of 32 (CP=64), masked tail
               (1, 128, 3, 7)]   # conv2's: 21 rows, two blocks of 16 (CP=128)
ROWS_WIDE = (1, 256, 1, 17)      # one_tower's conv2 (CP=256): rows-gather only
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _inputs(shape, dtype, fmt, seed):
    gen = torch.Generator().manual_seed(seed)
    # Signed activations at conv1's scale (tens), so that the normalising term is far from k.
    x = (torch.randn(shape, generator=gen) * 40).to(dtype).contiguous(memory_format=fmt)
    g = torch.randn(shape, generator=gen).to(dtype).contiguous(memory_format=fmt)
    return x, g


def _cases():
    """name -> (convention, x, upstream gradient or None for .sum()'s, CHANNELS_LAST_KERNEL or None
    for the default); seeded, so the child process builds the same tensors."""
    runs = [(cv, SHAPE) for cv in sorted(CONVENTIONS)] + [("cuda-convnet", shape) for shape in EDGE_SHAPES]
    cases = {}
    for convention, shape in runs:
        for dname, dtype in DTYPES.items():
            for fname, fmt in FORMATS.items():
                x, g = _inputs(shape, dtype, fmt, seed=shape[1])
                name = f"{convention}-{dname}-{fname}-{'x'.join(map(str, shape))}"
                cases[name] = (convention, x, g, None)
    designs = ("rows-dot", "rows-gather")
    rows = [(kernel, cv, ROWS_SHAPES[0]) for kernel in designs for cv in sorted(CONVENTIONS)]
    rows += [(kernel, "cuda-convnet", shape) for kernel in designs for shape in ROWS_SHAPES[1:]]
    for kernel, convention, shape in rows + [("rows-gather", "cuda-convnet", ROWS_WIDE)]:
        for dname, dtype in DTYPES.items():
            x, g = _inputs(shape, dtype, torch.channels_last, seed=shape[1])
            cases[f"{kernel}-{convention}-{dname}-channels_last-{'x'.join(map(str, shape))}"] = (
                convention, x, g, kernel)
    for fname, fmt in FORMATS.items():
        x, g = _inputs(SHAPE, torch.float32, fmt, seed=8)
        other = torch.channels_last if fmt == torch.contiguous_format else torch.contiguous_format
        cases[f"grad-other-layout-{fname}"] = ("cuda-convnet", x, g.contiguous(memory_format=other), None)
    cases["grad-of-sum-channels_last"] = ("cuda-convnet", x, None, None)    # a stride-0 upstream gradient
    for kernel in ("rows-dot", "rows-gather"):
        cases[f"grad-other-layout-{kernel}"] = ("cuda-convnet", x, g.contiguous(), kernel)   # g NCHW
        cases[f"grad-of-sum-{kernel}"] = ("cuda-convnet", x, None, kernel)
    return cases


CASES = _cases()
TWICE = [name for name in CASES if name.endswith(("3x13x6x5", "1x48x5x7", "1x128x3x7"))]
ROWS = [name for name in CASES if name.startswith("rows-")]
LAUNCHES = {None: [("_lrn_fwd", None), ("_lrn_bwd", None)],
            "rows-dot": [("_rows_fwd", None), ("_rows_bwd", True)],
            "rows-gather": [("_rows_fwd", None), ("_rows_bwd", False)]}
NO_TRITON = "triton cannot be imported"


def _fwd_bwd(x, g, convention, impl):
    x = x.detach().requires_grad_()
    y = local_response_norm(x, convention, impl)
    if g is None:
        y.sum().backward()
        return y.detach(), x.grad
    (gx,) = torch.autograd.grad(y, x, g)
    return y.detach(), gx


def _toward_zero_bf16(t):
    """float32 -> bfloat16 by dropping the low 16 bits, as Triton's interpreter converts."""
    return (t.view(torch.int32) & -65536).view(torch.float32).bfloat16()


class _Spy:
    """Stands in for a jitted kernel and logs (name, USE_DOT) at each launch."""

    def __init__(self, name, kernel, log):
        self.name, self.kernel, self.log = name, kernel, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.log.append((self.name, kwargs.get("USE_DOT")))
            return self.kernel[grid](*args, **kwargs)
        return launch


def _run_interpreted(out_path):
    """In the child (TRITON_INTERPRET=1): every case through lrn's fast path on the kernels, with
    the kernels each launched; the two-block cases twice, for the determinism check; the rows
    cases also on "elementwise"."""
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError as error:
        sys.exit(f"{NO_TRITON}: {error}")

    from paper_alexnet import lrn, lrn_triton
    x = torch.rand(2, 7, 5, 3)
    names = ("_lrn_fwd", "_lrn_bwd", "_rows_fwd", "_rows_bwd")
    wide = torch.zeros(1, 257, 1, 1).contiguous(memory_format=torch.channels_last)
    out = {"interpreted": all(isinstance(getattr(lrn_triton, n), InterpretedFunction)
                              for n in names),
           "gated": not lrn_triton.supports(x) and lrn._triton_kernels(x) is None,
           "default": lrn_triton.CHANNELS_LAST_KERNEL,
           "routes": {kernel: [lrn_triton.kernel_for(t, kernel)
                               for t in (x, wide[:, :128], wide[:, :129], wide)]
                      for kernel in lrn_triton.KERNELS}}
    launched = []
    for n in names:
        setattr(lrn_triton, n, _Spy(n, getattr(lrn_triton, n), launched))
    sent = []
    lrn._triton_kernels = lambda t: sent.append(t) or lrn_triton   # as lrn does for a CUDA tensor
    lrn._TRITON["cuda"] = lrn_triton                                # what the backward calls
    for name, (convention, x, g, kernel) in CASES.items():
        sent.clear()
        lrn_triton.CHANNELS_LAST_KERNEL = kernel or out["default"]
        launched.clear()
        runs = [_fwd_bwd(x, g, convention, "fast") for _ in range(2 if name in TWICE else 1)]
        out[name] = {"runs": runs, "dispatched": len(sent), "launched": list(launched)}
        if x.dtype == torch.bfloat16:   # the same values in float32: the result before its rounding
            out[name]["float32"] = _fwd_bwd(x.float(), g.float(), convention, "fast")
        lrn_triton.CHANNELS_LAST_KERNEL = "elementwise"
        if kernel:
            out[name]["elementwise"] = _fwd_bwd(x, g, convention, "fast")
    torch.save(out, out_path)


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    """The child's outputs for CASES."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed")
    out_path = tmp_path_factory.mktemp("lrn_triton") / "out.pt"
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, __file__, str(out_path)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
    if NO_TRITON in done.stderr:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr[-4000:]
    return torch.load(out_path)


def test_kernels_ran_interpreted_and_stay_gated_to_cuda(interpreted):
    assert interpreted["interpreted"]
    assert interpreted["gated"]     # production: a CPU tensor never reaches the kernels


def test_default_switch_and_routing(interpreted):
    # The default is the design measured on a GPU. A rows kernel takes channels_last input only,
    # up to its widest C (1×128 and 1×256 channels here; the first tensor is NCHW).
    assert interpreted["default"] == "elementwise"
    assert interpreted["routes"] == {
        "elementwise": ["elementwise"] * 4,
        "rows-dot": ["elementwise", "rows-dot", "elementwise", "elementwise"],
        "rows-gather": ["elementwise", "rows-gather", "rows-gather", "elementwise"]}


@pytest.mark.parametrize("name", list(CASES))
def test_switch_launches_its_kernels(interpreted, name):
    # The default switch sends channels_last (and NCHW) to "elementwise"; "rows-dot" and
    # "rows-gather" launch _rows_fwd and _rows_bwd, the latter with or without the dot.
    kernel = CASES[name][3]
    result = interpreted[name]
    assert result["launched"] == LAUNCHES[kernel] * len(result["runs"])


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith("grad-")])
def test_kernels_match_reference(interpreted, name):
    convention, x, g, _ = CASES[name]
    result = interpreted[name]
    assert result["dispatched"] == len(result["runs"]), "the fast path did not reach the kernels"
    y, gx = result["runs"][0]
    fmt = torch.channels_last if "channels_last" in name else torch.contiguous_format
    assert y.dtype == gx.dtype == x.dtype
    assert y.is_contiguous(memory_format=fmt) and gx.is_contiguous(memory_format=fmt)
    # The reference in float64 on the same values: the kernels compute in float32 (also for bfloat16
    # input), so only float32 rounding remains.
    y64, gx64 = _fwd_bwd(x.double(), g.double(), convention, "reference")
    y32, gx32 = (y, gx) if x.dtype == torch.float32 else result["float32"]
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx32.double(), gx64, rtol=1e-5, atol=1e-6)
    if x.dtype == torch.bfloat16:
        # The bfloat16 kernels are the float32 ones plus the final store's rounding, bit for bit.
        # The interpreter rounds float32 -> bfloat16 toward zero (no rounding mode in its cast),
        # CUDA to nearest: here the error is under one bfloat16 ulp (2^-7 relative), not half.
        assert torch.equal(y, _toward_zero_bf16(y32)) and torch.equal(gx, _toward_zero_bf16(gx32))
    # The torch-ops Function (what "fast" is on CPU): the same formula, rounded in other places.
    y_ops, gx_ops = _fwd_bwd(x, g, convention, "fast-ops")
    tol = dict(rtol=1e-5, atol=1e-6) if x.dtype == torch.float32 else dict(rtol=0.008, atol=1e-6)
    torch.testing.assert_close(y, y_ops, **tol)
    torch.testing.assert_close(gx, gx_ops, **tol)


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("grad-")])
def test_backward_takes_any_gradient_layout(interpreted, name):
    # The backward kernel walks g in x's memory order: an upstream gradient in the other format,
    # or the stride-0 one of .sum(), is made dense first.
    convention, x, g, _ = CASES[name]
    assert interpreted[name]["dispatched"] == 1
    _, gx = interpreted[name]["runs"][0]
    _, gx_ops = _fwd_bwd(x, g, convention, "fast-ops")
    torch.testing.assert_close(gx, gx_ops, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ROWS)
def test_rows_kernels_compute_what_elementwise_does(interpreted, name):
    # The same float32 operations: the window sums add the same squares in the same order, and
    # rows-gather sums Bᵀ's terms in _lrn_bwd's order, so output and gradient are bit-identical.
    # rows-dot's sum is tl.dot's (numpy's matmul here), so its gradient is equal up to rounding.
    (y, gx), (y_e, gx_e) = interpreted[name]["runs"][0], interpreted[name]["elementwise"]
    assert torch.equal(y, y_e)
    if name.startswith("rows-gather"):
        assert torch.equal(gx, gx_e)
    tol = dict(rtol=1e-6, atol=1e-7) if y.dtype == torch.float32 else dict(rtol=0.008, atol=1e-7)
    torch.testing.assert_close(gx, gx_e, **tol)


def test_kernels_are_deterministic(interpreted):
    # No atomics: the two-block cases (both dtypes and layouts; the rows kernels at 48 and 128
    # channels) gave bit-identical outputs and gradients on their second run.
    assert len(TWICE) == 12
    for name in TWICE:
        (y1, gx1), (y2, gx2) = interpreted[name]["runs"]
        assert torch.equal(y1, y2) and torch.equal(gx1, gx2), name


if __name__ == "__main__":   # the child process
    _run_interpreted(sys.argv[1])
