"""Spectral keep scores against a dense float64 SVD, and the rank choice on validation."""

import numpy as np
import pytest

from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.denoisers.spectral import (
    normalised_svd,
    spectral_pair_scores,
    spectral_scores,
)


def random_graph(seed, num_users=30, num_items=22, count=220):
    rng = np.random.default_rng(seed)
    pairs = {
        (int(u), int(i))
        for u, i in zip(rng.integers(0, num_users, count), rng.integers(0, num_items, count))
    }
    users, items = map(np.array, zip(*sorted(pairs)))
    return BipartiteGraph(users, items, num_users, num_items), users, items


def dense_reference(users, items, num_users, num_items, rank):
    """P̂(i | u) of the module docstring from numpy's full SVD of the normalised matrix."""
    r = np.zeros((num_users, num_items))
    r[users, items] = 1.0
    du, di = r.sum(1), r.sum(0)
    rn = r / np.sqrt(np.maximum(du, 1))[:, None] / np.sqrt(np.maximum(di, 1))[None, :]
    u, s, vt = np.linalg.svd(rn)
    a, b = (u[:, :rank] * s[:rank])[users], vt[:rank].T[items]
    own = (b * b).sum(1) * rn[users, items]
    return ((a * b).sum(1) - own) * np.sqrt(di[items] / du[users])


@pytest.mark.parametrize("seed,rank", [(0, 3), (1, 6), (2, 10)])
def test_scores_match_a_dense_svd(seed, rank):
    graph, users, items = random_graph(seed)
    keep, info = spectral_scores(graph, rank=rank)
    expected = dense_reference(users, items, graph.num_users, graph.num_items, rank)
    assert info == {
        "rank": rank,
        "valid_recall@20": None,
        "popularity_exponent": 0.0,
        "exponent_share": None,
    }
    assert keep.shape == (graph.num_edges,) and keep.dtype == np.float64
    np.testing.assert_allclose(keep, expected, rtol=1e-6, atol=1e-9)


def test_exact_rank_leaves_each_pair_to_its_user_s_other_pairs():
    """When rank k reproduces R̃ exactly, what is left without the pair's own term is
    (1 - |V_i|²) / d_u: an item whose column is its own direction (|V_i| = 1) gets 0."""
    _, users, items = random_graph(4, num_users=12, num_items=8, count=60)
    twin = items == 7  # item 8 copies item 7's users: R has 9 columns but rank <= 8
    users, items = np.concatenate([users, users[twin]]), np.concatenate([items, items[twin] + 1])
    graph = BipartiteGraph(users, items, 12, 9)
    keep, _ = spectral_scores(graph, rank=8)
    eu, ei = (t.numpy() for t in graph.edges())
    _, _, v = normalised_svd(graph, 8)
    lev = (v.numpy() ** 2).sum(1)
    np.testing.assert_allclose(keep, (1 - lev[ei]) / np.bincount(eu)[eu], rtol=1e-6, atol=1e-12)


def test_singular_values_are_the_normalised_matrix():
    graph, users, items = random_graph(3)
    _, s, _ = normalised_svd(graph, 5)
    r = np.zeros((graph.num_users, graph.num_items))
    r[users, items] = 1.0
    rn = r / np.sqrt(r.sum(1).clip(1))[:, None] / np.sqrt(r.sum(0).clip(1))[None, :]
    np.testing.assert_allclose(s.numpy(), np.linalg.svd(rn, compute_uv=False)[:5], rtol=1e-6)


def communities(count, cross=(), users_per=20, items_per=15, p=0.6):
    """``count`` blocks: block c's users take each of its items with probability p; + ``cross``.

    Returns (graph, users, items, held-out pairs of the blocks' untaken items)."""
    rng = np.random.default_rng(0)
    num_users, num_items = count * users_per, count * items_per
    pairs, held = set(), []
    for u in range(num_users):
        c = u // users_per
        for i in range(c * items_per, (c + 1) * items_per):
            (pairs.add((u, i)) if rng.random() < p else held.append((u, i)))
    pairs |= set(cross)
    users, items = map(np.array, zip(*sorted(pairs)))
    return BipartiteGraph(users, items, num_users, num_items), users, items, held


def test_off_community_interactions_score_lowest():
    cross = [(1, 25), (7, 40), (25, 3), (33, 50), (55, 12)]
    graph, users, items, _ = communities(4, cross)
    keep, _ = spectral_scores(graph, rank=4)
    planted = np.isin(users * graph.num_items + items, [u * graph.num_items + i for u, i in cross])
    assert set(np.argsort(keep)[: len(cross)].tolist()) == set(np.flatnonzero(planted).tolist())


def test_rank_is_chosen_on_validation():
    graph, _, _, held = communities(4)
    vu, vi = map(np.array, zip(*held))
    valid = BipartiteGraph(vu, vi, graph.num_users, graph.num_items)
    _, info = spectral_scores(graph, valid, ranks=(1, 2, 4))
    recall = info["valid_recall@20"]
    assert set(recall) == {1, 2, 4}
    assert info["rank"] == 4 == max(recall, key=lambda k: (recall[k], -k))
    # rank 4 separates the four blocks: every held-out item is among a user's top 20
    assert recall[4] == pytest.approx(1.0) and recall[1] < recall[4]


def test_bad_rank_and_tiny_graph_are_refused():
    graph, _, _ = random_graph(0)
    with pytest.raises(ValueError, match="spectral rank 40"):
        spectral_scores(graph, rank=40)
    tiny = BipartiteGraph(np.array([0]), np.array([0]), 1, 1)
    with pytest.raises(ValueError, match="at least 2"):
        spectral_scores(tiny)


def test_validation_scores_are_p_hat_over_the_chosen_power_of_the_degree():
    """With a validation graph the keep score is P̂ / d_i^b, b the reported exponent; without
    one (or the same fit at a fixed rank) it is P̂."""
    graph, users, items, held = communities(4)
    vu, vi = map(np.array, zip(*held))
    valid = BipartiteGraph(vu, vi, graph.num_users, graph.num_items)
    keep, info = spectral_scores(graph, valid, ranks=(2, 4))
    plain, _ = spectral_scores(graph, rank=info["rank"])
    degree = np.bincount(items, minlength=graph.num_items)[items]
    np.testing.assert_allclose(keep, plain / degree ** info["popularity_exponent"], rtol=1e-10)
    assert set(info["exponent_share"]) == {0.0, 0.25, 0.5, 0.75, 1.0}


@pytest.mark.parametrize("seed,rank", [(0, 3), (1, 6)])
def test_pair_scores_of_absent_pairs_match_a_dense_svd(seed, rank):
    """Out-of-sample P̂: the rank-k reconstruction of the normalised matrix at (u, i) times
    sqrt(d_i / d_u), nothing taken out (the pair is not in the fit)."""
    graph, users, items = random_graph(seed)
    r = np.zeros((graph.num_users, graph.num_items))
    r[users, items] = 1.0
    du, di = r.sum(1), r.sum(0)
    rn = r / np.sqrt(np.maximum(du, 1))[:, None] / np.sqrt(np.maximum(di, 1))[None, :]
    u, s, vt = np.linalg.svd(rn)
    approx = (u[:, :rank] * s[:rank]) @ vt[:rank]
    pu, pi = np.nonzero((r == 0) & (du[:, None] > 0))
    want = approx[pu, pi] * np.sqrt(di[pi] / du[pu])
    got = spectral_pair_scores(graph, rank, pu, pi)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
