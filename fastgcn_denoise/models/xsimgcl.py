"""XSimGCL (Yu et al., TKDE'23, "Towards extremely simple graph contrastive learning").

SimGCL with one pass instead of three: during training every layer is perturbed (SimGCL's
sign-aligned noise of norm ε), the recommendation loss reads that perturbed pass out, and the
contrast is *cross-layer*: the final readout against the perturbed output of layer l*,

    loss = BPR(readout of the perturbed pass) + L2
           + λ (InfoNCE_users(readout, E^(l*)) + InfoNCE_items(readout, E^(l*)))

over the batch's distinct users and distinct positive items. Plug-ins see the perturbed pass
too (DGR's LEC reads out the layers the recommendation loss uses). Evaluation uses the clean
pass.

Defaults: the authors' settings for Yelp2018 (their SELFRec library's configuration): L = 3,
l* = 1, λ = 0.2, ε = 0.2, τ = 0.15. DGR's official XSimGCL hard-codes 4 layers with l* = 3 (its
Gowalla configuration), noise in every forward pass including evaluation, and GMP
α = (0.1, 1.1, 0.1, 0.05); we keep XSimGCL's clean evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import option
from .registry import register_model
from .simgcl import PerturbedLightGCN, SimGCLConfig


class XSimGCL(PerturbedLightGCN):
    """XSimGCL; ``cl_layer`` is l* (1-based, 1..L); the rest as ``SimGCL``."""

    perturb_training = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 64,
        num_layers: int = 3,
        cl_weight: float = 0.2,
        cl_temperature: float = 0.15,
        noise_eps: float = 0.2,
        cl_layer: int = 1,
        **kwargs,
    ):
        super().__init__(
            num_users,
            num_items,
            dim=dim,
            num_layers=num_layers,
            cl_weight=cl_weight,
            cl_temperature=cl_temperature,
            noise_eps=noise_eps,
            **kwargs,
        )
        if not 1 <= int(cl_layer) <= self.num_layers:
            raise ValueError(
                f"XSimGCL cl_layer must be in [1, num_layers = {self.num_layers}], got {cl_layer}"
            )
        self.cl_layer = int(cl_layer)

    def batch_loss(self, layers, batch, decay: float) -> dict:
        """BPR + L2 on the (perturbed) pass, plus "cl": its readout against layer l*."""
        terms = super().batch_loss(layers, batch, decay)
        if self.cl_weight > 0:
            users, items = torch.unique(batch.users), torch.unique(batch.pos)
            x_u, x_i = layers[self.cl_layer]
            terms["cl"] = self.contrast(
                self.readout_rows(layers, users, items), (x_u[users], x_i[items])
            )
            terms["loss"] = terms["loss"] + terms["cl"]
        return terms


@dataclass
class XSimGCLConfig(SimGCLConfig):
    """SimGCL's options with XSimGCL's published defaults, and the contrasted layer."""

    cl_weight: float = option(0.2, "lambda, weight of the contrastive (InfoNCE) term", min=0)
    cl_temperature: float = option(0.15, "tau, InfoNCE temperature", min=0, min_open=True)
    noise_eps: float = option(
        0.2, "epsilon, L2 norm of the noise added to each row per layer", min=0
    )
    cl_layer: int = option(1, "l*, the layer contrasted with the final readout (1..layers)", min=1)

    def check_rules(self):
        if self.cl_layer > self.layers:
            raise ValueError(
                f"model xsimgcl: cl_layer = {self.cl_layer} must be <= layers = {self.layers}"
            )


@register_model(
    "xsimgcl",
    config=XSimGCLConfig,
    summary="XSimGCL (Yu et al., TKDE'23): one perturbed pass, cross-layer InfoNCE",
)
def build_xsimgcl(cfg: XSimGCLConfig, ctx) -> XSimGCL:
    return XSimGCL(
        ctx.num_users,
        ctx.num_items,
        dim=cfg.dim,
        num_layers=cfg.layers,
        cl_weight=cfg.cl_weight,
        cl_temperature=cfg.cl_temperature,
        noise_eps=cfg.noise_eps,
        cl_layer=cfg.cl_layer,
        decay=cfg.decay,
    )
