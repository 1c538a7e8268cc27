"""XSimGCL (Yu et al., TKDE'23, "Towards extremely simple graph contrastive learning").

SimGCL with one pass instead of three: during training every layer is perturbed (SimGCL's
sign-aligned noise of norm ε), the recommendation loss reads that perturbed pass out, and the
contrast is *cross-layer*: the final readout against the perturbed output of layer l*,

    loss = BPR(readout of the perturbed pass) + L2
           + λ (InfoNCE_users(readout, E^(l*)) + InfoNCE_items(readout, E^(l*)))

over the batch's distinct users and distinct positive items. Evaluation uses the clean pass.

Defaults: the authors' settings for Yelp2018 (their SELFRec library's configuration): L = 3,
l* = 1, λ = 0.2, ε = 0.2, τ = 0.15. DGR's official XSimGCL hard-codes 4 layers with l* = 3 (its
Gowalla configuration), noise in every forward pass including evaluation, and GMP
α = (0.1, 1.1, 0.1, 0.05); we keep XSimGCL's clean evaluation.
"""
from __future__ import annotations

import torch

from .simgcl import SimGCL


class XSimGCL(SimGCL):
    """XSimGCL; ``cl_layer`` is l* (1-based, 1..L); the rest as ``SimGCL``."""

    perturbed_loss = True

    def __init__(self, num_users: int, num_items: int, dim: int = 64, num_layers: int = 3,
                 cl_weight: float = 0.2, cl_temperature: float = 0.15, noise_eps: float = 0.2,
                 cl_layer: int = 1, **kwargs):
        super().__init__(num_users, num_items, dim=dim, num_layers=num_layers,
                         cl_weight=cl_weight, cl_temperature=cl_temperature,
                         noise_eps=noise_eps, **kwargs)
        if not 1 <= int(cl_layer) <= self.num_layers:
            raise ValueError(f"XSimGCL cl_layer must be in [1, num_layers = {self.num_layers}], "
                             f"got {cl_layer}")
        self.cl_layer = int(cl_layer)

    def backbone_loss(self, graph, layers, batch) -> dict:
        terms = super(SimGCL, self).backbone_loss(graph, layers, batch)  # BPR + L2 on this pass
        if self.cl_weight > 0:
            users, items = torch.unique(batch.users), torch.unique(batch.pos)
            final = self.readout_rows(layers, users, items)
            x_u, x_i = layers[self.cl_layer]
            terms["cl"] = self.contrast(final, (x_u[users], x_i[items]))
        return terms

    def hparams(self) -> dict:
        return {**super().hparams(), "cl_layer": self.cl_layer}
