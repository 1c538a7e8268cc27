"""Soft denoising: fixed per-interaction weights in the propagation (and the loss) of a backbone.

The plug-in ``edge-weights`` reads one weight w_ui >= 0 per training pair from the data
(``InteractionData.train_weight``, e.g. a detector's keep scores as ``denoise --action weight``
writes them) and propagates over the weighted, renormalised adjacency

    Â_w = D_w^-1/2 (A ⊙ W) D_w^-1/2,   (D_w)_vv = sum of the weights of v's pairs,

in every layer, at training and at evaluation (``masked_spmm(..., edge_weight=w)``; a plain
LightGCN keeps its fused ``ops.propagation_rows`` step). A pair of weight 0 is gone from the
graph, and weights that are all equal give plain LightGCN back. With ``reweight_loss`` each BPR
triple (u, i, j) also counts w_ui:

    L_bpr = sum_b w_(u_b, i_b) softplus(s_(u_b, j_b) - s_(u_b, i_b)) / sum_b w_(u_b, i_b)

(a noisy positive is then pulled less; a plain LightGCN keeps its fused step here too, the
term reading the batch's rows it already read out).

Why weights and not a cut: a cut takes real pairs along with the noise (at 10 % uniform noise on
the built-in data the lowest 10 % of each user's pairs is about half noise); weights by each
pair's rank among its user's pairs keep every pair in the graph with its share of the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import option
from ..models.base import Plugin
from ..models.registry import register_plugin
from .masks import edge_ids


@dataclass
class EdgeWeightsConfig:
    reweight_loss: bool = option(
        False,
        "edge-weights: weigh the BPR loss too",
    )


class EdgeWeights(Plugin):
    """Fixed edge weights ``weight`` [E] (the training graph's edge-id order, >= 0, not all 0)
    in every propagation, and with ``loss`` in the BPR term (module docstring)."""

    def __init__(self, weight: torch.Tensor, loss: bool = False):
        super().__init__()
        weight = torch.as_tensor(weight).detach()
        if weight.ndim != 1 or not weight.is_floating_point():
            raise ValueError(
                f"edge-weights: weights must be a float [E] vector, got {weight.shape}"
            )
        if not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
            raise ValueError("edge-weights: weights must be finite and >= 0")
        if weight.numel() and not bool((weight > 0).any()):
            raise ValueError("edge-weights: every weight is 0 (the graph would be empty)")
        self.register_buffer("weight", weight.to(torch.float32))
        self.loss = bool(loss)

    def _weights_for(self, graph) -> torch.Tensor:
        if graph.num_edges != self.weight.shape[0]:
            raise ValueError(
                f"edge-weights holds {self.weight.shape[0]} weights (the training graph's edges) "
                f"but this graph has {graph.num_edges} edges"
            )
        return self.weight

    def layer_kwargs(self, layer, graph, batch):
        return {"edge_weight": self._weights_for(graph)}

    def propagation_rows_args(self, graph, num_layers: int) -> dict | None:
        """The weights as ``ops.propagation_rows``' ``edge_weight`` (the loss weighting reads
        the batch's rows through ``batch_readout`` alone, so it keeps the fused step too)."""
        return {"edge_weight": self._weights_for(graph)}

    def extra_loss(self, model, graph, layers, batch):
        if not self.loss or not self.training or batch is None:
            return {}
        users, pos, neg = batch
        u, it = model.batch_readout(layers, batch)  # the rows the backbone's BPR read (memo)
        terms = F.softplus((u * it[pos.shape[0] :]).sum(-1) - (u * it[: pos.shape[0]]).sum(-1))
        w = self._weights_for(graph)[edge_ids(graph, users, pos)].to(terms.dtype)
        weighted = (w * terms).sum() / w.sum().clamp_min(torch.finfo(terms.dtype).tiny)
        return {"reweight": weighted - terms.mean()}  # replaces the backbone's own BPR mean


@register_plugin(
    "edge-weights",
    config=EdgeWeightsConfig,
    summary="the data's pair weights (denoise --action weight) in the propagation",
)
def build_edge_weights(cfg: EdgeWeightsConfig, model, ctx) -> EdgeWeights:
    weight = ctx.data.weight_per_edge(ctx.train)
    if weight is None:
        raise ValueError(
            "--edge-weights: the data has no per-interaction weights (train_weight); "
            "write them with `fastgcn-denoise denoise --action weight` (its retrain's data.npz) "
            "or save_npz(data with train_weight)"
        )
    return EdgeWeights(torch.from_numpy(weight), cfg.reweight_loss)
