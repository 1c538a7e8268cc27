"""Interim: LightGCN with the plug-in seams of the model layer being refactored on main.

The working agreement's model layer ("The model layer", /work/coord/README.md) gives every
ranking backbone ``layer_outputs(graph, batch=None)``, ``readout(layers)``, ``forward(graph)`` and
``loss(graph, batch) -> dict`` (key ``"loss"`` the total, plus named terms), and lets plug-ins
change a backbone through ``layer_kwargs(layer, graph, batch)`` (extra ``masked_spmm`` kwargs),
``after_layer(layer, graph, x_user, x_item)`` and ``extra_loss(model, graph, layers, batch)``.
Until that lands, the SimGCL / XSimGCL backbones and the DGR plug-in are written against this
class; at the merge it is replaced by main's ``GraphRecommender`` and deleted.

A layer is: the propagation ``masked_spmm`` (with the plug-ins' kwargs), the plug-ins'
``after_layer`` in order, then the backbone's own ``perturb`` (SimGCL's noise; identity here).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..ops import masked_spmm, sddmm
from .lightgcn import LightGCN


class Batch(NamedTuple):
    """A BPR batch: int64 [B] each."""

    users: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor


class PluggedLightGCN(LightGCN):
    """LightGCN whose layers and loss run the plug-ins in ``self.plugins`` (module docstring)."""

    def __init__(self, *args, decay: float = 1e-4, plugins=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.decay = float(decay)  # L2 coefficient of the BPR loss (TrainConfig.decay)
        self.plugins = torch.nn.ModuleList(plugins)

    # Whether the recommendation loss runs on perturbed layers (XSimGCL: yes).
    perturbed_loss = False

    def perturb(self, layer, x_user, x_item):
        """The backbone's own perturbation of a layer's output, after the plug-ins (SimGCL's
        noise); LightGCN has none."""
        return x_user, x_item

    def layer_outputs(self, graph, batch=None, perturbed: bool = False):
        """[(E_user^(k) [U, d], E_item^(k) [I, d]) for k = 0..K]; ``perturbed``: apply
        ``perturb`` to every layer."""
        self._check_spec(graph, None)
        outs = [(self.user_emb, self.item_emb)]
        for k in range(self.num_layers):
            kwargs = {}
            for p in self.plugins:
                kwargs.update(p.layer_kwargs(k, graph, batch))
            x_user, x_item = masked_spmm(graph, *outs[-1], backend=self.backend, **kwargs)
            for p in self.plugins:
                x_user, x_item = p.after_layer(k, graph, x_user, x_item)
            outs.append(self.perturb(k, x_user, x_item) if perturbed else (x_user, x_item))
        return outs

    def readout_rows(self, layers, users, items):
        """``readout`` of the rows ``users`` [n] and ``items`` [m] only (readouts are row-wise):
        (user rows [n, D], item rows [m, D]) without forming the full readout."""
        return self.readout([(x_u[users], x_i[items]) for x_u, x_i in layers])

    def forward(self, graph):
        return self.readout(self.layer_outputs(graph))

    def backbone_loss(self, graph, layers, batch) -> dict:
        """The backbone's own terms: BPR and L2 on the batch's ego embeddings."""
        _, bpr, reg = self.batch_loss(layers, batch.users, batch.pos, batch.neg, self.decay)
        return {"bpr": bpr, "reg": reg}

    def loss(self, graph, batch) -> dict:
        """Named terms (backbone, then each plug-in's) and their sum under ``"loss"``."""
        layers = self.layer_outputs(graph, batch, perturbed=self.perturbed_loss)
        terms = self.backbone_loss(graph, layers, batch)
        for p in self.plugins:
            terms.update(p.extra_loss(self, graph, layers, batch))
        terms["loss"] = sum(terms.values())
        return terms

    @torch.no_grad()
    def keep_scores(self, graph) -> torch.Tensor:
        """[E] σ(<e_u, e_i>) of each training interaction from the final embeddings: the model's
        own belief in it (higher = keep), for the noise benchmark."""
        return torch.sigmoid(sddmm(graph, *self.forward(graph)))
