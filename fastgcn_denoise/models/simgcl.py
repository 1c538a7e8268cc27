"""SimGCL (Yu et al., SIGIR'22, "Are graph augmentations necessary?") on the propagation op.

LightGCN's encoder; each layer of a *perturbed* pass adds uniform noise aligned with the
embedding's signs and of fixed L2 norm ε per row (``perturb_rows``):

    E^(l) = Ã E^(l-1) + Δ^(l),   Δ_v = ε · sign(e_v) ⊙ normalize(u_v),  u_v ~ U(0, 1)^d
    readout = mean(E^(1), ..., E^(L))                       (E^(0) left out, as SimGCL)
    loss = BPR(clean pass) + L2 + λ (InfoNCE_users(v1, v2) + InfoNCE_items(v1, v2))

v1, v2 are the readouts of two independently perturbed passes; the InfoNCE terms run over the
batch's distinct users and distinct positive items, with cosine similarity / τ (``info_nce``).
So a step is three propagation passes (one clean, two perturbed), as in the official code;
evaluation uses the clean pass.

Defaults: the authors' settings for Yelp2018 (their SELFRec library's configuration; DGR's own
SimGCL.conf has the same): L = 3, λ = 0.5, ε = 0.1, τ = 0.2; d = 64, Adam 1e-3, batch 2048.
Choices: the L2 term is the toolkit's (decay · squared norms of the batch's ego embeddings /
2B, as LightGCN here) rather than SELFRec's unsquared norms; embeddings start Xavier-uniform,
as in the official code (the noise ε is meant relative to that scale).
DGR's official SimGCL hard-codes its own variant: noise in *every* forward pass, evaluation
included (its ``perturbed`` flag is ignored) and GMP α = (0.1, 1.1, 0.1); we keep SimGCL's
clean evaluation and take α from the DGR plug-in's configuration.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._plugged import PluggedLightGCN


def perturb_rows(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x + ε · sign(x) ⊙ normalize(U(0, 1) noise) row-wise (each row moves by ≤ ε in L2)."""
    noise = F.normalize(torch.rand_like(x), dim=1)
    return x + eps * torch.sign(x) * noise


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """mean_r -log softmax_j(cos(a_r, b_j) / τ)[r] for two views a, b [n, d] of n nodes."""
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


class SimGCL(PluggedLightGCN):
    """SimGCL; ``cl_weight`` λ, ``cl_temperature`` τ, ``noise_eps`` ε (module docstring)."""

    def __init__(self, num_users: int, num_items: int, dim: int = 64, num_layers: int = 3,
                 cl_weight: float = 0.5, cl_temperature: float = 0.2, noise_eps: float = 0.1,
                 **kwargs):
        super().__init__(num_users, num_items, dim=dim, num_layers=num_layers, **kwargs)
        if self.num_layers < 1:
            raise ValueError(f"{type(self).__name__} needs num_layers >= 1 (its readout leaves out "
                             f"E^(0)), got {num_layers}")
        for name, value, ok in (("cl_weight", cl_weight, cl_weight >= 0),
                                ("cl_temperature", cl_temperature, cl_temperature > 0),
                                ("noise_eps", noise_eps, noise_eps >= 0)):
            if not (math.isfinite(value) and ok):
                raise ValueError(f"{type(self).__name__} {name} = {value} is out of range "
                                 "(cl_weight >= 0, cl_temperature > 0, noise_eps >= 0)")
        self.cl_weight, self.cl_temperature = float(cl_weight), float(cl_temperature)
        self.noise_eps = float(noise_eps)
        torch.nn.init.xavier_uniform_(self.user_emb)
        torch.nn.init.xavier_uniform_(self.item_emb)

    def perturb(self, layer, x_user, x_item):
        return perturb_rows(x_user, self.noise_eps), perturb_rows(x_item, self.noise_eps)

    @staticmethod
    def readout(layers):
        """Mean over layers 1..L (E^(0) is not part of SimGCL's readout)."""
        users = torch.stack([u for u, _ in layers[1:]]).mean(0)
        items = torch.stack([i for _, i in layers[1:]]).mean(0)
        return users, items

    def contrast(self, view_a, view_b) -> torch.Tensor:
        """λ (InfoNCE over users + InfoNCE over items) between two views, each a pair (user rows
        [n, D], item rows [m, D]) of the same nodes."""
        return self.cl_weight * (info_nce(view_a[0], view_b[0], self.cl_temperature)
                                 + info_nce(view_a[1], view_b[1], self.cl_temperature))

    def backbone_loss(self, graph, layers, batch) -> dict:
        terms = super().backbone_loss(graph, layers, batch)
        if self.cl_weight > 0:
            users, items = torch.unique(batch.users), torch.unique(batch.pos)
            views = [self.readout_rows(self.layer_outputs(graph, batch, perturbed=True), users,
                                       items) for _ in range(2)]
            terms["cl"] = self.contrast(*views)
        return terms

    def hparams(self) -> dict:
        return {**super().hparams(), "cl_weight": self.cl_weight,
                "cl_temperature": self.cl_temperature, "noise_eps": self.noise_eps}
