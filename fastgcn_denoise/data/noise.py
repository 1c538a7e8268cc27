"""Noisy-edge injection for robustness experiments (SGCN paper, section 4.3).

"For each dataset, we randomly connect the unobserved edges that serve as false positive
interactions for each user in the training set", at ratios of noisy edges from 0% to 25%.
We read the ratio per user: user ``u`` gets ``round(ratio * |train_u|)`` new training items,
uniform over the items it has not interacted with in any split.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .dataset import InteractionData
from .sampling import draw_distinct_items, sorted_unique, uniform_absent_draw


def interacted_keys(data: InteractionData) -> np.ndarray:
    """Sorted unique keys ``u * I + i`` over train, valid and test (int64)."""
    parts = [data.train, data.test] + ([data.valid] if data.valid is not None else [])
    return sorted_unique(np.concatenate([u * data.num_items + i for u, i in parts]))


def per_user_count(ratio: float, train_users: np.ndarray, num_users: int) -> np.ndarray:
    """``round(ratio * |train_u|)`` (half-up) per user, int64 [U]."""
    ratio = float(ratio)
    if not np.isfinite(ratio) or ratio < 0:
        raise ValueError(f"noise ratio must be a finite number >= 0, got {ratio}")
    deg = np.bincount(train_users, minlength=num_users)
    return np.floor(ratio * deg + 0.5).astype(np.int64)


def inject_noise(data: InteractionData, ratio: float, seed: int = 0) -> InteractionData:
    """A copy of ``data`` with random false-positive interactions added to ``train``.

    Per user, ``round(ratio * |train_u|)`` items the user has not interacted with (in any split)
    are appended to ``train`` and flagged True in ``noise`` (existing flags are kept; pairs
    without a flag count as clean). A user with fewer absent items than that gets them all.
    ``meta["injected_noise"]`` records the ratio, seed and number of pairs added.
    """
    counts = per_user_count(ratio, data.train[0], data.num_users)
    taken = interacted_keys(data)
    absent = data.num_items - np.bincount(taken // data.num_items, minlength=data.num_users)
    counts = np.minimum(counts, absent)
    rng = np.random.default_rng(seed)
    users, items = draw_distinct_items(counts, taken, data.num_items,
                                       uniform_absent_draw(data.num_items, rng))
    old = (np.zeros(data.train[0].shape[0], dtype=bool) if data.noise is None
           else np.asarray(data.noise, dtype=bool))
    meta = dict(data.meta, injected_noise={"ratio": float(ratio), "seed": int(seed),
                                           "count": int(users.shape[0])})
    return dataclasses.replace(
        data,
        train=(np.concatenate([data.train[0], users]), np.concatenate([data.train[1], items])),
        noise=np.concatenate([old, np.ones(users.shape[0], dtype=bool)]), meta=meta)
