"""ops.gate and ops.l0_probability: every backend against the reference, gradcheck, the sample
distribution against the closed forms, and clear errors."""

import math

import pytest
import torch
from conftest import DEVICE

from fastgcn_denoise import ops
from fastgcn_denoise.modes import GATE_KINDS
from fastgcn_denoise.ops import BackendUnavailable, availability

# The gate has reference, cpu and triton kernels; on GPUs the triton one runs (no CUDA C++).
_AVAIL = availability(DEVICE)
BACKEND = [
    pytest.param(
        name, marks=pytest.mark.skipif(_AVAIL[name] is not None, reason=f"{name}: {_AVAIL[name]}")
    )
    for name in ("reference", "cpu", "triton")
]
SEED = 0x1234_5678_9ABC  # > 2^32: both Philox key words matter
OFFSET = (1 << 33) + 5  # > 2^32: both counter words matter
CONTINUOUS = ("concrete", "hard_concrete", "hard_concrete_mean")


def logits_of(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(DEVICE, dtype)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("kind", GATE_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (37,), (3, 45)])
def test_matches_reference(backend, kind, dtype, shape):
    phi = logits_of(shape, dtype, seed=len(shape))
    z = ops.gate(phi, kind, SEED, OFFSET, backend=backend)
    truth = ops.gate(phi.double(), kind, SEED, OFFSET, backend="reference")
    assert z.shape == phi.shape and z.dtype == dtype
    if kind == "concrete_st":
        # A binary decision: equal except where u sits within rounding of sigmoid(-phi).
        assert torch.equal(z.double(), truth) or (z.double() != truth).sum() <= 1
        assert set(z.unique().tolist()) <= {0.0, 1.0}
    else:
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(z.double(), truth, **tol)
    assert (z >= 0).all() and (z <= 1).all()


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("kind", GATE_KINDS)
def test_gradient_matches_reference(backend, kind):
    phi = logits_of((2, 29), torch.float64, seed=3).requires_grad_()
    weights = torch.linspace(-1, 2, phi.numel(), dtype=torch.float64, device=DEVICE).reshape(
        phi.shape
    )
    (g,) = torch.autograd.grad((ops.gate(phi, kind, SEED, 7, backend=backend) * weights).sum(), phi)
    (t,) = torch.autograd.grad(
        (ops.gate(phi, kind, SEED, 7, backend="reference") * weights).sum(), phi
    )
    # triton takes tau/gamma/zeta as float32 scalars: a relative error of ~1e-8 in float64.
    torch.testing.assert_close(g, t, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("kind", CONTINUOUS)
def test_gradcheck(backend, kind):
    # Logits well inside the unclamped range for most draws; gradcheck's finite differences see
    # the same regenerated uniforms at every evaluation.
    phi = (0.3 * logits_of((11,), torch.float64, seed=5)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda p: ops.gate(p, kind, SEED, 11, temperature=0.9, backend=backend),
        (phi,),
        eps=1e-6,
        atol=1e-5,
        rtol=1e-4,
    )


def test_straight_through_gradient_is_the_relaxed_one():
    phi = logits_of((50,), torch.float64, seed=6).requires_grad_()
    (g_st,) = torch.autograd.grad(ops.gate(phi, "concrete_st", SEED, 0, temperature=0.5).sum(), phi)
    (g_soft,) = torch.autograd.grad(ops.gate(phi, "concrete", SEED, 0, temperature=0.5).sum(), phi)
    torch.testing.assert_close(g_st, g_soft)


def test_straight_through_sample_is_the_arm_pos_mask():
    from fastgcn_denoise import BipartiteGraph

    g = BipartiteGraph([0, 0, 1, 2, 2, 2], [0, 1, 1, 0, 1, 2]).to(DEVICE)
    phi = logits_of((g.num_edges,), torch.float32, seed=7)
    z = ops.gate(phi, "concrete_st", SEED, OFFSET, backend="reference")
    assert torch.equal(z, ops.sample_mask(g, phi, "arm_pos", SEED, OFFSET, backend="reference"))


@pytest.mark.parametrize("kind", ["concrete_st", "hard_concrete"])
def test_distribution_matches_closed_forms(kind):
    # 40,000 draws for each of 5 logits: P(z != 0) against l0_probability, and for the
    # straight-through gate the mean against sigmoid(phi) (a Bernoulli sample).
    phi = torch.tensor([-3.0, -1.0, 0.0, 0.7, 2.5], dtype=torch.float64, device=DEVICE)
    draws = 40_000
    z = ops.gate(phi.repeat(draws), kind, SEED, 0).reshape(draws, -1)
    nonzero = (z > 0).double().mean(0)
    p = ops.l0_probability(phi, kind)
    se = (p * (1 - p) / draws).sqrt()
    assert ((nonzero - p).abs() < 5 * se + 1e-4).all(), (nonzero, p)
    if kind == "hard_concrete":
        # P(z = 1) = P(s > (1 - gamma) / (zeta - gamma)) = sigmoid(phi - tau log((1 - gamma) / (zeta - 1)))
        tau, gamma, zeta = 2 / 3, -0.1, 1.1
        p_one = torch.sigmoid(phi - tau * math.log((1 - gamma) / (zeta - 1)))
        ones = (z == 1).double().mean(0)
        assert ((ones - p_one).abs() < 5 * (p_one * (1 - p_one) / draws).sqrt() + 1e-4).all()
        # Inference value: the clamped stretched sigmoid.
        mean = ops.gate(phi, "hard_concrete_mean")
        torch.testing.assert_close(mean, (torch.sigmoid(phi) * 1.2 - 0.1).clamp(0, 1))


def test_empty_and_errors():
    assert ops.gate(torch.zeros(0, device=DEVICE), "concrete").shape == (0,)
    with pytest.raises(ValueError, match="unknown gate kind 'gumble'"):
        ops.gate(torch.zeros(3, device=DEVICE), "gumble")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        ops.gate(torch.zeros(3, device=DEVICE), "concrete", temperature=0.0)
    with pytest.raises(ValueError, match="gamma < 0 and zeta > 1"):
        ops.gate(torch.zeros(3, device=DEVICE), "hard_concrete", gamma=0.1)
    if DEVICE.type == "cpu":
        with pytest.raises(ValueError, match="non-finite values \\(first at flat index 1\\)"):
            ops.gate(torch.tensor([0.0, float("nan")]), "concrete")
    with pytest.raises(ValueError, match="float32 or float64"):
        ops.gate(torch.zeros(3, dtype=torch.int64, device=DEVICE), "concrete")
    if _AVAIL["cuda"] is None:
        with pytest.raises(BackendUnavailable, match="triton backend covers GPUs"):
            ops.gate(torch.zeros(3, device=DEVICE), "concrete", backend="cuda")
