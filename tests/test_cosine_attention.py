"""ops.cosine_attention on every backend present: against the autograd composition (values and
gradients), float64 gradcheck, empty rows, isolated nodes, one direction only, input errors."""

import pytest
import torch
from conftest import DEVICE, backend_params, check_gradients, random_graph

from fastgcn_denoise import BipartiteGraph, ops
from fastgcn_denoise.ops.cosine_attention import attention_kernels, composition

BACKEND = backend_params()


def rand(shape, dtype, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=gen, dtype=torch.float64)).to(DEVICE, dtype)


def inputs(g, dk, dv, dtype, seed=0):
    return (
        rand((g.num_users, dk), dtype, seed),
        rand((g.num_items, dk), dtype, seed + 1),
        rand((g.num_users, dv), dtype, seed + 2),
        rand((g.num_items, dv), dtype, seed + 3),
    )


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape,dk,dv", [((13, 11), 5, 7), ((9, 17), 33, 3), ((4, 3), 1, 1), ((30, 20), 16, 200)]
)
def test_matches_composition(backend, dtype, shape, dk, dv):
    g = random_graph(*shape, 0.35, seed=dk + dv)  # the last user and last item are isolated
    k_u, k_i, v_u, v_i = inputs(g, dk, dv, dtype, seed=dv)
    temperature = 0.7
    out = ops.cosine_attention(g, k_u, k_i, v_u, v_i, temperature, backend=backend)
    truth = composition(g, k_u.double(), k_i.double(), v_u.double(), v_i.double(), temperature)
    for got, want in zip(out, truth):
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, **tol(dtype))
    y_u, y_i, a_u, a_i = out
    assert y_u[-1].abs().sum() == 0 and y_i[-1].abs().sum() == 0  # isolated nodes: y = 0
    # The weights are a distribution over each destination's edges.
    users, items = g.edges()
    ones_u = torch.zeros(g.num_users, dtype=torch.float64, device=DEVICE).index_add_(
        0, users, a_u.double()
    )
    ones_i = torch.zeros(g.num_items, dtype=torch.float64, device=DEVICE).index_add_(
        0, items, a_i.double()
    )
    torch.testing.assert_close(
        ones_u[g.deg_u > 0], torch.ones_like(ones_u[g.deg_u > 0]), **tol(dtype)
    )
    torch.testing.assert_close(
        ones_i[g.deg_i > 0], torch.ones_like(ones_i[g.deg_i > 0]), **tol(dtype)
    )


@pytest.mark.parametrize("backend", BACKEND)
def test_backward_matches_composition(backend):
    g = random_graph(12, 10, 0.4, seed=3)
    leaves = [t.requires_grad_() for t in inputs(g, 6, 4, torch.float64, seed=5)]
    w = [
        rand(s, torch.float64, 20 + j)
        for j, s in enumerate([(12, 4), (10, 4), (g.num_edges,), (g.num_edges,)])
    ]

    def loss(outs):
        return sum((o * wj).sum() for o, wj in zip(outs, w))

    grads = torch.autograd.grad(
        loss(ops.cosine_attention(g, *leaves, 1.3, backend=backend)), leaves
    )
    truth = torch.autograd.grad(loss(composition(g, *leaves, 1.3)), leaves)
    for got, want in zip(grads, truth):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("backend", BACKEND)
def test_gradcheck(backend):
    g = random_graph(7, 6, 0.45, seed=11)
    leaves = tuple(t.requires_grad_() for t in inputs(g, 3, 2, torch.float64, seed=9))
    check_gradients(lambda b, *x: ops.cosine_attention(g, *x, 0.5, backend=b), leaves, backend)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("direction", ["to_user", "to_item"])
def test_one_direction(backend, direction):
    g = random_graph(10, 8, 0.4, seed=4)
    k_u, k_i, v_u, v_i = (t.requires_grad_() for t in inputs(g, 4, 3, torch.float64, seed=2))
    full = composition(g, k_u, k_i, v_u, v_i)
    if direction == "to_user":
        y_u, y_i, a_u, a_i = ops.cosine_attention(g, k_u, k_i, None, v_i, backend=backend)
        assert y_i is None and a_i is None
        got, want = (y_u, a_u), (full[0], full[2])
    else:
        y_u, y_i, a_u, a_i = ops.cosine_attention(g, k_u, k_i, v_u, None, backend=backend)
        assert y_u is None and a_u is None
        got, want = (y_i, a_i), (full[1], full[3])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    leaves = [k_u, k_i, v_i if direction == "to_user" else v_u]
    g1 = torch.autograd.grad(sum(t.sum() * (j + 1) for j, t in enumerate(got)), leaves)
    g2 = torch.autograd.grad(sum(t.sum() * (j + 1) for j, t in enumerate(want)), leaves)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("backend", BACKEND)
def test_primitives_agree_with_reference(backend):
    """The raw forward/backward primitives (the part each backend implements) on both CSRs."""
    g = random_graph(15, 9, 0.3, seed=8)
    k_u, k_i, v_u, v_i = inputs(g, 5, 6, torch.float32, seed=1)
    k_u = torch.nn.functional.normalize(k_u, dim=1)
    k_i = torch.nn.functional.normalize(k_i, dim=1)
    ref_f, ref_b = attention_kernels(DEVICE, "reference")
    f, b = attention_kernels(DEVICE, backend)
    y_r, a_r, c_r = ref_f(g.rowptr_u, g.col_item, None, None, k_u, k_i, v_i, 2.0)
    y, a, c = f(g.rowptr_u, g.col_item, None, None, k_u, k_i, v_i, 2.0)
    for x, z in ((y, y_r), (a, a_r), (c, c_r)):
        torch.testing.assert_close(x, z, rtol=1e-5, atol=1e-6)
    # Item rows through perm, with and without the user pass's cosines.
    for cos in (None, c_r):
        y2, a2, _ = f(g.rowptr_i, g.col_user, g.perm, cos, k_i, k_u, v_u, 2.0)
        y2_r, a2_r, _ = ref_f(g.rowptr_i, g.col_user, g.perm, cos, k_i, k_u, v_u, 2.0)
        torch.testing.assert_close(y2, y2_r, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a2, a2_r, rtol=1e-5, atol=1e-6)
    gy = rand((g.num_items, 6), torch.float32, 30)
    ga = rand((g.num_edges,), torch.float32, 31)
    torch.testing.assert_close(
        b(g.rowptr_i, g.col_user, g.perm, a2_r, ga, gy, v_u),
        ref_b(g.rowptr_i, g.col_user, g.perm, a2_r, ga, gy, v_u),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("backend", BACKEND)
def test_extreme_logits_and_zero_keys(backend):
    """A low temperature (logits of +-1000) stays finite; a zero key has cosine 0 (uniform row)."""
    g = random_graph(6, 5, 0.6, seed=2)
    k_u, k_i, v_u, v_i = inputs(g, 4, 3, torch.float64, seed=7)
    k_u[0] = 0.0
    y_u, y_i, a_u, a_i = ops.cosine_attention(g, k_u, k_i, v_u, v_i, 1e-3, backend=backend)
    for t in (y_u, y_i, a_u, a_i):
        assert torch.isfinite(t).all()
    truth = composition(g, k_u, k_i, v_u, v_i, 1e-3)
    for got, want in zip((y_u, y_i, a_u, a_i), truth):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
    row0 = a_u[: int(g.deg_u[0])]
    torch.testing.assert_close(row0, torch.full_like(row0, 1.0 / row0.numel()))


def test_errors():
    g = BipartiteGraph([0, 1], [1, 0]).to(DEVICE)
    k = torch.ones(2, 3, device=DEVICE)
    with pytest.raises(ValueError, match=r"key_item must have shape \[num_items = 2, d\]"):
        ops.cosine_attention(g, k, torch.ones(3, 3, device=DEVICE), k, k)
    with pytest.raises(ValueError, match="same width"):
        ops.cosine_attention(g, k, torch.ones(2, 4, device=DEVICE), k, k)
    with pytest.raises(ValueError, match="both None"):
        ops.cosine_attention(g, k, k, None, None)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        ops.cosine_attention(g, k, k, k, k, temperature=0.0)
    with pytest.raises(ValueError, match="share a dtype"):
        ops.cosine_attention(g, k, k, k.double(), k)
