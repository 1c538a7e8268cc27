"""NGCF (Wang et al., SIGIR'19) on the masked propagation op.

    side = L E^(l),  L = D^-1/2 A D^-1/2   (one ``masked_spmm`` per layer, no self-loops)
    E^(l+1) = dropout(LeakyReLU_0.2( (side + E^(l)) W1 + b1 + (side ⊙ E^(l)) W2 + b2 ))
    readout = concat(E^(0), normalize(E^(1)), ..., normalize(E^(L)))   (row-wise L2 normalisation)

Choices (the paper's formula where the official code differs, stated here):
- (L + I) E W1 is computed as (L E + E) W1: the identity is added *after* the normalisation, as in
  the paper, not as a self-loop inside D (that would be GCN's normalisation).
- One LeakyReLU over the sum of both terms (the paper's equation); the official code applies it to
  each term separately.
- Message dropout on each layer's output; the dropped (unnormalised) output feeds the next layer
  and its L2-normalised copy goes to the readout; E^(0) is not normalised (as the official code).
- Node dropout drops adjacency entries: one Bernoulli(keep = 1 - p) mask per forward pass, shared
  by all layers (the official code drops the normalised adjacency once per batch). Unlike the
  official code, which rescales the kept entries by 1 / keep with the *full-graph* degrees, the
  degrees are recomputed on the kept graph (``masked_spmm``'s renormalisation), so the operator
  stays a normalised adjacency whatever is dropped; this is the same treatment SGCN's learned
  masks get and needs no extra per-edge tensor.
- A ``mask_spec`` (S-NGCF) replaces node dropout for the pass it is given to.
- Init: Xavier-uniform for embeddings and weights, zero biases (the official code's choice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from .base import GraphRecommender
from .registry import register_model


@dataclass
class NGCFConfig:
    dim: int = option(64, "embedding size (and the width of every layer)", min=1)
    layers: int = option(3, "propagation layers", min=1)
    decay: float = option(1e-4, "L2 coefficient on the batch's layer-0 embeddings", min=0)
    mess_dropout: float = option(0.1, "NGCF: message dropout", min=0, max=1, max_open=True)
    node_dropout: float = option(0.0, "NGCF: node (edge) dropout", min=0, max=1, max_open=True)


class NGCF(GraphRecommender):
    # forward/loss from GraphRecommender; the readout width is D = dim + sum(layer_dims).
    """NGCF with ``len(layer_dims)`` layers; layer l maps ``dims[l] -> layer_dims[l]``.

    The readout (used for scoring) has ``dim + sum(layer_dims)`` columns.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 64,
        layer_dims=(64, 64, 64),
        mess_dropout: float = 0.1,
        node_dropout: float = 0.0,
        decay: float = 1e-4,
        backend: str | None = None,
    ):
        super().__init__()
        if num_users <= 0 or num_items <= 0:
            raise ValueError(f"NGCF needs num_users, num_items > 0, got {num_users}, {num_items}")
        layer_dims = tuple(int(d) for d in layer_dims)
        if dim <= 0 or any(d <= 0 for d in layer_dims):
            raise ValueError(f"NGCF needs positive sizes, got dim={dim}, layer_dims={layer_dims}")
        for name, p in (("mess_dropout", mess_dropout), ("node_dropout", node_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"NGCF {name} must be in [0, 1), got {p}")
        self.num_users, self.num_items, self.dim = int(num_users), int(num_items), int(dim)
        self.layer_dims = layer_dims
        self.num_layers = len(layer_dims)
        self.mess_dropout, self.node_dropout = float(mess_dropout), float(node_dropout)
        self.decay, self.backend = float(decay), backend
        self.user_emb = nn.Parameter(torch.empty(num_users, dim))
        self.item_emb = nn.Parameter(torch.empty(num_items, dim))
        nn.init.xavier_uniform_(self.user_emb)
        nn.init.xavier_uniform_(self.item_emb)
        dims = (self.dim,) + layer_dims
        self.w1 = nn.ModuleList(nn.Linear(dims[k], dims[k + 1]) for k in range(self.num_layers))
        self.w2 = nn.ModuleList(nn.Linear(dims[k], dims[k + 1]) for k in range(self.num_layers))
        for lin in (*self.w1, *self.w2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _node_dropout_spec(self, graph):
        """K copies of one bernoulli mask spec (constant logits = logit(keep)), or None."""
        if not (self.training and self.node_dropout > 0):
            return None
        keep = 1.0 - self.node_dropout
        logits = torch.full((graph.num_edges,), math.log(keep / (1.0 - keep)), device=graph.device)
        # The Philox seed comes from torch's RNG so torch.manual_seed makes runs reproducible.
        seed = int(torch.randint(0, 2**62, (1,)).item())
        spec = {"logits": logits, "mode": "bernoulli", "seed": seed, "offset": 0}
        return [spec] * self.num_layers

    def transform(self, layer, x_user, x_item, side_user, side_item):
        """NGCF's dense part of a layer; returns the (dropped-out, unnormalised) outputs."""
        outs = []
        for x, side in ((x_user, side_user), (x_item, side_item)):
            h = F.leaky_relu(self.w1[layer](side + x) + self.w2[layer](side * x), 0.2)
            outs.append(F.dropout(h, self.mess_dropout, self.training))
        return tuple(outs)

    def layer_outputs(self, graph, batch=None, mask_spec=None):
        """[(E_user^(l), E_item^(l)) for l = 0..L], unnormalised; node dropout in training unless
        a ``mask_spec`` is given."""
        if mask_spec is None:
            mask_spec = self._node_dropout_spec(graph)
        return super().layer_outputs(graph, batch, mask_spec)

    @staticmethod
    def readout(layers):
        """Concatenate E^(0) and the L2-normalised E^(1..L): [U, dim + sum(layer_dims)]."""
        (u0, i0), rest = layers[0], layers[1:]
        users = torch.cat([u0] + [F.normalize(u, dim=1) for u, _ in rest], dim=1)
        items = torch.cat([i0] + [F.normalize(i, dim=1) for _, i in rest], dim=1)
        return users, items


@register_model(
    "ngcf",
    config=NGCFConfig,
    summary="NGCF (Wang et al., SIGIR'19): transformed propagations, concatenated",
)
def build_ngcf(cfg: NGCFConfig, ctx) -> NGCF:
    return NGCF(
        ctx.num_users,
        ctx.num_items,
        dim=cfg.dim,
        layer_dims=(cfg.dim,) * cfg.layers,
        mess_dropout=cfg.mess_dropout,
        node_dropout=cfg.node_dropout,
        decay=cfg.decay,
    )
