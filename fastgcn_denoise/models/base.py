"""What every graph recommender shares: the BPR batch, the loss, plug-ins and their seams.

A ``GraphRecommender`` is a stack of layers, each ``propagate`` = ``masked_spmm`` (the graph part,
where masks and edge weights apply) followed by the model's ``transform`` (the dense part), then a
``readout`` of the layer outputs; scores are dot products of the readouts. Plug-ins change a
backbone through three seams, the same for every backbone:

    layer_kwargs(layer, graph, batch)            extra masked_spmm kwargs for that layer
                                                 (mask logits/mode, edge weights, holdout)
    after_layer(layer, graph, x_user, x_item)    rewrite a layer's output (DGR's desmoothing)
    extra_loss(model, graph, layers, batch)      named loss terms added to the total (L0, LEC)

(and, for a plug-in whose seams amount to ``ops.propagation_rows`` options, such as DGR's GMP,
``propagation_rows_args``: a plain LightGCN's step then keeps its fast path)
and denoisers report ``keep_scores(graph)``: one score per training interaction ([E] or [K, E],
edge-id order, higher = keep), which ``denoise`` exports and the noise benchmark judges.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import masked_spmm


class Batch(NamedTuple):
    """BPR triples: int64 [B] each, on the graph's device."""

    users: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor


def _bpr_terms(u, p, n, ego_sq, decay: float) -> dict:
    """{loss, bpr, reg} from the triples' final rows u, p, n [B, D] and their ego squared norm."""
    bpr = F.softplus((u * n).sum(-1) - (u * p).sum(-1)).mean()
    reg = decay * ego_sq / (2 * u.shape[0])
    return {"loss": bpr + reg, "bpr": bpr, "reg": reg}


def bpr_loss(user_emb, item_emb, ego_user, ego_item, batch: Batch, decay: float) -> dict:
    """BPR loss with L2 on the batch's ego (layer-0) embeddings, as the LightGCN/NGCF official code.

    Args:
        user_emb [U, d'], item_emb [I, d']: final (propagated) embeddings used for scoring.
        ego_user [U, d], ego_item [I, d]: the trainable layer-0 embeddings (regularised).
        batch: the BPR triples.
        decay: L2 coefficient (LightGCN's ``decay``).

    Returns:
        {"loss": bpr + reg, "bpr": mean softplus(s_neg - s_pos) (= -mean log sigmoid(s_pos -
        s_neg)), "reg": decay * (|e_u|^2 + |e_pos|^2 + |e_neg|^2) / (2 B)}, scalars.
    """
    users, pos, neg = batch
    sq = ego_user[users].pow(2).sum() + ego_item[pos].pow(2).sum() + ego_item[neg].pow(2).sum()
    return _bpr_terms(user_emb[users], item_emb[pos], item_emb[neg], sq, decay)


class Plugin(nn.Module):
    """A change to a ``GraphRecommender`` through its seams (module docstring); override what
    applies. Its parameters train with the model's (they are registered under ``plugins``)."""

    def layer_kwargs(self, layer: int, graph, batch: Batch | None) -> dict:
        return {}

    def after_layer(self, layer: int, graph, x_user, x_item):
        return x_user, x_item

    def extra_loss(self, model, graph, layers, batch: Batch) -> dict:
        return {}

    def keep_scores(self, graph):
        return None

    def propagation_rows_args(self, graph, num_layers: int) -> dict | None:
        """What the plug-in does to a plain LightGCN, as ``ops.propagation_rows`` keyword
        arguments (``self_loop``, ``gmp``, ``edge_weight``), when its seams amount to them and
        its ``extra_loss`` reads the layers only through ``model.batch_readout`` (the fused step
        forms no layer: it passes an opaque token for them); None otherwise (the model then runs
        its layers one by one)."""
        return None


class GraphRecommender(nn.Module):
    """Base of the GCN recommenders. Subclasses set ``user_emb``, ``item_emb`` (the ego
    embeddings), ``num_users``, ``num_items``, ``num_layers``, ``decay``, ``backend``, and define
    ``layer_outputs`` and ``readout``; ``transform`` is the dense part of a layer (identity by
    default)."""

    def __init__(self):
        super().__init__()
        self.plugins = nn.ModuleList()

    def add_plugin(self, plugin: Plugin) -> None:
        self.plugins.append(plugin)

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser groups: the model's own parameters at ``lr``, then the groups of each
        plug-in that has ``param_groups(lr)`` (e.g. a mask head's learning rate); the other
        plug-ins' parameters train at ``lr``."""
        own = list(self.parameters())
        groups = []
        for plugin in self.plugins:
            if hasattr(plugin, "param_groups"):
                groups += plugin.param_groups(lr)
        taken = {id(p) for g in groups for p in g["params"]}
        return [{"params": [p for p in own if id(p) not in taken], "lr": lr}] + groups

    @staticmethod
    def transform(layer, x_user, x_item, side_user, side_item):
        return side_user, side_item

    def _check_graph(self, graph, mask_spec=None):
        if graph.num_users != self.num_users or graph.num_items != self.num_items:
            raise ValueError(
                f"graph has {graph.num_users} users x {graph.num_items} items but the "
                f"model was built for {self.num_users} x {self.num_items}"
            )
        if mask_spec is not None and len(mask_spec) != self.num_layers:
            raise ValueError(
                f"mask_spec has {len(mask_spec)} entries; the model has "
                f"{self.num_layers} layers (one dict of masked_spmm kwargs per layer)"
            )

    def layer_kwargs(self, layer: int, graph, batch=None, mask_spec=None) -> dict:
        """The masked_spmm kwargs of ``layer``: the explicit ``mask_spec[layer]`` and every
        plug-in's; two sources setting the same kwarg is an error."""
        kwargs = dict(mask_spec[layer]) if mask_spec is not None else {}
        for p in self.plugins:
            for key, value in p.layer_kwargs(layer, graph, batch).items():
                if key in kwargs:
                    raise ValueError(
                        f"layer {layer}: masked_spmm argument {key!r} is set twice "
                        f"(by {type(p).__name__} and another mask source)"
                    )
                kwargs[key] = value
        return kwargs

    def propagate(self, graph, x_user, x_item, layer: int, batch=None, mask_spec=None):
        """One layer on both sides: the masked normalised product, ``transform``, then the
        plug-ins' ``after_layer``."""
        side_user, side_item = masked_spmm(
            graph,
            x_user,
            x_item,
            backend=self.backend,
            **self.layer_kwargs(layer, graph, batch, mask_spec),
        )
        out = self.transform(layer, x_user, x_item, side_user, side_item)
        for p in self.plugins:
            out = p.after_layer(layer, graph, *out)
        return out

    def layer_outputs(self, graph, batch=None, mask_spec=None):
        """[(E_user^(k), E_item^(k)) for k = 0..K]: the ego embeddings, then ``propagate`` per
        layer. ``batch``: the training step's triples (None at evaluation); ``mask_spec``: None
        or one dict of masked_spmm kwargs per layer (``logits``, ``mode``, ``seed``, ...)."""
        self._check_graph(graph, mask_spec)
        outs = [(self.user_emb, self.item_emb)]
        for k in range(self.num_layers):
            outs.append(self.propagate(graph, *outs[-1], k, batch, mask_spec))
        return outs

    def forward(self, graph, mask_spec=None):
        """(user_emb [U, D], item_emb [I, D]) for scoring (D: the readout width)."""
        return self.readout(self.layer_outputs(graph, None, mask_spec))

    def loss(self, graph, batch: Batch, mask_spec=None) -> dict:
        """{"loss": the total to minimise, "bpr", "reg", and every plug-in's named terms}."""
        layers = self.layer_outputs(graph, batch, mask_spec)
        self._rows = (layers, batch, None)  # batch_readout's memo, for this call only
        try:
            return self.add_plugin_terms(
                self.batch_loss(layers, batch, self.decay), graph, layers, batch
            )
        finally:
            self._rows = None  # the memo must not keep the step's layers alive

    def add_plugin_terms(self, terms: dict, graph, layers, batch: Batch) -> dict:
        """``terms`` with every plug-in's ``extra_loss`` terms added (and to "loss")."""
        for p in self.plugins:
            for name, value in p.extra_loss(self, graph, layers, batch).items():
                if name in terms:
                    raise ValueError(f"loss term {name!r} is reported twice")
                terms[name] = value
                terms["loss"] = terms["loss"] + value
        return terms

    def batch_readout(self, layers, batch: Batch):
        """(readout at batch.users [B, D], at cat(pos, neg) [2B, D]) from ``layer_outputs``.

        The readouts are row-wise, so gathering the triples' rows first gives the same values
        while the full [U + I, D] readout (and its backward) is never formed. Inside ``loss`` it
        is computed once for ``batch_loss`` and the plug-ins' ``extra_loss``: every further
        gather of a layer's rows is another zero-filled [U, d] / [I, d] gradient in backward.
        """
        memo = getattr(self, "_rows", None)
        mine = memo is not None and memo[0] is layers and memo[1] is batch
        if mine and memo[2] is not None:
            return memo[2]
        users, pos, neg = batch
        items = torch.cat([pos, neg])
        # index_select, not x[rows]: advanced indexing was 10x slower for these gathers
        out = self.readout(
            [(x_u.index_select(0, users), x_i.index_select(0, items)) for x_u, x_i in layers]
        )
        if mine:
            self._rows = (layers, batch, out)
        return out

    def batch_loss(self, layers, batch: Batch, decay: float) -> dict:
        """``bpr_loss`` from ``layer_outputs``, reading out only the batch's rows
        (``batch_readout``: a few thousand rows per step instead of every node; the full readout
        was a fifth of a Gowalla step's time)."""
        users, pos, neg = batch
        u, it = self.batch_readout(layers, batch)
        items = torch.cat([pos, neg])
        ego_sq = (
            layers[0][0].index_select(0, users).pow(2).sum()
            + layers[0][1].index_select(0, items).pow(2).sum()
        )
        return _bpr_terms(u, it[: pos.shape[0]], it[pos.shape[0] :], ego_sq, decay)

    def keep_scores(self, graph):
        """The first plug-in's keep scores ([E] or [K, E], higher = keep), or None."""
        for p in self.plugins:
            scores = p.keep_scores(graph)
            if scores is not None:
                return scores
        return None
