"""The choice of the noise model's popularity exponent on validation."""

import numpy as np

from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.denoisers.noise_model import EXPONENTS, HOLD, choose_exponent, hold_out


def graph_with_validation(rng, popular_noise: bool):
    """200 users on 60 items: items 50..59 are very popular (every user has several); each user
    also has 6 niche items (0..49). Validation: 2 more niche items per user (preferences)."""
    users, items, vu, vi = [], [], [], []
    for u in range(200):
        niche = rng.choice(50, 8, replace=False)
        mine = list(niche[:6]) + list(
            rng.choice(np.arange(50, 60), 4 if popular_noise else 1, replace=False)
        )
        users += [u] * len(mine)
        items += mine
        vu += [u, u]
        vi += list(niche[6:])
    train = BipartiteGraph(np.array(users), np.array(items), 200, 60)
    return train, BipartiteGraph(np.array(vu), np.array(vi), 200, 60)


def raw_score(graph, users, items):
    """A score that grows with the item's popularity and knows nothing else (what popularity-
    shaped noise looks like to P̂ or kNN): the item's degree plus a little jitter."""
    degree = np.bincount(graph.edges()[1].numpy(), minlength=graph.num_items)
    return degree[items] * (1.0 + 0.01 * np.sin(users + 3.0 * items))


def test_popular_noise_calls_for_a_positive_exponent():
    """The held-out pairs include many popular-item pairs, the validation pairs none: only a
    score divided by a power of the degree ranks validation above them."""
    train, valid = graph_with_validation(np.random.default_rng(0), popular_noise=True)
    beta, shares = choose_exponent(train, valid, [raw_score])
    assert set(shares) == set(EXPONENTS)
    assert beta > 0 and shares[beta] == max(shares.values()) and shares[beta] > shares[0.0] + 0.1


def test_no_difference_keeps_zero():
    """A score that cannot tell validation from held-out pairs under any β (zero everywhere, so
    also after dividing by d_i^β): every share is 1/2 and β stays 0, with one part or two."""
    train, valid = graph_with_validation(np.random.default_rng(1), popular_noise=True)
    zero = lambda graph, users, items: np.zeros(users.shape[0])  # noqa: E731
    assert choose_exponent(train, valid, [zero]) == choose_exponent(train, valid, [zero, zero])
    beta, shares = choose_exponent(train, valid, [zero, zero])
    assert beta == 0.0 and all(abs(s - 0.5) < 1e-12 for s in shares.values())


def test_too_few_users_report_no_shares():
    train = BipartiteGraph(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 2)
    valid = BipartiteGraph(np.array([1]), np.array([0]), 2, 2)
    assert choose_exponent(train, valid, [raw_score]) == (0.0, None)


def test_hold_out_is_seeded_and_partitions_the_pairs():
    rng = np.random.default_rng(2)
    keys = np.unique(rng.integers(0, 30 * 20, 300))
    graph = BipartiteGraph(keys // 20, keys % 20, 30, 20)
    rest, hu, hi = hold_out(graph, seed=5)
    again = hold_out(graph, seed=5)
    np.testing.assert_array_equal(hu, again[1])
    ru, ri = (t.numpy() for t in rest.edges())
    assert sorted(np.r_[ru * 20 + ri, hu * 20 + hi].tolist()) == keys.tolist()
    assert 0.5 * HOLD < hu.shape[0] / keys.shape[0] < 1.5 * HOLD
