"""ops.nuclear_norm (value and both backwards) and its SDDMM, against dense float64 computations."""

import pytest
import torch
from conftest import DEVICE, backend_params, check_refused, random_graph

from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.ops.nuclear_norm import NuclearNormState, nuclear_norm
from fastgcn_denoise.ops.sddmm import sddmm

# No CUDA C++ SDDMM: on GPUs the triton backend runs it.
BACKEND = backend_params(("reference", "cpu", "triton"))


def dense(g, w):
    users, items = g.edges()
    return torch.zeros(g.num_users, g.num_items, dtype=w.dtype, device=w.device).index_put(
        (users, items), w
    )


def separated_case(num_users, num_items, k, seed):
    """A graph and float64 weights whose top k+1 singular values are well separated."""
    g = random_graph(num_users, num_items, 0.6, seed=seed)
    w = 0.2 + torch.rand(
        g.num_edges, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    w = w.to(DEVICE)
    s = torch.linalg.svdvals(dense(g, w))
    gaps = (s[:k] - s[1 : k + 1]) / s[0]
    assert gaps.min() > 1e-2, f"test precondition: spectrum not separated ({s})"
    return g, w.requires_grad_()


@pytest.mark.parametrize("backward", ["exact", "power_iteration"])
@pytest.mark.parametrize("shape, k", [((9, 7), 3), ((7, 12), 2), ((8, 6), 1)])
def test_value_and_gradient_against_svdvals(backward, shape, k):
    g, w = separated_case(*shape, k, seed=sum(shape) + k)
    want = torch.linalg.svdvals(dense(g, w))[:k].sum()
    (want_grad,) = torch.autograd.grad(want, w)
    got = nuclear_norm(g, w, k, backward=backward, pi_iters=30)
    (got_grad,) = torch.autograd.grad(got, w)
    assert got.shape == () and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-8, atol=1e-8)


def test_gradcheck_exact_backward():
    g, w = separated_case(9, 7, 3, seed=19)
    assert torch.autograd.gradcheck(lambda x: nuclear_norm(g, x, 3), (w,))


def test_power_iteration_few_steps_close_to_exact():
    """From the forward's (converged) vectors, even one power step gives the exact gradient."""
    g, w = separated_case(10, 8, 3, seed=3)
    (exact,) = torch.autograd.grad(nuclear_norm(g, w, 3), w)
    (pi,) = torch.autograd.grad(nuclear_norm(g, w, 3, backward="power_iteration", pi_iters=1), w)
    torch.testing.assert_close(pi, exact, rtol=1e-6, atol=1e-6)


def test_float32():
    g, w = separated_case(9, 7, 3, seed=19)
    w32 = w.detach().float().requires_grad_()
    got = nuclear_norm(g, w32, 3)
    (grad,) = torch.autograd.grad(got, w32)
    want = torch.linalg.svdvals(dense(g, w))[:3].sum()
    (want_grad,) = torch.autograd.grad(want, w)
    assert got.dtype == grad.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad.double(), want_grad, rtol=1e-4, atol=1e-4)


def test_state_warm_start():
    g = random_graph(120, 90, 0.05, seed=11)
    w = (
        0.5
        + torch.rand(g.num_edges, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ).to(DEVICE)
    state = NuclearNormState()
    first = nuclear_norm(g, w, 6, state=state, tol=0)
    assert state.v.shape == (g.num_items, 6) and state.s.shape == (6,)
    torch.testing.assert_close(first, state.s.sum())
    w2 = w * 1.001
    again = nuclear_norm(g, w2, 6, state=state, n_iter=1)  # warm: one step is enough
    torch.testing.assert_close(again, 1.001 * first, rtol=1e-9, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(backward="svd"), "unknown backward"),
        (dict(edge_weight=torch.ones(4, dtype=torch.int64)), "float32 or float64 tensor"),
        (dict(state="v"), "state must be a NuclearNormState"),
        (dict(pi_iters=0), "pi_iters must be a positive int"),
        (dict(k=5), "k must be an int"),
        (dict(edge_weight=torch.ones(3)), r"edge_weight must have shape \[num_edges\] = \[4\]"),
    ],
)
def test_bad_input(kwargs, match):
    g = BipartiteGraph([0, 0, 1, 3], [0, 2, 1, 2], 4, 3).to(DEVICE)
    args = dict(graph=g, edge_weight=torch.ones(4, device=DEVICE), k=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        nuclear_norm(**args)


def test_bad_state_shape():
    g = BipartiteGraph([0, 0, 1, 3], [0, 2, 1, 2], 4, 3).to(DEVICE)
    state = NuclearNormState()
    state.v = torch.ones(7, 2, device=DEVICE)
    with pytest.raises(ValueError, match="state.v has shape"):
        nuclear_norm(g, torch.ones(4, device=DEVICE), 2, state=state)


# ----------------------------------------------------------------------------- sddmm
@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("graph, k", [((13, 11, 0.3), 5), ((2, 3, 0.0), 1), ((6, 5, 0.9), 131)])
def test_sddmm_against_dense(backend, dtype, graph, k):
    g = random_graph(*graph, seed=2)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(g.num_users, k, generator=gen, dtype=torch.float64).to(DEVICE)
    b = torch.randn(g.num_items, k, generator=gen, dtype=torch.float64).to(DEVICE)
    users, items = g.edges()
    want = (a @ b.T)[users, items]
    got = sddmm(g, a.to(dtype), b.to(dtype), backend=backend)
    assert got.dtype == dtype and got.shape == (g.num_edges,)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize("backend", BACKEND)
def test_sddmm_gradcheck(backend):
    g = random_graph(7, 6, 0.4, seed=1)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(g.num_users, 3, generator=gen, dtype=torch.float64).to(DEVICE).requires_grad_()
    b = torch.randn(g.num_items, 3, generator=gen, dtype=torch.float64).to(DEVICE).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: sddmm(g, x, y, backend=backend), (a, b))


def test_sddmm_bad_input():
    g = random_graph(4, 3, 0.5, seed=0)
    with pytest.raises(ValueError, match=r"a must have shape \[num_users = 4, k\]"):
        sddmm(g, torch.ones(3, 2, device=DEVICE), torch.ones(3, 2, device=DEVICE))
    with pytest.raises(ValueError, match="must share k and dtype"):
        sddmm(g, torch.ones(4, 2, device=DEVICE), torch.ones(3, 3, device=DEVICE))
    with pytest.raises(ValueError, match="float32 or float64"):
        sddmm(
            g, torch.ones(4, 2, dtype=torch.int64, device=DEVICE), torch.ones(3, 2, device=DEVICE)
        )


def test_forcing_cuda_says_why():
    # No CUDA C++ SDDMM: forcing it is refused with the reason (see test_arm_grad).
    g = random_graph(4, 3, 0.5)
    a, b = torch.ones(4, 2, device=DEVICE), torch.ones(3, 2, device=DEVICE)
    check_refused(lambda name: sddmm(g, a, b, backend=name), "cuda", "sddmm")
