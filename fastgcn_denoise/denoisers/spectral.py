"""Spectral keep scores: how well a low-rank model of the graph explains each interaction.

The normalised interaction matrix ``R̃ = D_u^-1/2 R D_i^-1/2`` (the propagation's own
normalisation) is approximated by its top-``k`` singular triplets, ``R̃ ≈ U S Vᵀ`` (block Krylov,
``ops.truncated_svd``). With ``a_u = (U S)_u`` and ``b_i = V_i``, an interaction (u, i) gets

    dot      a_u · b_i                      (its entry in the rank-k reconstruction)
    cosine   a_u · (S b_i) / (|a_u| |S b_i|) (the angle between user and item: the topic fit
                                             with the item's popularity, which sets |S b_i|,
                                             taken out)

and the keep score is the mean of their ranks (scaled to (0, 1]). Why both: random misclicks
land on unpopular items that the reconstruction barely covers (``dot`` finds them), while clicks
on popular off-taste items are reconstructed by their popularity alone and only the angle exposes
them (``cosine``). On the built-in data at its true rank (16) the ROC AUC of the mean rank is
0.79 on uniform and 0.81 / 0.80 on popularity noise at 10 % / 20 % (item-kNN: 0.84 / 0.63 / 0.60).

The rank is chosen on the validation split when one is given: the ``k`` of ``RANKS`` whose
reconstruction, with the items' degrees put back (``a_u · b_i · sqrt(d_i)``, the pure-SVD
recommender of the normalised matrix), has the best validation Recall@20, train items excluded.
That is the rank at which the low-rank model describes held-out taste best; on the built-in data
it picks the generator's true number of topics. Without a validation split: ``DEFAULT_RANK``.
No training; one truncated SVD at the largest candidate rank (the smaller ones are its leading
columns).
"""

from __future__ import annotations

import numpy as np
import torch

from ..ops import truncated_svd

RANKS = (8, 12, 16, 24, 32, 48, 64, 96, 128)
DEFAULT_RANK = 32
_TOP = 20  # the validation cutoff of the rank choice
_SCORES = 1 << 24  # dense [users, I] scores held at once in the rank choice (float64: 128 MiB)


def normalised_svd(graph, rank: int):
    """Top-``rank`` triplets of D_u^-1/2 R D_i^-1/2 (float64 U [U, k], S [k], V [I, k])."""
    users, items = graph.edges()
    deg_u = torch.bincount(users, minlength=graph.num_users).double()
    deg_i = torch.bincount(items, minlength=graph.num_items).double()
    weight = (deg_u[users] * deg_i[items]).rsqrt()
    return truncated_svd(graph, rank, edge_weight=weight, dtype=torch.float64)


def _valid_recall(u, s, v, deg_i, graph, valid, ranks) -> dict:
    """Validation Recall@20 of the rank-k reconstruction for each k in ``ranks``."""
    vu, vi = (t.cpu().numpy() for t in valid.edges())
    rowptr = graph.rowptr_u.cpu().numpy()
    col = graph.col_item.cpu().numpy()
    vusers = np.unique(vu)
    n_valid = np.bincount(vu, minlength=graph.num_users)
    vkeys = np.unique(vu * graph.num_items + vi)  # sorted: np.isin on it is a binary search
    hits = {k: 0.0 for k in ranks}
    scale = deg_i.sqrt()[None, :]
    step = max(1, min(1024, _SCORES // max(graph.num_items, 1)))
    for start in range(0, vusers.shape[0], step):
        chunk = vusers[start : start + step]  # sorted
        rows = torch.as_tensor(chunk)
        # the chunk's training pairs, read off CSR(R): edge ids rowptr[u] .. rowptr[u + 1]
        deg = rowptr[chunk + 1] - rowptr[chunk]
        base = np.repeat(rowptr[chunk] - np.cumsum(deg) + deg, deg)  # rowptr[u] - its offset
        seen_rows = torch.as_tensor(np.repeat(np.arange(chunk.shape[0]), deg))
        seen_cols = torch.as_tensor(col[base + np.arange(base.shape[0])], dtype=torch.long)
        for k in ranks:
            scores = (u[rows, :k] * s[:k]) @ v[:, :k].T * scale
            scores[seen_rows, seen_cols] = -float("inf")
            top = torch.topk(scores, min(_TOP, scores.shape[1]), dim=1).indices.numpy()
            found = np.isin(chunk[:, None] * graph.num_items + top, vkeys).sum(1)
            hits[k] += float((found / n_valid[chunk]).sum())
    return {k: hits[k] / max(vusers.shape[0], 1) for k in ranks}


def spectral_scores(graph, valid=None, rank: int | None = None, ranks=RANKS):
    """Keep score per training edge (float64 [E], edge-id order; higher = keep), and a report.

    Args:
        graph: the training ``BipartiteGraph``. valid: the validation graph that chooses the rank
            among ``ranks`` (ignored when ``rank`` is given). rank: a fixed rank.

    Returns:
        (keep [E], {"rank": k, "valid_recall@20": {k: recall} or None, "dot": [E], "cosine": [E]}).
    """
    from scipy.stats import rankdata

    limit = min(graph.num_users, graph.num_items) - 1
    if limit < 1:
        raise ValueError(
            f"spectral detector: the graph has {graph.num_users} users and "
            f"{graph.num_items} items; it needs at least 2 of each"
        )
    if rank is not None:
        if not 1 <= rank <= limit:
            raise ValueError(f"spectral rank {rank}: must be in [1, {limit}] for this graph")
        candidates = [rank]
    else:
        candidates = sorted({min(k, limit) for k in (ranks if valid is not None else [])})
        candidates = candidates or [min(DEFAULT_RANK, limit)]
    u, s, v = normalised_svd(graph, max(candidates))
    users, items = graph.edges()
    deg_i = torch.bincount(items, minlength=graph.num_items).double()
    recall = None
    if len(candidates) > 1:
        recall = _valid_recall(u, s, v, deg_i, graph, valid, candidates)
        k = max(candidates, key=lambda c: (recall[c], -c))
    else:
        k = candidates[0]
    a, b = u[users, :k] * s[:k], v[items, :k]
    dot = (a * b).sum(1)
    sb = b * s[:k]
    cosine = (a * sb).sum(1) / (a.norm(dim=1) * sb.norm(dim=1)).clamp_min(1e-300)
    dot, cosine = dot.cpu().numpy(), cosine.cpu().numpy()
    n = dot.shape[0]
    keep = (rankdata(dot) + rankdata(cosine)) / (2 * max(n, 1))
    return keep, {"rank": k, "valid_recall@20": recall, "dot": dot, "cosine": cosine}
