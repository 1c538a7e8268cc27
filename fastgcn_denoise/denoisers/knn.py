"""Leave-user-out item-kNN keep scores: how well an interaction's item fits the user's others.

For user u and two of its items i, j, the co-occurrence C_ij = |users with both| counted
without u itself is C_ij − 1 (u has both), and each item's degree d − 1 likewise. The score of
the interaction (u, i) is the mean over u's other items j of a similarity of i and j:

    cosine    (C_ij − 1) / sqrt((d_i − 1)(d_j − 1))        (item-kNN's usual similarity)
    lift      (C_ij − 1) · E / ((d_i − 1)(d_j − 1))        (co-occurrence over what popularity
                                                            alone predicts: popular noise does
                                                            not look similar to everything)

and 0 for a user's only interaction or an item nobody else has. Higher = keep. No training: it
is computed from the graph in O(Σ_u d_u · nnz(C rows)) with sparse products, users in chunks
(no dense [I, I] matrix), so it runs on Gowalla-sized data.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

SIMILARITIES = ("cosine", "lift")


def _cooccurrence(graph):
    """(R [U, I] csr of ones, C = RᵀR [I, I] csr with C_ii = d_i, d − 1 per item [I]) of the
    graph's edges, and its (users [E], items [E]) as numpy."""
    users, items = (t.cpu().numpy() for t in graph.edges())
    ones = np.ones(users.shape[0])
    r = sp.csr_matrix((ones, (users, items)), shape=(graph.num_users, graph.num_items))
    co = (r.T @ r).tocsr()
    return r, co, np.asarray(r.sum(0)).ravel() - 1.0, users, items


def _cosine_weights(d1: np.ndarray) -> np.ndarray:
    """1 / sqrt(d − 1) per item, 0 for an item no other user has."""
    return np.where(d1 > 0, 1.0 / np.sqrt(np.maximum(d1, 1.0)), 0.0)


def item_knn_scores(
    graph, similarity: str = "cosine", chunk: int = 512, progress=None
) -> torch.Tensor:
    """Keep score per training edge (float64 [E], edge-id order) as in the module docstring.

    ``chunk``: users per sparse product; ``progress``: an optional callable(users done) for a
    progress bar.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(
            f"unknown similarity {similarity!r}; choose one of {', '.join(SIMILARITIES)}"
        )
    num_users, num_edges = graph.num_users, graph.num_edges
    if num_edges == 0:
        return torch.zeros(0, dtype=torch.float64)
    r, co, d1, users, items = _cooccurrence(graph)
    out = np.zeros(num_edges)
    # S_ui = Σ_{j ∈ u} w_j (C_ij − 1[j ≠ i]·1 − 1[j = i]·C_ii) over j ≠ i, with w_j the j-side
    # factor: (R W C)_ui − d_i w_i (drops j = i) − (Σ_{j∈u} w_j − w_i) (the −1 of each j ≠ i).
    if similarity == "cosine":
        w = _cosine_weights(d1)
        g = w  # i-side factor
    else:
        w = np.where(d1 > 0, 1.0 / np.maximum(d1, 1.0), 0.0)
        g = w * num_edges
    rw = r @ sp.diags(w)
    wsum = np.asarray(rw.sum(1)).ravel()  # Σ_{j ∈ u} w_j
    rowptr = graph.rowptr_u.cpu().numpy()
    deg_u = np.diff(rowptr)
    for start in range(0, num_users, chunk):
        stop = min(start + chunk, num_users)
        lo, hi = rowptr[start], rowptr[stop]
        if hi == lo:
            continue
        block = (rw[start:stop] @ co).tocsr()  # (R W C) rows of the chunk
        eu, ei = users[lo:hi] - start, items[lo:hi]
        total = np.asarray(block[eu, ei]).ravel()
        dii = d1[ei] + 1.0
        s = total - dii * w[ei] - (wsum[users[lo:hi]] - w[ei])
        others = deg_u[users[lo:hi]] - 1
        out[lo:hi] = np.where(others > 0, g[ei] * s / np.maximum(others, 1), 0.0)
        if progress is not None:
            progress(stop - start)
    return torch.from_numpy(out)


def item_knn_pair_scores(graph, users, items, chunk: int = 512) -> np.ndarray:
    """The cosine score of pairs (users [n], items [n]) that are *not* edges of ``graph``:
    the mean over u's items j of C_ij / sqrt(d_i (d_j − 1)) (u does not count towards C_ij or
    d_i, it does towards d_j); 0 for a user without items or an item nobody has (float64 [n])."""
    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    r, co, d1, _, _ = _cooccurrence(graph)
    deg_i = d1 + 1.0
    deg_u = np.asarray(r.sum(1)).ravel()
    rw = (r @ sp.diags(_cosine_weights(d1))).tocsr()
    out = np.zeros(users.shape[0])
    order = np.argsort(users, kind="stable")
    for start in range(0, order.shape[0], chunk):
        pick = order[start : start + chunk]
        rows, local = np.unique(users[pick], return_inverse=True)
        block = (rw[rows] @ co).tocsr()  # Σ_j w_j C_j· of the chunk's users
        total = np.asarray(block[local, items[pick]]).ravel()
        scale = np.sqrt(np.maximum(deg_i[items[pick]], 1.0)) * np.maximum(deg_u[users[pick]], 1.0)
        out[pick] = total / scale
    return out
