"""Ranks of scores within groups (a user's interactions): what the per-user cut and the spectral
detector's noise-model choice compare."""

from __future__ import annotations

import numpy as np


def ranks_within(values, groups) -> np.ndarray:
    """Each value's rank among its group's, 1 = the group's lowest, ties sharing their mean rank
    (float64 [n]). values: float [n]; groups: non-negative int [n], in any order."""
    from scipy.stats import rankdata

    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    if values.shape[0] == 0:
        return values.copy()
    # One ranking of (group, value) keys: equal keys, hence shared mean ranks, only within a
    # group; a group's ranks then start after the members of all lower group ids.
    dense = rankdata(values, method="dense").astype(np.int64)
    ranks = rankdata(groups * (int(dense.max()) + 1) + dense)
    count = np.bincount(groups)
    return ranks - (np.cumsum(count) - count)[groups]


def within_user(keep, users) -> np.ndarray:
    """Each interaction's rank among its user's, scaled to (0, 1] (float64 [E]; the user's
    highest-scored pair gets 1, ties share their mean rank). keep: float [E]; users: int64 [E]."""
    users = np.asarray(users, dtype=np.int64)
    ranks = ranks_within(keep, users)
    return ranks / np.bincount(users)[users] if ranks.shape[0] else ranks


def above_within(score, groups, positive, num_groups: int) -> np.ndarray:
    """Per group, the AUC of its ``positive`` members against the others: the share of
    (positive, other) pairs of the group in which the positive scores higher, ties counting
    1/2 (float64 [num_groups]; NaN where a group lacks either kind).
    score: float [n]; groups: int [n]; positive: bool [n]."""
    groups = np.asarray(groups, dtype=np.int64)
    positive = np.asarray(positive, dtype=bool)
    ranks = ranks_within(score, groups)
    n_pos = np.bincount(groups[positive], minlength=num_groups).astype(np.float64)
    n_neg = np.bincount(groups[~positive], minlength=num_groups).astype(np.float64)
    rank_sum = np.bincount(groups[positive], weights=ranks[positive], minlength=num_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc
