"""Full-ranking top-k evaluation (``fastgcn_denoise.tasks.evaluation``) against a plain PyTorch top-k loop.

Random embeddings (the cost does not depend on the values). The first ``n`` users are ranked
against every item with their training items (the graph's) masked out, ``n`` chosen so that
n x items stays within a score budget (1e8 on CPU, 5e8 on CUDA, 1e6 with --quick); each has a
target of 10 random items. Per batch of users, in every case:
  torch.topk loop        scores = U[b] @ I^T, train items set to -inf with index_put_,
                         torch.topk(100): the peer;
  eval.top_items loop    the same with ``eval.top_items`` (exact order, ties to the lower item id);
  evaluate_embeddings    the library's full evaluation: the same ranking plus Recall/NDCG@20,50,100
                         (more work than the peer: its ratio is a lower bound).

Bytes model (the same for all three: the unfused traffic): per batch the item table is read once
(4 d I B), and the score matrix is written by the product and read by the top-k (2 x 4 n I B in
all). Where ``evaluate_embeddings`` dispatches to the fused top-k kernel (CUDA), which never
writes the scores, its GB/s is an effective figure.

Run: python -m bench --ops eval [--device cpu|cuda] [--graphs gowalla] [--dims 64]
"""

from __future__ import annotations

import numpy as np
import torch

from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.tasks.evaluation import evaluate_embeddings, top_items

from ..common import Bench

KS = (20, 50, 100)
TARGET_ITEMS = 10


def ranking_bytes(n_users: int, num_items: int, d: int, batch: int) -> int:
    """The bytes model above."""
    return 4 * d * num_items * -(-n_users // batch) + 8 * n_users * num_items


def ranking_loop(user, item, train, n_users: int, batch: int, select):
    """Top max(KS) items of users [0, n_users), train items masked; ``select(scores, k)``."""
    item_t = item.t().contiguous()
    rowptr = train.rowptr_u.cpu()
    edge_users = train.edge_users()
    minus_inf = torch.tensor(float("-inf"), device=user.device)

    def loop():
        for b0 in range(0, n_users, batch):
            b1 = min(b0 + batch, n_users)
            scores = user[b0:b1] @ item_t
            lo, hi = int(rowptr[b0]), int(rowptr[b1])
            scores.index_put_((edge_users[lo:hi] - b0, train.col_item[lo:hi]), minus_inf)
            select(scores, max(KS))

    return loop


def benches(device, graph, dims, quick: bool) -> list[Bench]:
    device = torch.device(device)
    budget = 1e6 if quick else (5e8 if device.type == "cuda" else 1e8)
    n = int(min(graph.num_users, max(1, budget // graph.num_items)))
    batch = 2048 if device.type == "cuda" else 512
    rng = np.random.default_rng(0)
    target = BipartiteGraph(
        np.repeat(np.arange(n), TARGET_ITEMS),
        rng.integers(graph.num_items, size=n * TARGET_ITEMS),
        graph.num_users,
        graph.num_items,
    ).to(device)
    info = {"users_evaluated": n, "batch_users": batch}
    out = []
    for d in dims:
        tag = f"d={d}"
        gen = torch.Generator(device=device).manual_seed(0)
        user = 0.1 * torch.randn(graph.num_users, d, device=device, generator=gen)
        item = 0.1 * torch.randn(graph.num_items, d, device=device, generator=gen)
        peer, nbytes = f"torch.topk loop {tag}", ranking_bytes(n, graph.num_items, d, batch)
        out.append(
            Bench(
                peer,
                tag,
                ranking_loop(user, item, graph, n, batch, lambda s, k: torch.topk(s, k).indices),
                bytes_moved=nbytes,
                info=info,
            )
        )
        out.append(
            Bench(
                f"eval.top_items loop {tag}",
                tag,
                ranking_loop(user, item, graph, n, batch, top_items),
                peer=peer,
                bytes_moved=nbytes,
                info=info,
            )
        )
        out.append(
            Bench(
                f"evaluate_embeddings {tag}",
                tag,
                lambda u=user, i=item: evaluate_embeddings(u, i, target, [graph], KS, batch),
                peer=peer,
                bytes_moved=nbytes,
                info=info,
            )
        )
    return out
