"""Negative sampling: BPR triples on the device, and distinct new items per user for generators.

Both rest on one exact, rejection-free way to draw an item a user has *not* interacted with.
Let ``s_0 < s_1 < ...`` be the user's items (one CSR row) and ``c_j = s_j - j`` the number of
absent items below ``s_j``. The ``r``-th absent item (0-based) is ``r + #{j : c_j <= r}``. The
shifted keys ``u * I + c_j`` are sorted globally (``c_j <= I - deg_u < I``), so one
``searchsorted`` over all edges finds that count for every sample at once.
"""

from __future__ import annotations

import weakref
from typing import Callable

import numpy as np
import torch

from ..graph import BipartiteGraph


def shifted_keys(keys: torch.Tensor, row_start: torch.Tensor, num_items: int) -> torch.Tensor:
    """``u * I + (i - position within u's row)`` for sorted unique keys ``u * I + i`` (int64 [n]).

    ``row_start`` [U] is the position of each user's first key (CSR row pointer).
    """
    users = torch.div(keys, num_items, rounding_mode="floor")
    pos = torch.arange(keys.shape[0], device=keys.device) - row_start[users]
    return keys - pos


def absent_items(
    shifted: torch.Tensor,
    row_start: torch.Tensor,
    users: torch.Tensor,
    rank: torch.Tensor,
    num_items: int,
) -> torch.Tensor:
    """The ``rank``-th item (0-based, int64) each user in ``users`` has not interacted with.

    ``rank`` must be below ``num_items - deg_u``; see the module docstring for why this is exact.
    """
    below = torch.searchsorted(shifted, users * num_items + rank, right=True) - row_start[users]
    return rank + below


# Per graph: (user of each edge, shifted keys), so repeated sampling costs no O(E) setup.
_PREPARED: "weakref.WeakKeyDictionary[BipartiteGraph, tuple]" = weakref.WeakKeyDictionary()


def _prepared(graph: BipartiteGraph) -> tuple[torch.Tensor, torch.Tensor]:
    cached = _PREPARED.get(graph)
    if cached is None:
        full = torch.nonzero(graph.deg_u >= graph.num_items).flatten()
        if full.numel():
            raise ValueError(
                f"user {int(full[0])} has interacted with every one of the {graph.num_items} "
                "items: no negative item exists for BPR sampling"
            )
        edge_users = graph.edge_users()
        keys = edge_users * graph.num_items + graph.col_item  # CSR(R) order: already sorted
        cached = edge_users, shifted_keys(keys, graph.rowptr_u[:-1], graph.num_items)
        _PREPARED[graph] = cached
    return cached


def sample_bpr(
    graph: BipartiteGraph, num_samples: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BPR triples: a training edge drawn uniformly, a negative uniform over its user's absent items.

    Fully vectorised on ``graph.device`` with no rejection loop (and no host sync after the first
    call on a graph). Random numbers come from ``generator`` (on any device; they are moved).

    Returns:
        users, pos, neg: int64 [num_samples] on ``graph.device``; ``neg`` is never a training
        item of its user.
    Raises:
        ValueError: if ``num_samples`` is negative or a user has interacted with every item.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    edge_users, shifted = _prepared(graph)
    gen_device = generator.device
    edges = torch.randint(
        graph.num_edges, (num_samples,), generator=generator, device=gen_device
    ).to(graph.device)
    unif = torch.rand(num_samples, generator=generator, device=gen_device, dtype=torch.float64).to(
        graph.device
    )
    users = edge_users[edges]
    pos = graph.col_item[edges]
    available = graph.num_items - graph.deg_u[users]
    # float64 uniforms times a count < 2^53: the floor is uniform up to a 2^-53 bias.
    rank = torch.minimum((unif * available).long(), available - 1)
    neg = absent_items(shifted, graph.rowptr_u[:-1], users, rank, graph.num_items)
    return users, pos, neg


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an int64 array (sort + neighbour compare: faster than
    ``np.unique``, whose hash-based path is slow on large int64 arrays)."""
    keys = np.sort(keys)
    keep = np.ones(keys.shape[0], dtype=bool)
    keep[1:] = keys[1:] != keys[:-1]
    return keys[keep]


def draw_distinct_items(
    counts: np.ndarray,
    taken_keys: np.ndarray,
    num_items: int,
    draw: Callable[[np.ndarray, np.ndarray], np.ndarray],
    max_rounds: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Give each user ``u`` up to ``counts[u]`` new distinct items, none among ``taken_keys``.

    Each round asks ``draw(users, taken)`` for one item per missing slot (``users`` int64 [n],
    ``taken`` the current sorted unique keys ``u * I + i``), keeps the draws that are new and
    distinct, and retries the rest. A round never gives a user more than it asked for, so the
    counts are exact unless a user's slots stay unfilled after ``max_rounds`` (a draw that keeps
    hitting taken items); the caller sees the shortfall in what comes back.

    Args:
        counts: int64 [U]; taken_keys: sorted unique int64 keys.
    Returns:
        (users, items) int64 [sum of filled counts], sorted by key.
    """
    need = np.asarray(counts, dtype=np.int64).copy()
    taken = np.asarray(taken_keys, dtype=np.int64)
    new = []
    for _ in range(max_rounds):
        users = np.repeat(np.arange(need.shape[0], dtype=np.int64), need)
        if users.size == 0:
            break
        keys = sorted_unique(users * num_items + draw(users, taken))
        pos = np.searchsorted(taken, keys)
        hit = pos < taken.shape[0]
        hit[hit] = taken[pos[hit]] == keys[hit]
        keys = keys[~hit]
        new.append(keys)
        # Both runs are sorted and disjoint: a stable (merging) sort joins them in linear time.
        taken = np.sort(np.concatenate([taken, keys]), kind="stable")
        need -= np.bincount(keys // num_items, minlength=need.shape[0])
    keys = np.sort(np.concatenate(new)) if new else np.zeros(0, dtype=np.int64)
    return keys // num_items, keys % num_items


def uniform_absent_draw(num_items: int, rng: np.random.Generator):
    """A ``draw`` for ``draw_distinct_items``: items uniform over each user's absent items.

    Exact (no rejection against ``taken``), so only duplicates within a round are retried.
    The users passed in must have at least one absent item.
    """

    def draw(users: np.ndarray, taken: np.ndarray) -> np.ndarray:
        num_users = int(users.max()) + 1
        bound = max(num_users, int(taken[-1] // num_items) + 1 if taken.size else 0)
        t_keys = torch.from_numpy(taken)
        row_start = torch.searchsorted(
            t_keys, torch.arange(bound + 1, dtype=torch.int64) * num_items
        )
        available = num_items - (row_start[1:] - row_start[:-1])
        t_users = torch.from_numpy(users)
        avail_u = available[t_users]
        rank = np.floor(rng.random(users.shape[0]) * avail_u.numpy()).astype(np.int64)
        rank = torch.minimum(torch.from_numpy(rank), avail_u - 1)
        shifted = shifted_keys(t_keys, row_start[:-1], num_items)
        return absent_items(shifted, row_start[:-1], t_users, rank, num_items).numpy()

    return draw
