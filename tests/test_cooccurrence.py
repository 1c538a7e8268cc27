"""ops.item_cooccurrence and ops.lec_neighbors on every backend present, against dense RᵀR."""

import numpy as np
import pytest
import torch
from conftest import DEVICE, random_graph

from fastgcn_denoise import BipartiteGraph, ops
from fastgcn_denoise.ops.cooccurrence import cooccurrence_mass

# The LEC selection (segment_topk) has reference, cpu and triton kernels; on GPUs the triton one
# runs (no CUDA C++ kernel).
_AVAIL = ops.availability(DEVICE)
BACKEND = [
    pytest.param(
        name, marks=pytest.mark.skipif(_AVAIL[name] is not None, reason=f"{name}: {_AVAIL[name]}")
    )
    for name in ("reference", "cpu", "triton")
]


def dense_g(graph):
    u, i = graph.edges()
    r = torch.zeros(graph.num_users, graph.num_items, dtype=torch.float64, device=graph.device)
    r[u, i] = 1.0
    return r.T @ r


def to_dense(rowptr, col, count, num_rows, num_cols):
    rows = torch.repeat_interleave(torch.arange(num_rows, device=col.device), rowptr.diff())
    out = torch.zeros(num_rows, num_cols, dtype=torch.float64, device=col.device)
    out[rows, col] = count.double()
    return out


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("diagonal", [True, False])
@pytest.mark.parametrize("rows", [(0, None), (2, 9), (5, 5), (10, 13)])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("shape", [(60, 13, 0.4), (50, 400, 0.02)])
def test_cooccurrence_rows_match_dense(backend, diagonal, rows, scaled, shape):
    # The cpu kernel orders a row's columns by a bitmap scan (rows dense for the item count, the
    # first shape) or by a sort (sparse rows, the second).
    graph = random_graph(*shape, seed=3)  # the last item has no users
    g = dense_g(graph)
    if not diagonal:
        g.fill_diagonal_(0)
    scale = None
    if scaled:
        scale = torch.rand(graph.num_items, generator=torch.Generator().manual_seed(1)).to(DEVICE)
        g = (g.float() * scale[:, None] * scale[None, :]).double()  # the same float32 products
    begin, end = rows[0], graph.num_items if rows[1] is None else rows[1]
    rowptr, col, count = ops.item_cooccurrence(graph, begin, end, diagonal, scale, backend=backend)
    assert rowptr.shape == (end - begin + 1,) and count.dtype == torch.float32
    assert torch.equal(to_dense(rowptr, col, count, end - begin, graph.num_items), g[begin:end])
    assert (count > 0).all()  # zeros are not stored
    for r in range(end - begin):  # columns ascending within a row
        assert (col[rowptr[r] : rowptr[r + 1]].diff() > 0).all()


def test_mass_is_the_row_sums_of_g():
    graph = random_graph(11, 9, 0.4, seed=1)
    torch.testing.assert_close(cooccurrence_mass(graph), dense_g(graph).sum(1))


def neighbours_by_brute_force(graph, k1, k2, min_co, diagonal):
    """DGR's lists from the dense ω, each row sorted in Python by (ω, item id)."""
    g = dense_g(graph).cpu()
    scale = (g.sum(1) + 1).rsqrt().float()
    omega = g.float() * scale[:, None] * scale[None, :]
    n = graph.num_items
    sim = np.full((n, k1), -1)
    sim_w = np.zeros((n, k1), dtype=np.float32)
    mar = np.full((n, k2), -1)
    mar_w = np.zeros((n, k2), dtype=np.float32)
    for i in range(n):
        cand = [j for j in range(n) if g[i, j] > 0 and (diagonal or j != i)]
        best = sorted(cand, key=lambda j: (-omega[i, j].item(), j))[:k1]
        sim[i, : len(best)], sim_w[i, : len(best)] = best, [omega[i, j] for j in best]
        if len(cand) >= min_co:
            low = sorted(cand, key=lambda j: (omega[i, j].item(), j))[:k2]
            mar[i, : len(low)], mar_w[i, : len(low)] = low, [omega[i, j] for j in low]
    return sim, sim_w, mar, mar_w


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("block_work", [1, 40, 1 << 22])
def test_lec_neighbours_match_brute_force(backend, diagonal, block_work):
    graph = random_graph(40, 23, 0.2, seed=5)
    k1, k2, min_co = 4, 3, 6
    got = ops.lec_neighbors(graph, k1, k2, min_co, diagonal, block_work=block_work, backend=backend)
    sim, sim_w, mar, mar_w = neighbours_by_brute_force(graph, k1, k2, min_co, diagonal)
    assert np.array_equal(got.similar.cpu().numpy(), sim)
    assert np.array_equal(got.marginal.cpu().numpy(), mar)
    np.testing.assert_allclose(got.similar_weight.cpu().numpy(), sim_w, rtol=1e-6)
    np.testing.assert_allclose(got.marginal_weight.cpu().numpy(), mar_w, rtol=1e-6)
    # The test graph exercises every case: pads in similar, items without marginal neighbours,
    # the isolated last item, and (with the diagonal) items that are their own neighbour.
    assert (sim[-1] == -1).all() and (mar == -1).all(axis=1).any() and (mar != -1).any()
    if diagonal:
        assert (sim == np.arange(graph.num_items)[:, None]).any()
    else:
        assert not (sim == np.arange(graph.num_items)[:, None]).any()


def test_default_marginal_rule_is_three_k2():
    # Item 0 co-occurs with items 1..5 (5 items): K2 = 2 needs >= 6, K2 = 1 needs >= 3.
    users = [0, 0, 0, 0, 0, 0]
    items = [0, 1, 2, 3, 4, 5]
    graph = BipartiteGraph(users, items, 1, 6).to(DEVICE)
    assert (ops.lec_neighbors(graph, 1, 2).marginal[0] == -1).all()
    assert (ops.lec_neighbors(graph, 1, 1).marginal[0] != -1).all()


def test_bad_arguments():
    graph = random_graph(5, 4, 0.5)
    with pytest.raises(ValueError, match=r"item rows \[3, 2\) are not inside \[0, 4\)"):
        ops.item_cooccurrence(graph, 3, 2)
    with pytest.raises(ValueError, match="k_marginal must be >= 0"):
        ops.lec_neighbors(graph, 2, -1)
    with pytest.raises(ValueError, match=r"scale must be a tensor \[num_items = 4\]"):
        ops.item_cooccurrence(graph, scale=torch.ones(3))
    with pytest.raises(ValueError, match="block_work must be positive"):
        ops.lec_neighbors(graph, block_work=0)
