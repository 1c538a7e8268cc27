"""Noise types and noisy-edge injection for robustness experiments (SGCN paper, section 4.3).

"For each dataset, we randomly connect the unobserved edges that serve as false positive
interactions for each user in the training set", at ratios of noisy edges from 0% to 25%.
We read the ratio per user: user ``u`` gets ``round(ratio * |train_u|)`` new training items it
has not interacted with in any split, uniform over those items (the paper's reading, ``kind =
"uniform"``) or in proportion to the items' training degree (``"popularity"``: the false positives
of exposure, popular and mostly off-taste).

Every noisy training pair carries a type code in ``InteractionData.noise_type`` (int8, one per
training pair, 0 = clean; ``NOISE_CODE``), so a benchmark can score a denoiser per type. The
built-in generator plants all three ``NOISE_TYPES``; injection adds the first two.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from .dataset import NOISE_CODE, NOISE_TYPES, InteractionData, noise_types_of
from .sampling import draw_distinct_items, sorted_unique, uniform_absent_draw

INJECTED_KINDS = ("uniform", "popularity")


def noise_mix_weights(mix) -> dict:
    """``{type: weight}`` (weights summing to 1) from a type name, a mapping or (type, weight)
    pairs; ValueError naming what is wrong."""
    pairs = (
        [(mix, 1.0)]
        if isinstance(mix, str)
        else list(mix.items())
        if isinstance(mix, Mapping)
        else list(mix)
    )
    weights = {}
    for kind, weight in pairs:
        if kind not in NOISE_CODE:
            raise ValueError(f"unknown noise type {kind!r}; choose from {', '.join(NOISE_TYPES)}")
        weight = float(weight)
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(
                f"noise_mix weight of {kind!r} must be a finite number >= 0, got {weight}"
            )
        weights[kind] = weights.get(kind, 0.0) + weight
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"noise_mix needs a positive weight on some type, got {mix!r}")
    return {kind: w / total for kind, w in weights.items() if w > 0}


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


def _popularity_draw(data: InteractionData, rng: np.random.Generator):
    """A ``draw`` for ``draw_distinct_items``: items in proportion to their training degree."""
    cdf = np.cumsum(np.bincount(data.train[1], minlength=data.num_items).astype(np.float64))
    if cdf[-1] == 0:
        raise ValueError("popularity noise needs training interactions to measure popularity")
    cdf /= cdf[-1]

    def draw(users: np.ndarray, _taken: np.ndarray) -> np.ndarray:
        return np.minimum(
            np.searchsorted(cdf, rng.random(users.shape[0]), side="right"), data.num_items - 1
        )

    return draw


def inject_noise(
    data: InteractionData, ratio: float, seed: int = 0, kind: str = "uniform"
) -> InteractionData:
    """A copy of ``data`` with random false-positive interactions added to ``train``.

    Per user, ``round(ratio * |train_u|)`` items the user has not interacted with (in any split)
    are appended to ``train``, flagged True in ``noise`` and typed ``kind`` in ``noise_type``
    (existing flags and types are kept; pairs without a flag count as clean). ``kind``:
    ``uniform`` over the user's absent items, or ``popularity`` (in proportion to the items'
    training degree). A user with fewer absent items than asked gets them all (``popularity``
    draws that keep hitting taken items may leave a few slots unfilled: the count says).
    ``meta["injected_noise"]`` records the ratio, kind, seed and number of pairs added.
    """
    if kind not in INJECTED_KINDS:
        raise ValueError(
            f"unknown injected noise kind {kind!r}; choose one of {', '.join(INJECTED_KINDS)}"
        )
    counts = per_user_count(ratio, data.train[0], data.num_users)
    taken = interacted_keys(data)
    absent = data.num_items - np.bincount(taken // data.num_items, minlength=data.num_users)
    counts = np.minimum(counts, absent)
    rng = np.random.default_rng(seed)
    draw = (
        uniform_absent_draw(data.num_items, rng)
        if kind == "uniform"
        else _popularity_draw(data, rng)
    )
    users, items = draw_distinct_items(counts, taken, data.num_items, draw)
    old = (
        np.zeros(data.train[0].shape[0], dtype=bool)
        if data.noise is None
        else np.asarray(data.noise, dtype=bool)
    )
    old_types = noise_types_of(dataclasses.replace(data, noise=old))
    meta = dict(
        data.meta,
        injected_noise={
            "ratio": float(ratio),
            "kind": kind,
            "seed": int(seed),
            "count": int(users.shape[0]),
        },
    )
    return dataclasses.replace(
        data,
        train=(np.concatenate([data.train[0], users]), np.concatenate([data.train[1], items])),
        noise=np.concatenate([old, np.ones(users.shape[0], dtype=bool)]),
        noise_type=np.concatenate([old_types, np.full(users.shape[0], NOISE_CODE[kind], np.int8)]),
        # weights given with the data (``train_weight``) stay with their pairs; an added pair
        # weighs 1, as an unweighted one
        train_weight=None
        if data.train_weight is None
        else np.concatenate([data.train_weight, np.ones(users.shape[0], np.float32)]),
        meta=meta,
    )
