"""§3.3 LRN: test vectors of docs/paper.md §3, the formula written out by hand, fast == reference
(forward and backward, fp32/bf16, contiguous/channels_last), gradcheck in float64."""

import pytest
import torch

from paper_alexnet.lrn import CONVENTIONS, LocalResponseNorm, local_response_norm, lrn_reference

IMPLS = ("fast", "fast-ops", "reference")

# docs/paper.md §3: 96 channels, every activation = 10 → (interior channel, channel 0).
CONSTANT_VECTORS = {"as-printed": (5.836932, 5.880009), "cuda-convnet": (5.923835, 5.932692),
                    "caffe": (9.925650, 9.955235)}
# docs/paper.md §3: ramp a_c = c, outputs at channels 0, 1, 47, 95.
RAMP_CHANNELS = (0, 1, 47, 95)
RAMP_VECTORS = {"as-printed": (0.0, 0.594292, 20.090891, 29.996035),
                "cuda-convnet": (0.0, 0.594541, 25.832817, 47.354087)}


def by_hand(a, coefficient, k, beta=0.75, n=5):
    """b_i = a_i / (k + coefficient · Σ_{j=max(0,i−n/2)}^{min(C−1,i+n/2)} a_j²)^β, a list of floats."""
    c = len(a)
    out = []
    for i in range(c):
        window = range(max(0, i - n // 2), min(c - 1, i + n // 2) + 1)
        out.append(a[i] / (k + coefficient * sum(a[j] ** 2 for j in window)) ** beta)
    return out


def test_conventions_table():
    # docs/paper.md §3 table: coefficient on Σa² and k.
    assert CONVENTIONS["as-printed"].coefficient == pytest.approx(1e-4, rel=1e-12)
    assert CONVENTIONS["as-printed"].k == 2
    assert CONVENTIONS["cuda-convnet"].coefficient == pytest.approx(1e-4 / 5, rel=1e-12)
    assert CONVENTIONS["cuda-convnet"].k == 2
    assert CONVENTIONS["caffe"].coefficient == pytest.approx(1e-4 / 5, rel=1e-12)
    assert CONVENTIONS["caffe"].k == 1
    for cv in CONVENTIONS.values():
        assert (cv.size, cv.beta) == (5, 0.75)
    assert LocalResponseNorm().convention.name == "cuda-convnet"


def test_default_is_the_authors_code():
    # cuda-convnet(2) layer.py divides the configured scale (the paper's alpha = 1e-4) by the
    # window size n = 5 before it multiplies the sum of squares; minDiv (k) = 2. The formula as
    # printed (alpha on the sum) would give 1e-4 here.
    from paper_alexnet.config import ModelConfig
    from paper_alexnet.model import AlexNet
    cv = CONVENTIONS[ModelConfig().lrn]
    assert cv.coefficient == pytest.approx(2e-5, rel=1e-12) and cv.k == 2
    norms = [m for m in AlexNet().modules() if isinstance(m, LocalResponseNorm)]
    assert len(norms) == 4                       # conv1 and conv2, in each tower
    assert all(m.convention.coefficient == pytest.approx(2e-5, rel=1e-12) for m in norms)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_constant_vector(convention, impl):
    x = torch.full((2, 96, 3, 3), 10.0)
    y = local_response_norm(x, convention, impl)
    interior, edge = CONSTANT_VECTORS[convention]
    assert y[:, 2:94].sub(interior).abs().max() < 2e-6 * interior
    assert y[:, 0].sub(edge).abs().max() < 2e-6 * edge
    assert y[:, 95].sub(edge).abs().max() < 2e-6 * edge      # clipped at C−1 like at 0
    assert y[:, 1].sub(y[:, 94]).abs().max() < 1e-6         # one missing neighbour either side


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_ramp_vector(convention, impl):
    ramp = torch.arange(96, dtype=torch.float32).view(1, 96, 1, 1)
    for fmt in (torch.contiguous_format, torch.channels_last):
        y = local_response_norm(ramp.expand(2, 96, 4, 5).contiguous(memory_format=fmt), convention, impl)
        got = [y[1, c, 3, 4].item() for c in RAMP_CHANNELS]
        cv = CONVENTIONS[convention]
        hand = by_hand([float(c) for c in range(96)], cv.coefficient, cv.k)
        assert got == pytest.approx([hand[c] for c in RAMP_CHANNELS], rel=1e-6, abs=1e-6)
        if convention in RAMP_VECTORS:
            assert got == pytest.approx(RAMP_VECTORS[convention], rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 6, 48])
def test_formula_by_hand_edges(channels):
    # Random positive/negative activations; every channel count around the window size, so the
    # window is clipped at 0 and C−1 on one or both sides.
    gen = torch.Generator().manual_seed(channels)
    x = torch.randn(1, channels, 1, 1, generator=gen, dtype=torch.float64) * 60
    for name, cv in CONVENTIONS.items():
        hand = by_hand(x.flatten().tolist(), cv.coefficient, cv.k)
        for impl in IMPLS:
            got = local_response_norm(x, name, impl).flatten().tolist()
            assert got == pytest.approx(hand, rel=1e-12, abs=1e-12), (name, impl)


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_gradcheck_fast_float64(convention):
    gen = torch.Generator().manual_seed(1)
    # Large activations so that the normalising term is far from k (the derivative is not ~identity).
    x = (torch.randn(2, 7, 3, 2, generator=gen, dtype=torch.float64) * 80).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: local_response_norm(t, convention, "fast"), (x,))
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: local_response_norm(t, convention, "fast"), (xc,))


def _fwd_bwd(x, g, convention, impl):
    x = x.detach().requires_grad_()
    y = local_response_norm(x, convention, impl)
    (gx,) = torch.autograd.grad(y, x, g)
    return y, gx


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_fast_matches_reference_fp32(convention, fmt):
    gen = torch.Generator().manual_seed(2)
    # Post-ReLU-like activations at the scale of conv1 (tens), 13 channels: edges and interior.
    x = (torch.randn(3, 13, 6, 5, generator=gen) * 40).relu().contiguous(memory_format=fmt)
    g = torch.randn(3, 13, 6, 5, generator=gen).contiguous(memory_format=fmt)
    y, gx = _fwd_bwd(x, g, convention, "fast")
    y_ref, gx_ref = _fwd_bwd(x, g, convention, "reference")
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(y, y_ref, rtol=2e-6, atol=1e-5)
    torch.testing.assert_close(gx, gx_ref, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_fast_matches_reference_bf16(convention, fmt):
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(2, 48, 5, 4, generator=gen) * 40).relu().bfloat16().contiguous(memory_format=fmt)
    g = torch.randn(2, 48, 5, 4, generator=gen).bfloat16().contiguous(memory_format=fmt)
    y, gx = _fwd_bwd(x, g, convention, "fast")
    assert y.dtype == gx.dtype == torch.bfloat16
    # Against the reference run in float64 on the same bf16 values: only the final rounding to
    # bfloat16 (relative 2^-8) remains, since the fast path computes in float32.
    y64, gx64 = _fwd_bwd(x.double(), g.double(), convention, "reference")
    torch.testing.assert_close(y.double(), y64, rtol=2 ** -8, atol=1e-6)
    torch.testing.assert_close(gx.double(), gx64, rtol=2 ** -7, atol=1e-4)
    # The reference in bf16 (on CPU torch computes it in float32, see lrn_reference).
    y_ref, gx_ref = _fwd_bwd(x, g, convention, "reference")
    torch.testing.assert_close(y, y_ref, rtol=3e-2, atol=1e-2)
    torch.testing.assert_close(gx, gx_ref, rtol=3e-2, atol=3e-2)


def test_autocast_bf16_returns_input_dtype():
    gen = torch.Generator().manual_seed(4)
    x = (torch.randn(2, 8, 3, 3, generator=gen) * 30).relu().bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = LocalResponseNorm("cuda-convnet")(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(y.double(), lrn_reference(x.detach().double(), "cuda-convnet"), rtol=2 ** -8, atol=1e-6)


def test_module_and_errors():
    x = torch.rand(2, 6, 3, 3) * 50
    for impl in IMPLS:
        m = LocalResponseNorm("caffe", impl=impl)
        assert "caffe" in repr(m)
        torch.testing.assert_close(m(x), lrn_reference(x, "caffe"))
    with pytest.raises(ValueError, match="unknown LRN convention 'alex'"):
        LocalResponseNorm("alex")
    with pytest.raises(ValueError, match="unknown LRN impl 'cudnn'"):
        LocalResponseNorm(impl="cudnn")
    with pytest.raises(ValueError, match=r"expects \(N, C, H, W\)"):
        local_response_norm(torch.rand(6, 3, 3))


def test_deterministic():
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(2, 16, 7, 7, generator=gen) * 30).relu()
    g = torch.randn(2, 16, 7, 7, generator=gen)
    a, b = _fwd_bwd(x, g, "cuda-convnet", "fast"), _fwd_bwd(x, g, "cuda-convnet", "fast")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_benchmark_reports_both_paths():
    from experiments.bench_lrn import benchmark
    r = benchmark((2, 8, 5, 5), iters=2, warmup=1)
    assert set(r["times_s"]) == {"fast", "reference"} and min(r["times_s"].values()) > 0
    assert r["speedup"] == pytest.approx(r["times_s"]["reference"] / r["times_s"]["fast"])
    assert r["shape"] == (2, 8, 5, 5) and r["dtype"] == "float32"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_fast_matches_reference_cuda(dtype, fmt):
    gen = torch.Generator().manual_seed(6)
    x = (torch.randn(4, 48, 11, 9, generator=gen) * 40).relu()
    g = torch.randn(4, 48, 11, 9, generator=gen)
    xd = x.to("cuda", dtype).contiguous(memory_format=fmt)
    gd = g.to("cuda", dtype).contiguous(memory_format=fmt)
    for convention, impl in [(c, i) for c in CONVENTIONS for i in ("fast", "fast-ops")]:
        y, gx = _fwd_bwd(xd, gd, convention, impl)
        assert y.dtype == dtype and y.is_contiguous(memory_format=fmt)
        y64, gx64 = _fwd_bwd(xd.double().cpu(), gd.double().cpu(), convention, "reference")
        tol = dict(rtol=2 ** -8, atol=1e-5) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(y.double().cpu(), y64, **tol)
        tol = dict(rtol=2 ** -7, atol=1e-4) if dtype == torch.bfloat16 else dict(rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(gx.double().cpu(), gx64, **tol)


def test_compiles_without_graph_break():
    # fullgraph=True raises on any graph break; aot_eager traces forward and backward through the
    # autograd.Function without needing a C++ compiler.
    torch._dynamo.reset()
    f = torch.compile(lambda t: local_response_norm(t, "cuda-convnet", "fast") * 2, backend="aot_eager",
                      fullgraph=True)
    x = (torch.rand(2, 6, 4, 4) * 50).requires_grad_()
    y = f(x)
    y.sum().backward()
    x_ref = x.detach().requires_grad_()
    (lrn_reference(x_ref) * 2).sum().backward()
    torch.testing.assert_close(y, lrn_reference(x.detach()) * 2)
    torch.testing.assert_close(x.grad, x_ref.grad)


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", ["elementwise", "rows-dot", "rows-gather"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_triton_kernel_matches_reference_cuda(kernel, dtype):
    """Each channels_last kernel design of lrn_triton, compiled for the GPU (the interpreter tests
    in test_lrn_triton.py cannot show that it compiles), against the float64 reference."""
    from paper_alexnet import lrn_triton
    gen = torch.Generator().manual_seed(7)
    for channels in (7, 48, 128):
        x = (torch.randn(3, channels, 13, 11, generator=gen) * 40).relu()
        g = torch.randn(3, channels, 13, 11, generator=gen)
        xd = x.to("cuda", dtype).contiguous(memory_format=torch.channels_last)
        gd = g.to("cuda", dtype).contiguous(memory_format=torch.channels_last)
        cv = CONVENTIONS["cuda-convnet"]
        params = (cv.size, cv.coefficient, cv.beta, cv.k)
        y = lrn_triton.forward(xd, *params, kernel=kernel)
        gx = lrn_triton.backward(xd, gd, *params, kernel=kernel)
        y64, gx64 = _fwd_bwd(xd.double().cpu(), gd.double().cpu(), "cuda-convnet", "reference")
        bf16 = dtype == torch.bfloat16
        torch.testing.assert_close(y.double().cpu(), y64, rtol=2 ** -8 if bf16 else 1e-5, atol=1e-5)
        torch.testing.assert_close(gx.double().cpu(), gx64, rtol=2 ** -7 if bf16 else 1e-4,
                                   atol=1e-4 if bf16 else 1e-5)
