"""Leave-user-out item-kNN keep scores against a pair-by-pair reference."""

import numpy as np
import pytest

from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.denoisers.knn import item_knn_pair_scores, item_knn_scores


def reference(users, items, num_items, similarity):
    """The module docstring's definition, one interaction and one other item at a time."""
    by_user, by_item = {}, {}
    for u, i in zip(users, items):
        by_user.setdefault(u, set()).add(i)
        by_item.setdefault(i, set()).add(u)
    num_edges = len(users)
    out = []
    for u, i in zip(users, items):
        others = by_user[u] - {i}
        total = 0.0
        for j in others:
            c = len(by_item[i] & by_item[j]) - 1
            di, dj = len(by_item[i]) - 1, len(by_item[j]) - 1
            if di == 0 or dj == 0:
                continue
            total += c / np.sqrt(di * dj) if similarity == "cosine" else c * num_edges / (di * dj)
        out.append(total / len(others) if others else 0.0)
    return np.array(out)


@pytest.mark.parametrize("similarity", ["cosine", "lift"])
@pytest.mark.parametrize("seed,chunk", [(0, 3), (1, 512), (2, 1)])
def test_matches_the_reference(similarity, seed, chunk):
    rng = np.random.default_rng(seed)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, 25, 160), rng.integers(0, 18, 160))}
    pairs.add((25, 3))  # a user with a single interaction: score 0
    users, items = map(np.array, zip(*sorted(pairs)))
    graph = BipartiteGraph(users, items, 26, 19)  # item 18: no interaction
    got = item_knn_scores(graph, similarity, chunk=chunk).numpy()
    want = reference(users.tolist(), items.tolist(), 19, similarity)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert got[-1] == 0.0


def test_refuses_an_unknown_similarity():
    graph = BipartiteGraph(np.array([0, 1]), np.array([0, 0]), 2, 1)
    with pytest.raises(ValueError, match="unknown similarity 'jaccard'"):
        item_knn_scores(graph, "jaccard")


@pytest.mark.parametrize("seed,chunk", [(0, 2), (1, 512)])
def test_pair_scores_of_absent_pairs_match_the_reference(seed, chunk):
    """Scores of pairs outside the graph: the mean over u's items j of C_ij / sqrt(d_i (d_j - 1)),
    pair by pair (u is not among i's users, it is among j's)."""
    rng = np.random.default_rng(seed)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, 20, 120), rng.integers(0, 15, 120))}
    users, items = map(np.array, zip(*sorted(pairs)))
    graph = BipartiteGraph(users, items, 21, 16)  # user 20, item 15: no interaction
    by_user, by_item = {}, {}
    for u, i in pairs:
        by_user.setdefault(u, set()).add(i)
        by_item.setdefault(i, set()).add(u)
    absent = [(u, i) for u in range(21) for i in range(16) if (u, i) not in pairs]
    want = []
    for u, i in absent:
        mine, users_i = by_user.get(u, set()), by_item.get(i, set())
        total = sum(
            len(users_i & by_item[j]) / np.sqrt(len(users_i) * (len(by_item[j]) - 1))
            for j in mine
            if users_i and len(by_item[j]) > 1
        )
        want.append(total / len(mine) if mine else 0.0)
    pu, pi = map(np.array, zip(*absent))
    perm = rng.permutation(pu.shape[0])  # any order of the pairs
    got = item_knn_pair_scores(graph, pu[perm], pi[perm], chunk=chunk)
    np.testing.assert_allclose(got, np.array(want)[perm], rtol=1e-10, atol=1e-12)
