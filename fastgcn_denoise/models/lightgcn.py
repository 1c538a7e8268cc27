"""LightGCN (He et al., SIGIR'20) on the masked propagation op, and the BPR loss of all models.

    E^(0) = ego embeddings,  E^(k+1) = D^-1/2 A D^-1/2 E^(k)   (no self-loops, no weights, no
    non-linearity),  final = mean(E^(0), ..., E^(K)),  score(u, i) = <final_u, final_i>.

Each layer is one ``masked_spmm`` call, so a mask (SGCN) plugs in per layer through ``mask_spec``
and a subclass can drive the layers itself (``propagate`` / ``layer_outputs`` / ``readout``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import masked_spmm


def _bpr_terms(u, p, n, ego_sq, decay: float):
    """(total, bpr, reg) from the triples' final rows u, p, n [B, D] and their ego squared norm."""
    bpr = F.softplus((u * n).sum(-1) - (u * p).sum(-1)).mean()
    reg = decay * ego_sq / (2 * u.shape[0])
    return bpr + reg, bpr, reg


def bpr_loss(user_emb, item_emb, ego_user, ego_item, users, pos, neg, decay: float):
    """BPR loss with L2 on the batch's ego (layer-0) embeddings, as the LightGCN/NGCF official code.

    Args:
        user_emb [U, d'], item_emb [I, d']: final (propagated) embeddings used for scoring.
        ego_user [U, d], ego_item [I, d]: the trainable layer-0 embeddings (regularised).
        users, pos, neg [B] int64: BPR triples.
        decay: L2 coefficient (LightGCN's ``decay``, default 1e-4 in training).

    Returns:
        (total, bpr, reg), scalars: bpr = mean softplus(s_neg - s_pos)
        (= -mean log sigmoid(s_pos - s_neg));
        reg = decay * (|e_u|^2 + |e_pos|^2 + |e_neg|^2) / (2 B); total = bpr + reg.
    """
    sq = ego_user[users].pow(2).sum() + ego_item[pos].pow(2).sum() + ego_item[neg].pow(2).sum()
    return _bpr_terms(user_emb[users], item_emb[pos], item_emb[neg], sq, decay)


class GraphRecommender(nn.Module):
    """Base of the GCN recommenders: ``layer_outputs`` (per layer, so SGCN can drive the layers),
    ``readout``, and the BPR loss on the ego embeddings ``user_emb`` / ``item_emb``.

    A layer is ``propagate`` = ``masked_spmm`` (the graph part, where masks apply) followed by
    the model's ``transform(layer, x_user, x_item, side_user, side_item)`` (the dense part).
    """

    def propagate(self, graph, x_user, x_item, layer: int, mask_spec=None):
        """One layer on both sides: the masked normalised product, then ``transform``."""
        spec = mask_spec[layer] if mask_spec is not None else {}
        side_user, side_item = masked_spmm(graph, x_user, x_item, backend=self.backend, **spec)
        return self.transform(layer, x_user, x_item, side_user, side_item)

    def forward(self, graph, mask_spec=None):
        """(user_emb [U, D], item_emb [I, D]); ``mask_spec``: None or K dicts of masked_spmm kwargs
        (``logits``, ``mode``, ``seed``, ``offset``, ``edge_weight``), one per layer."""
        return self.readout(self.layer_outputs(graph, mask_spec))

    def loss(self, graph, users, pos, neg, decay: float = 1e-4, mask_spec=None):
        """(total, bpr, reg) for a batch of BPR triples; see ``bpr_loss``."""
        return self.batch_loss(self.layer_outputs(graph, mask_spec), users, pos, neg, decay)

    def batch_loss(self, layers, users, pos, neg, decay: float):
        """``bpr_loss`` from ``layer_outputs``, reading out only the batch's rows.

        The readouts are row-wise, so gathering the triples' rows first gives the same values
        while the full [U + I, D] readout (and its backward) is never formed: a few thousand
        rows per step instead of every node (it was a fifth of a Gowalla step's time).
        """
        items = torch.cat([pos, neg])
        u, it = self.readout([(x_u[users], x_i[items]) for x_u, x_i in layers])
        ego_sq = layers[0][0][users].pow(2).sum() + layers[0][1][items].pow(2).sum()
        return _bpr_terms(u, it[:pos.shape[0]], it[pos.shape[0]:], ego_sq, decay)


class LightGCN(GraphRecommender):
    """LightGCN with ``num_layers`` propagation layers over ``dim``-dimensional embeddings.

    Init: normal(0, ``init_std`` = 0.1), as the authors' official PyTorch code does (the paper's
    TensorFlow code used Xavier); with BPR + small L2 both train to the same accuracy, and the
    normal init does not depend on the number of users/items.

    ``backend`` forces a ``masked_spmm`` backend (None: dispatch by device / FASTGCN_BACKEND).
    """

    def __init__(self, num_users: int, num_items: int, dim: int = 64, num_layers: int = 3,
                 init_std: float = 0.1, backend: str | None = None):
        super().__init__()
        if num_users <= 0 or num_items <= 0:
            raise ValueError(
                f"LightGCN needs num_users, num_items > 0, got {num_users}, {num_items}")
        if dim <= 0 or num_layers < 0:
            raise ValueError(f"LightGCN needs dim > 0 and num_layers >= 0, got dim={dim}, "
                             f"num_layers={num_layers}")
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.dim, self.num_layers = int(dim), int(num_layers)
        self.backend = backend
        self.user_emb = nn.Parameter(torch.empty(num_users, dim))
        self.item_emb = nn.Parameter(torch.empty(num_items, dim))
        nn.init.normal_(self.user_emb, std=init_std)
        nn.init.normal_(self.item_emb, std=init_std)

    def _check_spec(self, graph, mask_spec):
        if graph.num_users != self.num_users or graph.num_items != self.num_items:
            raise ValueError(f"graph has {graph.num_users} users x {graph.num_items} items but the "
                             f"model was built for {self.num_users} x {self.num_items}")
        if mask_spec is not None and len(mask_spec) != self.num_layers:
            raise ValueError(f"mask_spec has {len(mask_spec)} entries; the model has "
                             f"{self.num_layers} layers (one dict of masked_spmm kwargs per layer)")

    @staticmethod
    def transform(layer, x_user, x_item, side_user, side_item):
        """LightGCN has no transform: a layer's output is the normalised product itself."""
        return side_user, side_item

    def layer_outputs(self, graph, mask_spec=None):
        """[(E_user^(k) [U, d], E_item^(k) [I, d]) for k = 0..K]."""
        self._check_spec(graph, mask_spec)
        outs = [(self.user_emb, self.item_emb)]
        for k in range(self.num_layers):
            outs.append(self.propagate(graph, *outs[-1], k, mask_spec))
        return outs

    @staticmethod
    def readout(layers):
        """Mean over layers 0..K (LightGCN's uniform alpha_k = 1 / (K + 1))."""
        users = torch.stack([u for u, _ in layers]).mean(0)
        items = torch.stack([i for _, i in layers]).mean(0)
        return users, items

    def hparams(self) -> dict:
        """Constructor arguments (saved in checkpoints to rebuild the model)."""
        return {"num_users": self.num_users, "num_items": self.num_items, "dim": self.dim,
                "num_layers": self.num_layers}
