"""The action of the denoising pipeline: which interactions to drop, given their keep scores.

``lowest_k`` drops the ``round(fraction · E)`` interactions with the lowest keep score, with

* ties broken by a seeded random order (never by edge id, i.e. user id: the order of the file
  must not decide who loses pairs), and a warning when the cut falls inside a large group of
  equal scores or most scores are tied;
* a per-user and per-item floor: an interaction is not dropped when it is its user's or its
  item's last remaining training pair; the next-lowest droppable one is dropped instead, and the
  number protected is reported.

``within_user`` (``denoisers.ranking``) turns keep scores into each interaction's place among its
own user's (the pipeline's default): the lowest ``fraction`` is then cut from every user alike
instead of from the users whose scores run low. Why: a score compares a user's items well but
users with each other poorly (a broad taste spreads its probability thin), and noise comes per
user. On the built-in data (uniform noise at 10 %) it lifted the ROC AUC of the spectral keep
scores (then without the own term) from 0.849 to 0.860, and a LightGCN retrained without the
lowest 20 % from 0.2204 to 0.2234 (seed 0; noisy 0.2200, without the noise 0.2284).
"""

from __future__ import annotations

import numpy as np

# A cut inside a group of equal scores larger than this share of the drops, or this share of
# all scores tied with another: the drop set is partly a random choice, which the user is told.
_TIED_AT_CUT = 0.05
_TIED_OVERALL = 0.5


def _tie_warnings(keep: np.ndarray, order: np.ndarray, count: int, raw: np.ndarray) -> list[str]:
    warnings = []
    _, inverse, sizes = np.unique(raw, return_inverse=True, return_counts=True)
    tied = float((sizes[inverse] > 1).mean())
    if tied >= _TIED_OVERALL:
        warnings.append(
            f"{tied:.0%} of the {raw.size} keep scores are tied with another: "
            "the scores hardly rank the interactions; ties are broken in a seeded "
            "random order"
        )
    if 0 < count < keep.size:
        cut = keep[order[count - 1]]
        group = int((keep == cut).sum())
        inside = int((keep[order[:count]] == cut).sum())
        if group > 1 and inside < group and inside > _TIED_AT_CUT * count:
            warnings.append(
                f"{group} interactions share the keep score {cut:.6g} at the cut: "
                f"{inside} of them, chosen in a seeded random order, are dropped"
            )
    return warnings


def lowest_k(
    keep,
    users,
    items,
    num_users: int,
    num_items: int,
    fraction: float,
    seed: int = 0,
    floor: bool = True,
    raw=None,
) -> tuple[np.ndarray, dict]:
    """Drop the ``fraction`` of the interactions with the lowest ``keep`` score.

    Args:
        keep: float [E] keep scores (higher = keep). users, items: int64 [E] the interactions.
        fraction: in [0, 1). seed: the tie-breaking order. floor: never drop a user's or an
            item's last remaining pair. raw: float [E], the detector's scores when ``keep``
            is made from them (``within_user`` ranks, tied across users by construction): the
            warning about scores that hardly rank the interactions reads these (default keep).

    Returns:
        (dropped bool [E], info {"dropped", "protected", "warnings"}).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"drop fraction {fraction}: must be in [0, 1)")
    keep = np.asarray(keep, dtype=np.float64)
    if keep.ndim != 1 or keep.shape[0] != len(users) or len(users) != len(items):
        raise ValueError(f"keep scores {keep.shape} do not match the {len(users)} interactions")
    if not np.isfinite(keep).all():
        raise ValueError(f"{int((~np.isfinite(keep)).sum())} keep scores are not finite")
    count = round(fraction * keep.shape[0])
    perm = np.random.default_rng([seed, 28]).permutation(keep.shape[0])
    order = perm[np.argsort(keep[perm], kind="stable")]  # ascending, random among equals
    dropped = np.zeros(keep.shape[0], dtype=bool)
    protected = 0
    if not floor:
        dropped[order[:count]] = True
    elif count:
        left_u = np.bincount(users, minlength=num_users)
        left_i = np.bincount(items, minlength=num_items)
        done = 0
        for e in order.tolist():
            u, i = users[e], items[e]
            if left_u[u] > 1 and left_i[i] > 1:
                dropped[e] = True
                left_u[u] -= 1
                left_i[i] -= 1
                done += 1
                if done == count:
                    break
            else:
                protected += 1
    raw = keep if raw is None else np.asarray(raw, dtype=np.float64)
    warnings = _tie_warnings(keep, order, count, raw)
    if protected:
        warnings.append(
            f"{protected} interactions among the lowest-scored were kept: each was "
            "its user's or its item's last training pair (the next-lowest were "
            "dropped instead)"
        )
    if int(dropped.sum()) < count:
        warnings.append(
            f"only {int(dropped.sum())} of the {count} interactions asked for could "
            "be dropped without emptying a user or an item"
        )
    return dropped, {"dropped": int(dropped.sum()), "protected": protected, "warnings": warnings}
