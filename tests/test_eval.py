"""Full-ranking evaluation against a deliberately simple per-user Python implementation."""
import math

import numpy as np
import pytest
import torch

from conftest import DEVICE
from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.eval import (evaluate_embeddings, evaluate_most_popular, most_popular,
                                  rank_metrics, top_items)


def simple_metrics(scores, train, target, ks):
    """Per user: sort unmasked items by (-score, item) in Python, count hits in the first K."""
    scores = np.asarray(scores, dtype=np.float32)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")}
    users = [u for u in range(scores.shape[0]) if target[u]]
    for u in users:
        candidates = [i for i in range(scores.shape[1]) if i not in train[u]]
        ranked = sorted(candidates, key=lambda i: (-float(scores[u, i]), i))
        for k in ks:
            top = ranked[:k]
            hits = [r for r, i in enumerate(top) if i in target[u]]
            sums[f"recall@{k}"] += len(hits) / len(target[u])
            dcg = sum(1 / math.log2(r + 2) for r in hits)
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(target[u]))))
            sums[f"ndcg@{k}"] += dcg / idcg
    return {key: v / len(users) for key, v in sums.items()}, len(users)


def random_split(num_users, num_items, seed, p_train=0.3, p_test=0.1):
    """Disjoint random train/test sets; the last user has no test items and user 0 sees
    (almost) everything in train, so its top-K list runs into masked items."""
    rng = np.random.default_rng(seed)
    r = rng.random((num_users, num_items))
    train_m = r < p_train
    test_m = (r >= p_train) & (r < p_train + p_test)
    train_m[0, :] = True
    train_m[0, :2] = False
    test_m[0, :] = False
    test_m[0, 1] = True
    test_m[-1, :] = False
    train = [set(np.nonzero(row)[0].tolist()) for row in train_m]
    target = [set(np.nonzero(row)[0].tolist()) for row in test_m]
    to_graph = lambda m: BipartiteGraph(*np.nonzero(m), num_users, num_items).to(DEVICE)
    return train, target, to_graph(train_m), to_graph(test_m)


@pytest.mark.parametrize("num_users,num_items,ks,batch", [
    (7, 5, (1, 3, 20), 3),        # K larger than the number of items
    (40, 33, (5, 10), 7),         # odd sizes, several batches
    (64, 120, (20, 50, 100), 1000),
])
@pytest.mark.parametrize("tied", [False, True])
def test_metrics_match_simple_implementation(num_users, num_items, ks, batch, tied):
    train, target, g_train, g_test = random_split(num_users, num_items, seed=num_items)
    rng = np.random.default_rng(1)
    if tied:  # few distinct values: most comparisons are ties
        scores = rng.integers(0, 3, (num_users, num_items)).astype(np.float32)
    else:
        scores = rng.standard_normal((num_users, num_items)).astype(np.float32)
    expected, n = simple_metrics(scores, train, target, ks)
    s = torch.from_numpy(scores).to(DEVICE)
    got = rank_metrics(lambda u: s[u], g_test, [g_train], ks, batch_users=batch)
    assert got["users"] == n < num_users  # users without targets (the last one) are skipped
    assert list(got)[:2] == [f"recall@{ks[0]}", f"ndcg@{ks[0]}"]
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_embeddings_and_most_popular_match_simple_implementation():
    train, target, g_train, g_test = random_split(30, 25, seed=3)
    gen = torch.Generator().manual_seed(0)
    user, item = torch.randn(30, 4, generator=gen), torch.randn(25, 4, generator=gen)
    expected, _ = simple_metrics((user @ item.T).numpy(), train, target, (5, 10))
    got = evaluate_embeddings(user.to(DEVICE), item.to(DEVICE), g_test, [g_train], (5, 10))
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key
    pop = most_popular(g_train).cpu().numpy()
    expected, _ = simple_metrics(np.tile(pop, (30, 1)), train, target, (5, 10))
    got = evaluate_most_popular(g_train, g_test, ks=(5, 10))
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key


def test_top_items_order_is_total():
    scores = torch.tensor([[0.0, -0.0, 1.0, 1.0, -float("inf"), -1.0, 2.0]], device=DEVICE)
    assert top_items(scores, 10).tolist() == [[6, 2, 3, 0, 1, 5, 4]]
    assert top_items(scores, 2).tolist() == [[6, 2]]
    nan = torch.tensor([[float("nan"), 1.0, float("nan"), 0.5]], device=DEVICE)
    assert top_items(nan, 3).tolist() == [[1, 3, 0]]  # NaN ranks as -inf


def test_perfect_and_empty_rankings():
    g = BipartiteGraph([0, 0, 1], [1, 2, 0], 3, 4).to(DEVICE)
    scores = torch.zeros(3, 4, device=DEVICE)
    scores[0, 1] = scores[0, 2] = scores[1, 0] = 1.0
    got = rank_metrics(lambda u: scores[u], g, (), (2,))
    assert got == {"recall@2": 1.0, "ndcg@2": 1.0, "users": 2}
    got = rank_metrics(lambda u: -scores[u], g, (), (2,))
    assert got["recall@2"] == 0.0 and got["ndcg@2"] == 0.0


def test_bad_arguments():
    g = BipartiteGraph([0], [0], 2, 3)
    with pytest.raises(ValueError, match="ks must be positive"):
        rank_metrics(lambda u: torch.zeros(len(u), 3), g, (), (0,))
    with pytest.raises(ValueError, match="score_fn returned shape"):
        rank_metrics(lambda u: torch.zeros(len(u), 2), g, (), (1,))
    with pytest.raises(ValueError, match="does not match"):
        rank_metrics(lambda u: torch.zeros(len(u), 3), g, [BipartiteGraph([0], [0], 2, 4)], (1,))
