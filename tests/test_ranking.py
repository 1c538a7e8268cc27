"""Ranks within groups and the per-group AUC against a pair-by-pair reference."""

import numpy as np
import pytest
from scipy.stats import rankdata

from fastgcn_denoise.denoisers.ranking import above_within, ranks_within, within_user


def scores_and_groups(seed, n=60, groups=5):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, n).astype(float)  # many ties
    return values, rng.integers(0, groups, n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_within_match_each_groups_own_ranking(seed):
    values, groups = scores_and_groups(seed)
    got = ranks_within(values, groups)
    for g in np.unique(groups):
        mine = groups == g
        np.testing.assert_allclose(got[mine], rankdata(values[mine]))
    np.testing.assert_allclose(within_user(values, groups), got / np.bincount(groups)[groups])


def test_empty_input_gives_empty_ranks():
    assert ranks_within(np.array([]), np.array([], dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize("seed", [0, 3])
def test_above_within_counts_pairs_with_half_ties(seed):
    values, groups = scores_and_groups(seed, groups=6)
    rng = np.random.default_rng(seed + 10)
    positive = rng.random(values.shape[0]) < 0.4
    positive[groups == 5] = True  # group 5: no negatives -> NaN
    got = above_within(values, groups, positive, num_groups=8)  # groups 6, 7: empty -> NaN
    for g in range(8):
        pos = values[(groups == g) & positive]
        neg = values[(groups == g) & ~positive]
        if pos.size == 0 or neg.size == 0:
            assert np.isnan(got[g])
            continue
        want = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
        assert got[g] == pytest.approx(want)
