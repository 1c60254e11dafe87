"""§3.3 LRN, the CUDA Triton kernels of lrn_triton.py run on CPU in Triton's interpreter.

Triton interprets kernels on CPU tensors when TRITON_INTERPRET=1 is set before triton itself is
imported (its library functions, tl.zeros and the like, are decorated at import). So the kernels run
in a child process: this file, run as a script with that variable set, routes lrn's "fast" path to
lrn_triton as on a GPU (the same autograd.Function, forward and backward kernels) and saves the
outputs; nothing of the interpreter reaches the pytest process. The tests check them against torch's
reference in float64 and against the torch-ops path: the three conventions (they differ only in
the kernels' runtime scalars k and coefficient), float32 and bfloat16, NCHW and channels_last,
1, 7 and 13 channels (windows clipped at one or both sides), two program blocks with a masked tail,
an upstream gradient in any layout, and bit-identical reruns.
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
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _inputs(shape, dtype, fmt, seed):
    gen = torch.Generator().manual_seed(seed)
    # Signed activations at conv1's scale (tens), so that the normalising term is far from k.
    x = (torch.randn(shape, generator=gen) * 40).to(dtype).contiguous(memory_format=fmt)
    g = torch.randn(shape, generator=gen).to(dtype).contiguous(memory_format=fmt)
    return x, g


def _cases():
    """name -> (convention, x, upstream gradient or None for .sum()'s); seeded, so the child process
    builds the same tensors."""
    runs = [(cv, SHAPE) for cv in sorted(CONVENTIONS)] + [("paper", shape) for shape in EDGE_SHAPES]
    cases = {}
    for convention, shape in runs:
        for dname, dtype in DTYPES.items():
            for fname, fmt in FORMATS.items():
                x, g = _inputs(shape, dtype, fmt, seed=shape[1])
                name = f"{convention}-{dname}-{fname}-{'x'.join(map(str, shape))}"
                cases[name] = (convention, x, g)
    for fname, fmt in FORMATS.items():
        x, g = _inputs(SHAPE, torch.float32, fmt, seed=8)
        other = torch.channels_last if fmt == torch.contiguous_format else torch.contiguous_format
        cases[f"grad-other-layout-{fname}"] = ("paper", x, g.contiguous(memory_format=other))
    cases["grad-of-sum-channels_last"] = ("paper", x, None)    # a stride-0 upstream gradient
    return cases


CASES = _cases()
TWICE = [name for name in CASES if name.endswith("3x13x6x5")]
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


def _run_interpreted(out_path):
    """In the child (TRITON_INTERPRET=1): every case through lrn's fast path on the kernels; the
    two-block cases twice, for the determinism check."""
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError as error:
        sys.exit(f"{NO_TRITON}: {error}")

    from paper_alexnet import lrn, lrn_triton
    x = torch.rand(2, 7, 5, 3)
    out = {"interpreted": isinstance(lrn_triton._lrn_fwd, InterpretedFunction)
           and isinstance(lrn_triton._lrn_bwd, InterpretedFunction),
           "gated": not lrn_triton.supports(x) and lrn._triton_kernels(x) is None}
    sent = []
    lrn._triton_kernels = lambda t: sent.append(t) or lrn_triton   # as lrn does for a CUDA tensor
    lrn._TRITON["cuda"] = lrn_triton                                # what the backward calls
    for name, (convention, x, g) in CASES.items():
        sent.clear()
        runs = [_fwd_bwd(x, g, convention, "fast") for _ in range(2 if name in TWICE else 1)]
        out[name] = {"runs": runs, "dispatched": len(sent)}
        if x.dtype == torch.bfloat16:   # the same values in float32: the result before its rounding
            out[name]["float32"] = _fwd_bwd(x.float(), g.float(), convention, "fast")
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


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith("grad-")])
def test_kernels_match_reference(interpreted, name):
    convention, x, g = CASES[name]
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
    convention, x, g = CASES[name]
    assert interpreted[name]["dispatched"] == 1
    _, gx = interpreted[name]["runs"][0]
    _, gx_ops = _fwd_bwd(x, g, convention, "fast-ops")
    torch.testing.assert_close(gx, gx_ops, rtol=1e-5, atol=1e-6)


def test_kernels_are_deterministic(interpreted):
    # No atomics: the two-block cases (both dtypes and layouts) gave bit-identical outputs and
    # gradients on their second run.
    assert len(TWICE) == 4
    for name in TWICE:
        (y1, gx1), (y2, gx2) = interpreted[name]["runs"]
        assert torch.equal(y1, y2) and torch.equal(gx1, gx2), name


if __name__ == "__main__":   # the child process
    _run_interpreted(sys.argv[1])
