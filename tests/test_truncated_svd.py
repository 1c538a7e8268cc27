"""ops.truncated_svd (block Krylov) against a dense float64 SVD of the masked matrix."""

import pytest
import torch
from conftest import DEVICE, backend_params, random_graph

from fastgcn_denoise.ops.truncated_svd import truncated_svd

BACKEND = backend_params()
# (users, items, density): odd sizes with an isolated user and item; more users than items (the
# basis then lives on the item side); a dense block; a single edge.
GRAPHS = {
    "odd": (13, 11, 0.3),
    "tall": (40, 17, 0.25),
    "wide": (23, 61, 0.15),
    "dense": (6, 5, 0.9),
    "single": (2, 3, 0.0),
}


def dense(g, w):
    users, items = g.edges()
    r = torch.zeros(g.num_users, g.num_items, dtype=torch.float64, device=w.device)
    r[users, items] = w.double()
    return r


def weights(g, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (0.3 + torch.rand(g.num_edges, generator=gen, dtype=torch.float64)).to(DEVICE, dtype)


def check_triplets(r, u, s, v, k, dtype):
    """Values match the dense SVD; vectors orthonormal; R v = s u and R^T u = s v."""
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    want = torch.linalg.svdvals(r)[:k]
    assert s.shape == (k,) and u.shape == (r.shape[0], k) and v.shape == (r.shape[1], k)
    assert s.dtype == u.dtype == v.dtype == dtype
    assert (s[:-1] >= s[1:]).all(), "not sorted descending"
    torch.testing.assert_close(s.double(), want, rtol=tol, atol=tol * want[0])
    u, s, v = u.double(), s.double(), v.double()
    nz = s > 1e-6 * s[0]
    eye = torch.eye(int(nz.sum()), dtype=torch.float64, device=r.device)
    torch.testing.assert_close(u[:, nz].T @ u[:, nz], eye, atol=10 * tol, rtol=0)
    torch.testing.assert_close(v[:, nz].T @ v[:, nz], eye, atol=10 * tol, rtol=0)
    torch.testing.assert_close(r @ v, u * s, atol=10 * tol * s[0], rtol=0)
    torch.testing.assert_close(r.T @ u[:, nz], v[:, nz] * s[nz], atol=10 * tol * s[0], rtol=0)


@pytest.mark.parametrize("name", list(GRAPHS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("which_k", ["one", "some", "all"])
@pytest.mark.parametrize("weighted", [True, False])
def test_matches_dense_svd(name, dtype, which_k, weighted):
    g = random_graph(*GRAPHS[name], seed=4)
    n = min(g.num_users, g.num_items)
    k = {"one": 1, "some": max(1, n // 3), "all": n}[which_k]
    w = weights(g, dtype) if weighted else None
    u, s, v = truncated_svd(g, k, w, dtype=dtype, tol=0)
    r = dense(g, w if weighted else torch.ones(g.num_edges, device=DEVICE))
    check_triplets(r, u, s, v, k, dtype)


@pytest.mark.parametrize("backend", BACKEND)
def test_backends_agree(backend):
    g = random_graph(31, 26, 0.2, seed=5)
    w = weights(g, torch.float64)
    u, s, v = truncated_svd(g, 4, w, backend=backend, tol=0)
    check_triplets(dense(g, w), u, s, v, 4, torch.float64)


def test_defaults_reach_1e_3_on_a_larger_graph():
    """Default depth/tol on a graph where the basis cannot cover the space (n >> block)."""
    g = random_graph(400, 300, 0.03, seed=6)
    u, s, v = truncated_svd(g, 12)
    want = torch.linalg.svdvals(dense(g, torch.ones(g.num_edges, device=DEVICE)))[:12]
    assert ((s.double() - want).abs() / want).max() < 1e-3


def test_warm_start_from_exact_vectors():
    """One block (n_iter = 0) is a single subspace step: poor cold, exact from the right V."""
    g = random_graph(200, 150, 0.05, seed=7)
    w = weights(g, torch.float64)
    want = torch.linalg.svdvals(dense(g, w))[:8]
    _, s_cold, _ = truncated_svd(g, 8, w, n_iter=0, oversample=0)
    _, _, v_exact = truncated_svd(g, 8, w, tol=0, n_iter=20)
    w2 = w * (
        1
        + 1e-3
        * torch.randn(w.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(
            DEVICE
        )
    )
    want2 = torch.linalg.svdvals(dense(g, w2))[:8]
    _, s_warm, _ = truncated_svd(g, 8, w2, n_iter=0, oversample=0, init=v_exact)
    err_cold = ((s_cold - want).abs() / want).max()
    err_warm = ((s_warm - want2).abs() / want2).max()
    assert err_cold > 1e-3, "the cold single step should not already be accurate here"
    assert err_warm < 1e-5, (err_cold, err_warm)


def test_tall_graph_warm_start():
    """More users than items: the basis is on the item side and init is used there directly."""
    g = random_graph(60, 20, 0.2, seed=8)
    w = weights(g, torch.float64)
    _, s0, v0 = truncated_svd(g, 5, w, tol=0)
    u, s, v = truncated_svd(g, 5, w, init=v0, n_iter=1)
    check_triplets(dense(g, w), u, s, v, 5, torch.float64)


def test_reproducible_and_generator():
    g = random_graph(120, 100, 0.05, seed=9)
    opts = dict(n_iter=0, oversample=0)  # one inexact block: the start block shows in the values
    a = truncated_svd(g, 3, **opts)
    b = truncated_svd(g, 3, **opts)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = truncated_svd(g, 3, generator=torch.Generator(DEVICE).manual_seed(5), **opts)
    assert not torch.allclose(a[1], c[1], rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=0), r"k must be an int in \[1, min\(num_users, num_items\) = 3\]"),
        (dict(k=4), "k must be an int"),
        (dict(edge_weight=torch.ones(2)), r"edge_weight must have shape \[num_edges\]"),
        (
            dict(edge_weight=torch.tensor([1.0, float("nan"), 1.0, 1.0])),
            "non-finite values .*edge 1",
        ),
        (dict(init=torch.ones(5, 2)), r"init must be item-side vectors \[num_items = 3"),
        (dict(dtype=torch.float16), "float32 or float64"),
        (dict(n_iter=-1), "n_iter must be a non-negative int"),
        (dict(tol=-1.0), "tol must be >= 0"),
        (dict(oversample=1.5), "oversample must be a non-negative int"),
    ],
)
def test_bad_input(kwargs, match):
    from fastgcn_denoise import BipartiteGraph

    g = BipartiteGraph([0, 0, 1, 3], [0, 2, 1, 2], 4, 3).to(DEVICE)
    args = dict(graph=g, k=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        truncated_svd(**args)
