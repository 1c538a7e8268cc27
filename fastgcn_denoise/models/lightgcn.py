"""LightGCN (He et al., SIGIR'20) on the masked propagation op.

    E^(0) = ego embeddings,  E^(k+1) = D^-1/2 A D^-1/2 E^(k)   (no self-loops, no weights, no
    non-linearity),  final = mean(E^(0), ..., E^(K)),  score(u, i) = <final_u, final_i>.

Each layer is one ``masked_spmm`` call (``GraphRecommender.propagate``), so masks, edge weights
and plug-ins apply per layer. A plain LightGCN's training loss (no mask, no plug-in but DGR's GMP) instead runs
``ops.propagation_rows``: the same propagation as one product per layer over the cached
normalised adjacency, read out at the batch's rows only, with one hand-written backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..ops import propagation_rows
from .base import Batch, GraphRecommender, _bpr_terms
from .registry import register_model


@dataclass
class LightGCNConfig:
    dim: int = option(64, "embedding size", min=1)
    layers: int = option(3, "propagation layers", min=0)
    decay: float = option(1e-4, "L2 coefficient on the batch's layer-0 embeddings", min=0)
    init_std: float = option(
        0.1, "std of the normal initialisation of the embeddings", min=0, min_open=True
    )


class LightGCN(GraphRecommender):
    """LightGCN with ``num_layers`` propagation layers over ``dim``-dimensional embeddings.

    Init: normal(0, ``init_std`` = 0.1), as the authors' official PyTorch code does (the paper's
    TensorFlow code used Xavier); with BPR + small L2 both train to the same accuracy, and the
    normal init does not depend on the number of users/items.

    ``decay``: the BPR loss's L2 coefficient. ``backend`` forces a ``masked_spmm`` backend (None:
    dispatch by device / FASTGCN_BACKEND).
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 64,
        num_layers: int = 3,
        init_std: float = 0.1,
        decay: float = 1e-4,
        backend: str | None = None,
    ):
        super().__init__()
        if num_users <= 0 or num_items <= 0:
            raise ValueError(
                f"LightGCN needs num_users, num_items > 0, got {num_users}, {num_items}"
            )
        if dim <= 0 or num_layers < 0:
            raise ValueError(
                f"LightGCN needs dim > 0 and num_layers >= 0, got dim={dim}, "
                f"num_layers={num_layers}"
            )
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.dim, self.num_layers = int(dim), int(num_layers)
        self.decay, self.backend = float(decay), backend
        self.user_emb = nn.Parameter(torch.empty(num_users, dim))
        self.item_emb = nn.Parameter(torch.empty(num_items, dim))
        nn.init.normal_(self.user_emb, std=init_std)
        nn.init.normal_(self.item_emb, std=init_std)

    @staticmethod
    def readout(layers):
        """Mean over layers 0..K (LightGCN's uniform alpha_k = 1 / (K + 1)).

        A running sum divided once: the same values as ``torch.stack(xs).mean(0)`` bit for bit,
        without the stacked copy and its strided reduction (5x faster on Gowalla's full tables,
        2x forward + backward on a batch's rows; 1 thread).
        """

        def mean(xs):
            total = xs[0]
            for k, x in enumerate(xs[1:]):
                # in place after the first sum (a fresh [n, d] buffer per add was a page-faulting
                # allocation per layer on full tables)
                total = total + x if k == 0 else total.add_(x)
            return total / len(xs)

        return mean([u for u, _ in layers]), mean([i for _, i in layers])

    def loss(self, graph, batch: Batch, mask_spec=None) -> dict:
        """``GraphRecommender.loss``; for a plain LightGCN (this class, no mask, no plug-in or one
        with ``propagation_rows_args``, e.g. DGR's GMP without LEC or the edge weights, in the
        loss too) on ``ops.propagation_rows``:
        the same terms up to float rounding (tests/test_propagation_rows.py, tests/test_dgr.py),
        1.3-1.5x faster a step on Gowalla at 1 thread (the layer products on the cached
        operator, one backward buffer; bench/speed.py lightgcn_epoch)."""
        # Under torch.compile the registered ops trace into one graph; the fast path's cached
        # operator (built from host-side checks) would break it, so the compiled loss keeps them.
        plugin_args = [p.propagation_rows_args(graph, self.num_layers) for p in self.plugins]
        if (
            len(plugin_args) > 1
            or None in plugin_args
            or mask_spec is not None
            or type(self) is not LightGCN
            or torch.compiler.is_compiling()
        ):
            return super().loss(graph, batch, mask_spec)
        self._check_graph(graph)
        users, pos, neg = batch
        b = users.shape[0]
        rows = torch.cat([users, pos + self.num_users, neg + self.num_users])
        mean, ego = propagation_rows(
            graph,
            self.user_emb,
            self.item_emb,
            rows,
            self.num_layers,
            self.backend,
            **(plugin_args[0] if plugin_args else {}),
        )
        terms = _bpr_terms(mean[:b], mean[b : 2 * b], mean[2 * b :], ego.pow(2).sum(), self.decay)
        if not self.plugins:
            return terms
        # the plug-ins' terms read the batch's rows through batch_readout, whose memo holds this
        # step's; a token stands for the layers, which the fused step never forms
        token = object()
        self._rows = (token, batch, (mean[:b], mean[b:]))
        try:
            return self.add_plugin_terms(terms, graph, token, batch)
        finally:
            self._rows = None


@register_model(
    "lightgcn",
    config=LightGCNConfig,
    summary="LightGCN (He et al., SIGIR'20): mean of normalised propagations",
)
def build_lightgcn(cfg: LightGCNConfig, ctx) -> LightGCN:
    return LightGCN(
        ctx.num_users,
        ctx.num_items,
        dim=cfg.dim,
        num_layers=cfg.layers,
        init_std=cfg.init_std,
        decay=cfg.decay,
    )
