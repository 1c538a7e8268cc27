"""Full-ranking evaluation against a deliberately simple per-user Python implementation."""

import math

import numpy as np
import pytest
import torch
from conftest import DEVICE

from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.tasks.evaluation import (
    evaluate_embeddings,
    evaluate_most_popular,
    most_popular,
    rank_metrics,
    top_items,
)


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

    def to_graph(m):
        return BipartiteGraph(*np.nonzero(m), num_users, num_items).to(DEVICE)

    return train, target, to_graph(train_m), to_graph(test_m)


@pytest.mark.parametrize(
    "num_users,num_items,ks,batch",
    [
        (7, 5, (1, 3, 20), 3),  # K larger than the number of items
        (40, 33, (5, 10), 7),  # odd sizes, several batches
        (64, 120, (20, 50, 100), 1000),
    ],
)
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
    assert top_items(scores, 0).shape == (1, 0)
    nan = torch.tensor([[float("nan"), 1.0, float("nan"), 0.5]], device=DEVICE)
    assert top_items(nan, 3).tolist() == [[1, 3, 0]]  # NaN ranks as -inf


@pytest.mark.parametrize("levels", [3, 50, None])  # heavy ties across the cut ... none (floats)
@pytest.mark.parametrize("k", [1, 5, 16, 17])
def test_top_items_matches_brute_force(levels, k):
    gen = torch.Generator().manual_seed(k)
    scores = torch.rand(40, 17, generator=gen)
    if levels is not None:
        scores = torch.floor(scores * levels) - levels // 2  # integers: many equal values
    special = torch.rand(40, 17, generator=gen)
    scores[special < 0.05] = float("nan")
    scores[(special >= 0.05) & (special < 0.1)] = -float("inf")
    scores[(special >= 0.1) & (special < 0.15)] = -0.0
    clean = torch.where(scores.isnan(), -float("inf"), scores)
    expected = [sorted(range(17), key=lambda i: (-float(row[i]), i))[:k] for row in clean]
    assert top_items(scores.to(DEVICE), k).tolist() == expected


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


# --------------------------------------------------------------------------- fused top-k (Triton)
def _exclusion(num_users, num_items, seed):
    """Random exclusion mask: user 0 keeps 3 items (k > unmasked items), user 1 has none."""
    m = np.random.default_rng(seed).random((num_users, num_items)) < 0.4
    m[0, :] = True
    m[0, [4, 17, 30]] = False
    m[1, :] = False
    return m


def _torch_topk(user, item, users, mask, k):
    """The reference: dense scores, -inf on the mask, ``top_items``; NaN reported as -inf."""
    scores = (user[users] @ item.T).to(torch.float32)
    scores[mask[users]] = float("-inf")
    top = top_items(scores, k)
    return top, scores.gather(1, top).nan_to_num(
        nan=float("-inf"), posinf=float("inf"), neginf=float("-inf")
    )


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf * 0
@pytest.mark.parametrize(
    "data,d,k",
    [
        *[("ties", d, k) for d in (5, 16) for k in (1, 5, 20)],
        ("ties", 5, 50),  # k > I
        ("gauss", 5, 5),
        ("gauss", 16, 20),
    ],
)
def test_fused_topk_matches_torch(data, d, k):
    from fastgcn_denoise.kernels.topk import masked_topk

    num_users, num_items = 7, 37
    gen = torch.Generator().manual_seed(d * 100 + k)
    if data == "ties":  # few distinct, exactly representable scores: many ties, no rounding
        user = torch.randint(-2, 3, (num_users, d), generator=gen).float() / 2
        item = torch.randint(-2, 3, (num_items, d), generator=gen).float() / 4
        user[2, 0] = float("nan")  # a NaN row: everything ranks as -inf, by item id
        user[3, 1] = float("inf")  # +inf, -inf and NaN scores
    else:
        user = torch.randn(num_users, d, generator=gen)
        item = torch.randn(num_items, d, generator=gen)
    mask = _exclusion(num_users, num_items, seed=k)
    g = BipartiteGraph(*np.nonzero(mask), num_users, num_items)
    users = torch.tensor([3, 0, 1, 6, 2, 5, 4, 0])  # unordered, one user twice
    user, item, users, mask = (
        user.to(DEVICE),
        item.to(DEVICE),
        users.to(DEVICE),
        torch.from_numpy(mask).to(DEVICE),
    )
    g = g.to(DEVICE)
    expected_items, expected_values = _torch_topk(user, item, users, mask, k)
    assert expected_items.shape == (8, min(k, num_items))
    # Default tiling (one tile here), and several tiles and item splits merged in torch.
    for splits, block_items in ((None, None), (2, 16)):
        items, values = masked_topk(
            user, item, users, g.rowptr_u, g.col_item, k, splits=splits, block_items=block_items
        )
        assert items.tolist() == expected_items.tolist(), (splits, block_items)
        if data == "ties":
            assert torch.equal(values, expected_values)
        else:  # the kernel's dot products may round differently from the matmul
            torch.testing.assert_close(values, expected_values, rtol=1e-5, atol=1e-5)


def test_fused_topk_without_exclusions_and_float64():
    from fastgcn_denoise.kernels.topk import masked_topk

    gen = torch.Generator().manual_seed(5)
    user = (torch.randint(-3, 4, (7, 5), generator=gen).double() / 8).to(DEVICE)
    item = (torch.randint(-3, 4, (37, 5), generator=gen).double() / 8).to(DEVICE)
    users = torch.arange(7, device=DEVICE)
    empty = torch.zeros(8, dtype=torch.int64, device=DEVICE)
    items, values = masked_topk(user, item, users, empty, empty[:0], 5)
    expected = top_items(user @ item.T, 5)
    assert items.tolist() == expected.tolist()
    assert torch.equal(values, (user @ item.T).float().gather(1, expected))


@pytest.mark.parametrize("with_valid", [False, True])
def test_fused_evaluate_matches_torch_path(with_valid, monkeypatch):
    from fastgcn_denoise.kernels import topk as topk_kernels

    num_users, num_items = 30, 25
    train, target, g_train, g_test = random_split(num_users, num_items, seed=4)
    excluded = [set(s) for s in train]
    exclude = [g_train]
    if with_valid:  # a second exclusion graph, overlapping train in one pair
        valid_pairs = [(u, (3 * u + 1) % num_items) for u in range(1, num_users, 2)]
        valid_pairs.append((2, next(iter(train[2]))))
        g_valid = BipartiteGraph(*zip(*valid_pairs), num_users, num_items).to(DEVICE)
        exclude.append(g_valid)
        for u, i in valid_pairs:
            excluded[u].add(i)
        target = [t - e for t, e in zip(target, excluded)]
        keep = [(u, i) for u in range(num_users) for i in target[u]]
        g_test = BipartiteGraph(*zip(*keep), num_users, num_items).to(DEVICE)
    gen = torch.Generator().manual_seed(0)
    user = torch.randint(-2, 3, (num_users, 4), generator=gen).float()  # ties included
    item = torch.randint(-2, 3, (num_items, 4), generator=gen).float()
    ks = (5, 10, 30)  # 30 > I: the lists run into the masked items
    expected, _ = simple_metrics((user @ item.T).numpy(), excluded, target, ks)
    user, item = user.to(DEVICE), item.to(DEVICE)
    torch_path = evaluate_embeddings(
        user, item, g_test, exclude, ks, batch_users=16, backend="reference"
    )
    calls = []
    real = topk_kernels.masked_topk
    monkeypatch.setattr(
        topk_kernels, "masked_topk", lambda *a, **kw: calls.append(1) or real(*a, **kw)
    )
    fused = evaluate_embeddings(user, item, g_test, exclude, ks, batch_users=16, backend="triton")
    assert calls  # the fused path ran
    assert fused == torch_path
    for key, value in expected.items():
        assert fused[key] == pytest.approx(value, rel=1e-9), key


def test_fused_path_selection(monkeypatch):
    import fastgcn_denoise.tasks.evaluation as ev
    from fastgcn_denoise.kernels.topk import MAX_K
    from fastgcn_denoise.ops import BackendUnavailable

    cpu, f32 = torch.device("cpu"), torch.float32
    monkeypatch.delenv("FASTGCN_BACKEND", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert not ev._use_fused(cpu, None, 20, f32)  # CPU: torch path unless forced
    assert ev._use_fused(cpu, "triton", 20, f32)
    assert not ev._use_fused(cpu, "triton", MAX_K + 1, f32)  # k too large: torch path
    assert not ev._use_fused(cpu, "reference", 20, f32)
    monkeypatch.setenv("FASTGCN_BACKEND", "triton")
    assert ev._use_fused(cpu, None, 20, f32)
    assert not ev._use_fused(cpu, "reference", 20, f32)  # the argument wins
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        ev._use_fused(cpu, "bogus", 20, f32)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailable, match="not available"):
        ev._use_fused(cpu, "triton", 20, f32)


def test_progress_bar_over_user_batches(capsys):
    _, _, g_train, g_test = random_split(40, 30, seed=5)
    gen = torch.Generator().manual_seed(1)
    user, item = (
        torch.randn(40, 4, generator=gen).to(DEVICE),
        torch.randn(30, 4, generator=gen).to(DEVICE),
    )
    quiet = evaluate_embeddings(user, item, g_test, [g_train], (5,), batch_users=8)
    assert capsys.readouterr().err == ""  # off by default
    shown = evaluate_embeddings(user, item, g_test, [g_train], (5,), batch_users=8, progress=True)
    err = capsys.readouterr().err
    assert shown == quiet
    assert err.startswith("\revaluate:") and f"/{quiet['users']} [" in err  # a bar over the users
