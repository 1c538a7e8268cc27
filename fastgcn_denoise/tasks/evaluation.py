"""Full-ranking evaluation: Recall@K and NDCG@K over all items, seen items masked out.

For each user with at least one target item: score every item, set the items of the ``exclude``
graphs (training, and validation when evaluating test) to -inf, take the top max(K) items and count
target hits. Recall@K = hits@K / |T_u|; NDCG@K = DCG@K / IDCG@K with binary relevance,
DCG = sum over hit ranks r (0-based) of 1 / log2(r + 2), IDCG = the same for min(K, |T_u|) hits.
Both are averaged over the evaluated users (the LightGCN code's convention).

Ranking order is total and the same on every device: higher score first, ties broken by the
lower item id. Scores are compared in float32 (float64 scores are rounded first). A masked item is
never a hit, even when fewer than K items remain and the top-K list runs into the -inf scores.

Two implementations of the ranking step, with identical results for identical scores:

* torch (the reference, and the CPU path): ``score_fn`` materialises the [B, I] scores of a batch,
  the excluded items are set to -inf and ``top_items`` ranks them.
* fused (``kernels/topk.py``, Triton): for dot-product scores (``evaluate_embeddings`` /
  ``evaluate_model``), one kernel computes the scores tile by tile, masks the excluded items from
  a merged CSR of the ``exclude`` graphs and keeps a per-user top-k, so the [B, I] score matrix is
  never written; hits are looked up in the target's sorted CSR. It is used on CUDA tensors when
  the triton backend is available, or when forced with ``backend="triton"`` / FASTGCN_BACKEND=triton
  (CPU tensors then need TRITON_INTERPRET=1); ``backend="reference"`` (or any other backend name)
  keeps the torch path. Cut-offs above ``kernels.topk.MAX_K`` use the torch path. The kernel's
  dot products (float32 accumulation, IEEE, never TF32) may round differently from the matmul of
  the torch path, so scores that tie to within an ulp can swap; the order for given scores is the
  same.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

import torch

from ..graph import BipartiteGraph
from ..ops._backend import BackendUnavailable, availability, requested_backend, unavailable_message

DEFAULT_KS = (20, 50, 100)


def _sort_keys(values: torch.Tensor, items: torch.Tensor, num_items: int) -> torch.Tensor:
    """int64 keys whose descending order is (value desc, item id asc), distinct per item.

    The float32 bit pattern, read as int32 with the non-sign bits of negatives flipped, is
    monotonic in the value; it fills the high word and (I - 1 - item) the low word.
    """
    values = values.to(torch.float32) + 0.0  # -0.0 + 0.0 = +0.0: one key for zero
    bits = values.view(torch.int32)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    return (bits << 32) | (num_items - 1 - items)


def top_items(scores: torch.Tensor, k: int) -> torch.Tensor:
    """int64 [B, min(k, I)]: each row's top items, best first, ties to the lower item id.

    NaN ranks as -inf. ``topk(k + 1)`` on the floats gives each row's candidates: when its
    (k+1)-th value is below its k-th, the k returned items are exactly the row's k best, and only
    their order among equal values needs fixing (a sort of k exact keys per row). Rows where a tie
    runs across the cut (rare with float scores) go through ``_top_items_by_comparison``.
    """
    scores = scores.to(torch.float32)  # compare in the precision the keys have
    num_items = scores.shape[1]
    k = min(int(k), num_items)
    if k <= 0:
        return torch.empty(scores.shape[0], 0, dtype=torch.int64, device=scores.device)
    cut = k + 1 if k < num_items else k
    values, items = scores.topk(cut, dim=1)
    if torch.isnan(values).any():  # topk ranks NaN first; rank it with -inf instead
        scores = scores.nan_to_num(nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
        values, items = scores.topk(cut, dim=1)
    tied = values[:, k - 1] == values[:, k] if cut > k else None
    values, items = values[:, :k], items[:, :k]
    top = items.gather(1, _sort_keys(values, items, num_items).argsort(dim=1, descending=True))
    if tied is not None and tied.any():
        top[tied] = _top_items_by_comparison(scores[tied], k)
    return top


def _top_items_by_comparison(scores: torch.Tensor, k: int) -> torch.Tensor:
    """``top_items`` for rows whose k-th value is tied beyond the cut (scores without NaN).

    Every item at or above the row's k-th value gets an exact sort key: one comparison pass over
    the scores.
    """
    num_rows, num_items = scores.shape
    kth = scores.topk(k, dim=1).values[:, -1:]
    rows, items = torch.nonzero(scores >= kth, as_tuple=True)
    keys = _sort_keys(scores[rows, items], items, num_items)
    # Sort the candidates by key (descending), then stably by row: rows ascending, keys descending.
    order = torch.argsort(keys, descending=True, stable=True)
    order = order[torch.argsort(rows[order], stable=True)]
    counts = torch.bincount(rows, minlength=num_rows)
    first = torch.cumsum(counts, 0) - counts
    # Every row has >= k candidates: its k best are all >= its k-th value.
    take = first.unsqueeze(1) + torch.arange(k, device=scores.device)
    return items[order][take]


def _rows_of(graph: BipartiteGraph, users: torch.Tensor):
    """(row position in ``users`` [n], item [n]) for all edges of the given users."""
    start, end = graph.rowptr_u[users], graph.rowptr_u[users + 1]
    counts = end - start
    rows = torch.repeat_interleave(torch.arange(users.shape[0], device=users.device), counts)
    # Position of each edge in CSR(R): its row's start plus its rank within the row.
    first = torch.cumsum(counts, 0) - counts
    pos = start[rows] + torch.arange(rows.shape[0], device=users.device) - first[rows]
    return rows, graph.col_item[pos]


def _check_args(
    target: BipartiteGraph, exclude: Sequence[BipartiteGraph], ks: Sequence[int], batch_users: int
) -> list[int]:
    ks = [int(k) for k in ks]
    if not ks or min(ks) <= 0:
        raise ValueError(f"ks must be positive cut-offs, got {ks}")
    if batch_users <= 0:
        raise ValueError(f"batch_users must be positive, got {batch_users}")
    for g in exclude:
        if (g.num_users, g.num_items) != (
            target.num_users,
            target.num_items,
        ) or g.device != target.device:
            raise ValueError(f"exclude graph {g} does not match the target graph {target}")
    return ks


def _accumulate(
    batch_hits: Callable[[torch.Tensor, int], torch.Tensor],
    target: BipartiteGraph,
    ks: list[int],
    batch_users: int,
    progress: bool = False,
) -> dict:
    """Average Recall@K / NDCG@K over the users with targets.

    ``batch_hits(users [B], kmax)`` -> bool [B, kmax]: whether each user's r-th ranked item is a
    (non-masked, finite-score) target. ``progress``: a bar over the user batches on stderr, with
    the first cut-off's Recall so far (one host sync per batch, only then).
    """
    device = target.device
    kmax = min(max(ks), target.num_items)
    # Discounts 1/log2(r + 2) and their prefix sums (the IDCG of n hits is cum[n - 1]).
    disc = 1.0 / torch.log2(torch.arange(kmax, device=device, dtype=torch.float64) + 2)
    cum = torch.cumsum(disc, 0)
    users_all = torch.nonzero(target.deg_u > 0).flatten()
    sums = {
        f"{m}@{k}": torch.zeros((), dtype=torch.float64, device=device)
        for k in ks
        for m in ("recall", "ndcg")
    }
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=users_all.shape[0], desc="evaluate", unit="user", leave=False, file=sys.stderr
        )
    for b0 in range(0, users_all.shape[0], batch_users):
        users = users_all[b0 : b0 + batch_users]
        hits = batch_hits(users, kmax).to(torch.float64)
        n_target = target.deg_u[users].to(torch.float64)
        dcg = torch.cumsum(hits * disc, 1)
        n_hits = torch.cumsum(hits, 1)
        for k in ks:
            kk = min(k, kmax)
            sums[f"recall@{k}"] += (n_hits[:, kk - 1] / n_target).sum()
            ideal = cum[torch.clamp(n_target.long(), max=kk) - 1]
            sums[f"ndcg@{k}"] += (dcg[:, kk - 1] / ideal).sum()
        if bar is not None:
            bar.update(users.shape[0])
            done = b0 + users.shape[0]
            bar.set_postfix_str(
                f"recall@{ks[0]} {float(sums[f'recall@{ks[0]}']) / done:.4f}", refresh=False
            )
    if bar is not None:
        bar.close()
    n = users_all.shape[0]
    out = {key: (float(v) / n if n else 0.0) for key, v in sums.items()}
    out["users"] = int(n)
    return out


def rank_metrics(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    target: BipartiteGraph,
    exclude: Sequence[BipartiteGraph] = (),
    ks: Sequence[int] = DEFAULT_KS,
    batch_users: int = 512,
    *,
    fresh_scores: bool = False,
    progress: bool = False,
) -> dict:
    """Recall@K / NDCG@K of the ranking given by ``score_fn`` against ``target`` (torch path).

    Args:
        score_fn: users int64 [B] -> float scores [B, I] (on ``target.device``).
        target: the held-out interactions (valid or test) as a graph.
        exclude: graphs whose items are masked out per user (training, ...).
        ks: cut-offs; the first is the headline one.
        batch_users: users scored at once (memory ~ 20 bytes x batch_users x I).
        fresh_scores: ``score_fn`` returns a new float32 tensor on every call (e.g. a product),
            so the excluded items are masked in it in place; otherwise each [B, I] block is
            copied first (about a quarter of a CPU evaluation's time).
        progress: show a bar over the user batches on stderr (desc "evaluate").

    Returns:
        {"recall@K": float, "ndcg@K": float for each K (in ``ks`` order), "users": n evaluated}.
    """
    ks = _check_args(target, exclude, ks, batch_users)
    num_items = target.num_items
    target_keys = _pair_keys(target)

    def batch_hits(users: torch.Tensor, kmax: int) -> torch.Tensor:
        scores = score_fn(users)
        if scores.shape != (users.shape[0], num_items):
            raise ValueError(
                f"score_fn returned shape {tuple(scores.shape)}, expected "
                f"{(users.shape[0], num_items)}"
            )
        scores = scores.to(torch.float32, copy=not fresh_scores)
        for g in exclude:
            rows, items = _rows_of(g, users)
            scores[rows, items] = float("-inf")
        top = top_items(scores, kmax)
        finite = torch.isfinite(scores.gather(1, top))
        return _is_target(target_keys, users, top, num_items) & finite

    return _accumulate(batch_hits, target, ks, batch_users, progress)


def _pair_keys(graph: BipartiteGraph) -> torch.Tensor:
    """int64 [E]: user * I + item of every edge, ascending (CSR order)."""
    return graph.edge_users() * graph.num_items + graph.col_item


def _is_target(
    target_keys: torch.Tensor, users: torch.Tensor, top: torch.Tensor, num_items: int
) -> torch.Tensor:
    """bool [B, k]: whether item ``top[b, r]`` is a target of ``users[b]`` (binary search of the
    target's sorted pair keys; only called for users with targets, so there is at least one)."""
    query = users.unsqueeze(1) * num_items + top
    pos = torch.searchsorted(target_keys, query).clamp_(max=target_keys.shape[0] - 1)
    return target_keys[pos] == query


def exclusion_csr(
    exclude: Sequence[BipartiteGraph], num_users: int, num_items: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(rowptr [U+1], col, longest row): one CSR of the union of the ``exclude`` graphs.

    Rows are items ascending and deduplicated (a graph's own CSR(R) when there is one graph).
    """
    if len(exclude) == 1:
        rowptr, col = exclude[0].rowptr_u, exclude[0].col_item
    elif not exclude:
        rowptr = torch.zeros(num_users + 1, dtype=torch.int64, device=device)
        col = torch.zeros(0, dtype=torch.int64, device=device)
    else:
        keys = torch.unique(torch.cat([_pair_keys(g) for g in exclude]))  # sorted
        rows, col = keys // num_items, keys % num_items
        rowptr = torch.zeros(num_users + 1, dtype=torch.int64, device=device)
        rowptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_users), 0)
    max_row = int((rowptr[1:] - rowptr[:-1]).max()) if num_users else 0
    return rowptr, col, max_row


def _fused_rank_metrics(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    target: BipartiteGraph,
    exclude: Sequence[BipartiteGraph],
    ks: Sequence[int],
    batch_users: int,
    progress: bool = False,
) -> dict:
    """``rank_metrics`` of dot-product scores through the fused Triton top-k (kernels/topk.py)."""
    from ..kernels.topk import masked_topk

    ks = _check_args(target, exclude, ks, batch_users)
    device, num_items = target.device, target.num_items
    if user_emb.device != device or item_emb.device != device:
        raise ValueError(f"embeddings on {user_emb.device}/{item_emb.device}, graphs on {device}")
    if item_emb.shape[0] != num_items or user_emb.shape[0] < target.num_users:
        raise ValueError(
            f"embeddings {tuple(user_emb.shape)} / {tuple(item_emb.shape)} do not "
            f"match the target graph {target}"
        )
    rowptr, col, max_row = exclusion_csr(exclude, target.num_users, num_items, device)
    target_keys = _pair_keys(target)

    def batch_hits(users: torch.Tensor, kmax: int) -> torch.Tensor:
        top, values = masked_topk(user_emb, item_emb, users, rowptr, col, kmax, max_row=max_row)
        return _is_target(target_keys, users, top, num_items) & torch.isfinite(values)

    return _accumulate(batch_hits, target, ks, batch_users, progress)


def _use_fused(device: torch.device, backend: str | None, kmax: int, dtype: torch.dtype) -> bool:
    """Whether evaluation takes the fused Triton top-k (see the module docstring)."""
    name, source = requested_backend(backend)
    if (name is not None and name != "triton") or (name is None and device.type != "cuda"):
        return False
    why = availability(device)["triton"]
    if why is not None:
        if name == "triton":
            raise BackendUnavailable(unavailable_message(name, source, device, why))
        return False
    from ..kernels.topk import MAX_K

    return kmax <= MAX_K and dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@torch.no_grad()
def evaluate_embeddings(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    target: BipartiteGraph,
    exclude: Sequence[BipartiteGraph] = (),
    ks: Sequence[int] = DEFAULT_KS,
    batch_users: int = 512,
    *,
    backend: str | None = None,
    progress: bool = False,
) -> dict:
    """``rank_metrics`` for dot-product scores ``user_emb [U, d] @ item_emb [I, d]^T``.

    ``backend``: "triton" forces the fused top-k, another backend name the torch path; None
    follows FASTGCN_BACKEND, else fused on CUDA when triton is available (module docstring).
    ``progress``: a bar over the user batches on stderr.
    """
    kmax = min(max(int(k) for k in ks), target.num_items) if len(ks) else 0
    if kmax > 0 and _use_fused(user_emb.device, backend, kmax, user_emb.dtype):
        return _fused_rank_metrics(user_emb, item_emb, target, exclude, ks, batch_users, progress)
    item_t = item_emb.t().contiguous()
    return rank_metrics(
        lambda users: user_emb[users] @ item_t,
        target,
        exclude,
        ks,
        batch_users,
        fresh_scores=True,
        progress=progress,
    )


@torch.no_grad()
def evaluate_model(
    model,
    graph: BipartiteGraph,
    target: BipartiteGraph,
    exclude: Sequence[BipartiteGraph],
    ks: Sequence[int] = DEFAULT_KS,
    batch_users: int = 512,
    *,
    backend: str | None = None,
    progress: bool = False,
) -> dict:
    """Evaluate ``model`` (switched to eval mode for the call) propagating on ``graph``.

    ``backend`` selects the top-k implementation and ``progress`` shows a bar
    (``evaluate_embeddings``).
    """
    was_training = model.training
    model.eval()
    try:
        user_emb, item_emb = model(graph)
    finally:
        model.train(was_training)
    return evaluate_embeddings(
        user_emb, item_emb, target, exclude, ks, batch_users, backend=backend, progress=progress
    )


def most_popular(graph: BipartiteGraph) -> torch.Tensor:
    """float32 [I]: item popularity (training degree), the same score for every user."""
    return graph.deg_i.to(torch.float32)


def evaluate_most_popular(
    train: BipartiteGraph,
    target: BipartiteGraph,
    exclude: Sequence[BipartiteGraph] | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    batch_users: int = 512,
) -> dict:
    """``rank_metrics`` of the most-popular baseline (popularity counted on ``train``).

    ``exclude`` defaults to ``[train]``.
    """
    pop = most_popular(train)
    return rank_metrics(
        lambda users: pop.expand(users.shape[0], -1),
        target,
        [train] if exclude is None else exclude,
        ks,
        batch_users,
    )
