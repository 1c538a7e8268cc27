"""ops.arm_grad: unbiased against exact enumeration, DisARM's lower variance, identical backends."""

import itertools
import math

import pytest
import torch
from conftest import DEVICE, backend_params, check_refused, random_graph

from fastgcn_denoise import ops
from fastgcn_denoise.modes import MODE_ID
from fastgcn_denoise.ops import reference
from fastgcn_denoise.ops.arm_grad import arm_grad

# No CUDA C++ kernel for this op: on GPUs the triton backend runs it.
BACKEND = backend_params(("reference", "cpu", "triton"))
SEED = 0x1234_5678_9ABC  # > 2^32: both Philox key words matter
OFFSET = (1 << 33) + 5  # > 2^32: both counter words matter


def loss(z):
    """An arbitrary, non-linear function of the binary vector z [..., 4]."""
    a = torch.tensor([0.7, -1.3, 2.1, 0.4], dtype=z.dtype, device=z.device)
    return torch.sin(z @ a) + 3 * z[..., 0] * z[..., 2] - 2 * z[..., 1] * z[..., 3] + z[..., 3]


def exact_gradient(phi):
    """d/dphi E_{z ~ Bern(sigmoid(phi))}[loss(z)], by enumerating the 2^N binary vectors."""
    phi = phi.detach().double().requires_grad_()
    p = torch.sigmoid(phi)
    zs = torch.tensor(list(itertools.product((0.0, 1.0), repeat=phi.numel())), dtype=torch.float64)
    probs = (zs * p + (1 - zs) * (1 - p)).prod(-1)
    (grad,) = torch.autograd.grad((probs * loss(zs)).sum(), phi)
    return grad


def estimates(phi, estimator, samples):
    """[samples, N] one-sample estimates, each from its own uniforms (rows of a [S, N] call).

    The estimate is linear in f_pos - f_neg, so one call with f_pos - f_neg = 1 gives every row's
    unit estimate; each row is then scaled by its own loss difference f(b1) - f(b2), with b1, b2 the
    arm_pos / arm_neg masks of the same counters (row s: offset + s * N + e, as the propagation
    draws them: checked in test_uses_the_propagation_uniforms_and_masks).
    """
    logits = phi.expand(samples, -1).contiguous()
    unit = arm_grad(logits, SEED, OFFSET, 1.0, 0.0, estimator)
    counters = torch.arange(logits.numel(), dtype=torch.int64, device=phi.device) + OFFSET
    u = reference.philox_uniform(SEED, counters).reshape(logits.shape)
    b1 = reference.mask_from_uniforms(MODE_ID["arm_pos"], logits, u)
    b2 = reference.mask_from_uniforms(MODE_ID["arm_neg"], logits, u)
    return unit * (loss(b1) - loss(b2))[:, None]


@pytest.mark.parametrize("estimator", ["arm", "disarm"])
@pytest.mark.parametrize("phi", [[0.3, -1.2, 2.0, -0.1], [4.0, -3.5, 0.0, 1.0]])
def test_unbiased_against_enumeration(estimator, phi):
    phi = torch.tensor(phi, dtype=torch.float64, device=DEVICE)
    g = estimates(phi, estimator, 100_000).cpu()
    mean, stderr = g.mean(0), g.std(0) / math.sqrt(g.shape[0])
    exact = exact_gradient(phi.cpu())
    assert ((mean - exact).abs() <= 5 * stderr + 1e-12).all(), (mean, exact, stderr)


def test_disarm_variance_below_arm_on_saturated_logit():
    phi = torch.tensor([4.5, -0.3, 0.8, -4.0], dtype=torch.float64, device=DEVICE)
    var_arm = estimates(phi, "arm", 50_000).var(0)
    var_disarm = estimates(phi, "disarm", 50_000).var(0)
    for j in (0, 3):  # the saturated logits: DisARM is far better there
        assert var_disarm[j] < 0.5 * var_arm[j], (j, var_arm, var_disarm)
    assert (var_disarm <= var_arm * 1.05).all()


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("estimator", ["arm", "disarm"])
@pytest.mark.parametrize("shape", [(37,), (3, 37), (1, 1), (2, 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backends_identical(backend, estimator, shape, dtype):
    gen = torch.Generator().manual_seed(1)
    phi = (3 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(DEVICE, dtype)
    f_pos, f_neg = 0.8125, torch.tensor(-1.25, dtype=torch.float64, device=DEVICE)
    got = arm_grad(phi, SEED, OFFSET, f_pos, f_neg, estimator, backend=backend)
    want = arm_grad(phi.double(), SEED, OFFSET, f_pos, f_neg, estimator, backend="reference")
    assert got.shape == phi.shape and got.dtype == dtype
    # Up to the last bit of the sigmoid (triton evaluates it in-kernel) and the float32 product.
    tol = dict(rtol=1e-15, atol=0) if dtype == torch.float64 else dict(rtol=3e-7, atol=0)
    torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize("backend", BACKEND)
def test_uses_the_propagation_uniforms_and_masks(backend):
    """ARM regenerates u of counter offset + k*E + e; DisARM's sign is arm_pos - arm_neg."""
    g = random_graph(7, 9, 0.5, seed=3)
    k, e = 3, g.num_edges
    phi = torch.randn(k, e, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(
        DEVICE
    )
    arm = arm_grad(phi, SEED, OFFSET, 1.0, 0.0, "arm", backend=backend)
    counters = torch.arange(k * e, dtype=torch.int64, device=DEVICE) + OFFSET
    u = reference.philox_uniform(SEED, counters).reshape(k, e).double()
    assert torch.equal(arm + 0.5, u)
    for layer in range(k):  # the layer offsets the propagation uses
        u_layer = reference.edge_uniforms(SEED, ops.layer_offset(OFFSET, layer, e), e, DEVICE)
        assert torch.equal(u[layer], u_layer.double())
    disarm = arm_grad(phi, SEED, OFFSET, 2.0, 0.0, "disarm", backend=backend)
    b1 = ops.sample_mask(g, phi, "arm_pos", seed=SEED, offset=OFFSET, backend=backend)
    b2 = ops.sample_mask(g, phi, "arm_neg", seed=SEED, offset=OFFSET, backend=backend)
    torch.testing.assert_close(disarm, (b1 - b2) * torch.sigmoid(phi.abs()), rtol=1e-15, atol=0)


def test_loss_arguments():
    phi = torch.randn(2, 5, dtype=torch.float64, device=DEVICE)
    want = arm_grad(phi, 3, 7, 1.5, 0.25)
    f = torch.tensor(1.5, requires_grad=True, device=DEVICE)
    torch.testing.assert_close(
        arm_grad(phi, 3, 7, f * 1, torch.tensor([0.25], device=DEVICE)), want
    )
    torch.testing.assert_close(arm_grad(phi, 3, 7, 3, 1.75), want)
    flat = arm_grad(phi.reshape(-1), 3, 7, 1.5, 0.25)
    assert torch.equal(flat, want.reshape(-1))  # [K, E] is [K * E] with the same counters


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(estimator="rebar"), "unknown estimator"),
        (dict(logits=torch.zeros(2, 2, 2)), r"shape \[E\] or \[K, E\]"),
        (dict(logits=torch.zeros(4, dtype=torch.int64)), "float32 or float64"),
        (dict(logits=torch.tensor([0.0, float("nan")])), "non-finite values .*index 1"),
        (dict(f_pos=torch.zeros(2)), "f_pos must be a float or a 1-element"),
        (dict(f_neg="1.0"), "f_neg must be a float"),
        (dict(f_pos=float("inf")), "f_pos = inf is not finite"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(logits=torch.zeros(4), seed=0, offset=0, f_pos=1.0, f_neg=0.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        arm_grad(**args)


def test_forcing_cuda_says_why():
    # No CUDA C++ kernel: forcing it is refused with the reason (on a GPU: no such kernel; here:
    # why the cuda backend cannot run), never skipped.
    phi = torch.zeros(5, device=DEVICE)
    check_refused(lambda b: arm_grad(phi, SEED, OFFSET, 1.0, 0.0, backend=b), "cuda", "arm_grad")
