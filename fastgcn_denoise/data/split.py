"""Seeded per-user hold-out splits (test from a single pairs file, validation from train)."""

from __future__ import annotations

import dataclasses

import numpy as np

from .checks import drop_train_duplicates
from .dataset import InteractionData


def _check_fraction(fraction: float) -> float:
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"hold-out fraction must be in [0, 1), got {fraction}")
    return fraction


def holdout_mask(
    users: np.ndarray, fraction: float, rng: np.random.Generator, items: np.ndarray | None = None
) -> np.ndarray:
    """Mark, per user, ``round(fraction * n_u)`` of its ``n_u`` pairs chosen at random.

    At most ``n_u - 1`` are marked, so every user keeps at least one pair (a user with one pair
    gives none). ``round`` is half-up: a user with 5 pairs and fraction 0.1 gives one. With
    ``items``, no item loses all its pairs either: an item whose every pair was drawn keeps the
    first of them (in the random order), so its user gives one pair fewer. Otherwise the item's
    held-out pairs could not be learned from anything left.

    Args:
        users: int64 [n] (any order, non-negative); items: int64 [n] or None.
    Returns:
        bool [n], True for the held-out pairs.
    """
    fraction = _check_fraction(fraction)
    n = users.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    counts = np.bincount(users)
    start = np.zeros(counts.shape[0], dtype=np.int64)
    np.cumsum(counts[:-1], out=start[1:])
    # Sorting by (user, random key) puts each user's pairs in a random order; the first k go out.
    order = np.lexsort((rng.random(n), users))
    sorted_users = users[order]
    rank = np.arange(n, dtype=np.int64) - start[sorted_users]
    take = np.minimum(np.floor(fraction * counts + 0.5).astype(np.int64), counts - 1)
    mask = np.empty(n, dtype=bool)
    mask[order] = rank < take[sorted_users]
    if items is not None:
        kept = np.bincount(items[~mask], minlength=int(items.max()) + 1)
        lost = np.flatnonzero((mask & (kept[items] == 0))[order])  # positions in the random order
        _, first = np.unique(items[order][lost], return_index=True)
        mask[order[lost[first]]] = False
    return mask


def validation_split(
    data: InteractionData, fraction: float = 0.1, seed: int = 0
) -> InteractionData:
    """A copy of ``data`` with a seeded per-user validation split taken out of ``train``.

    Train is deduplicated first (``checks.drop_train_duplicates``: a pair listed twice would
    otherwise land in train and validation). Each user and each item keeps at least one training
    pair (see ``holdout_mask``). The validation pairs come from the observed training pairs,
    noisy ones included (as on real data, where the noise is unknown); ``noise`` is carried along
    for the pairs that stay in train and ``meta["valid_noise"]`` counts the noisy pairs that went
    to validation. If ``data.valid`` is already set (e.g. the source has its own), ``data`` is
    returned unchanged.
    """
    if data.valid is not None:
        return data
    data = drop_train_duplicates(data)
    users, items = data.train
    out = holdout_mask(users, fraction, np.random.default_rng(seed), items)
    result = data.take_train(~out)
    meta = result.meta
    meta["validation_split"] = {"fraction": float(fraction), "seed": int(seed)}
    if data.noise is not None:
        meta["valid_noise"] = int(np.asarray(data.noise, dtype=bool)[out].sum())
    return dataclasses.replace(result, valid=(users[out], items[out]))
