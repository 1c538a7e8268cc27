"""DGR (Ding et al., IJCAI'24): desmoothing for any GCN recommender, as a plug-in.

Two parts, each through one seam of the backbone (``_plugged.PluggedLightGCN``'s seams):

GMP, global desmoothing message passing (``after_layer``, plus ``layer_kwargs`` for the graph):
    Ê = Ã E^(l-1)   (the backbone's propagation)
    m = √d̂ (√d̂ᵀ Ê) / Z          rank one: a column-weighted reduction s = √d̂ᵀ Ê [d] and an
                                 outer product; users and items together (all U + I nodes)
    E^(l) = (1 + α_l) Ê − α_l m   (paper Eq. 9), one α per layer
  With self-loops and Z = Σ_v d̂_v = 2|E| + U + I (the paper's Eq. 2 and 6), m is the projection
  of Ê onto Ã's eigenvector √d̂ of eigenvalue 1 (the over-smoothing point Ã^∞ Ê), and GMP scales
  everything orthogonal to it by (1 + α): E^(l) = (1 + α)(Ê − m) + m.
  The official code differs (research/official_code.md §3.2): no self-loops, d̂ = d, and
  Z = 2·adj.sum() = 4|E|, i.e. m is half that projection. Both are exposed: ``self_loops``
  (default True, the paper) and ``z`` = "degree_sum" (Z = Σ d̂, the paper; default) or
  "twice_degree_sum" (Z = 2 Σ d̂, the code). The self-loops belong to GMP: with ``gmp=False``
  the backbone's propagation is left as it is. Degrees are the training graph's (unmasked).
  Cost: two reductions over the layer (forward and backward) and one fused scale-and-add
  (``torch.addr``), against the propagation's ~avg-degree gathers per row; the benchmark
  (bench/bench_dgr.py) measures what it adds to a training step.

LEC, local embedding correction (``extra_loss``), on the readout embeddings:
    L_pos = Σ_b Σ_{j ∈ S(i_b)} −ω_{i_b j} log σ(e_{u_b} · e_j)
    L_neg = Σ_b Σ_{j ∈ M(i_b)} −ω_{i_b j} log σ(e_{u_b} · e_j)
    L_LEC = λ1 L_pos − λ2 L_neg      (sums over the batch, not means, as the official code)
  for each BPR pair (u_b, i_b), with S(i) the K1 similar and M(i) the K2 marginal co-occurring
  items of i and ω the UltraGCN-style weights (``ops.lec_neighbors``, computed once from the
  training graph by a sparse product). As in the paper and the code, −λ2 L_neg has no lower bound
  (it pushes e_u · e_mar down); λ2 is tiny and the L2 term bounds it in practice.
  Gather → batched dot → log-sigmoid: B × (K1 + K2) rows of the readout (only those rows of each
  layer are read out).

Defaults (``DGRConfig``): α = (0.1, 1.1, 0.0) (the official LightGCN configuration; the paper
searches each layer's α in [0, 1]), K1 = K2 = 10, the 3·K2 rule, λ1 = 1e-2, λ2 = 5e-6 (the
official LightGCN values; its SimGCL hard-codes 5e-4 / 5e-8, its XSimGCL 1e-1 / 5e-6).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import lec_neighbors

Z_MODES = ("degree_sum", "twice_degree_sum")


@dataclass
class DGRConfig:
    """DGR's hyper-parameters (``--dgr-*`` / ``--lec-*`` flags)."""

    dgr_alpha: tuple = field(default=(0.1, 1.1, 0.0), metadata={
        "help": "GMP alpha per layer (one value: every layer)"})
    dgr_gmp: bool = field(default=True, metadata={"help": "global desmoothing message passing"})
    dgr_self_loops: bool = field(default=True, metadata={
        "help": "GMP propagates with self-loops (paper; the official code has none)"})
    dgr_z: str = field(default="degree_sum", metadata={
        "help": "GMP normaliser Z: degree_sum (paper, sum of d) or twice_degree_sum (code)"})
    dgr_lec: bool = field(default=True, metadata={"help": "local embedding correction loss"})
    lec_similar: int = field(default=10, metadata={"help": "K1 similar items per item"})
    lec_marginal: int = field(default=10, metadata={"help": "K2 marginal items per item"})
    lec_min_cooccurrence: int | None = field(default=None, metadata={
        "help": "items with fewer co-occurring items get no marginal ones (default 3*K2)"})
    lec_diagonal: bool = field(default=False, metadata={
        "help": "an item may be its own LEC neighbour (official code; paper: other items only)"})
    lec_pos_weight: float = field(default=1e-2, metadata={"help": "lambda1 of L_pos"})
    lec_neg_weight: float = field(default=5e-6, metadata={"help": "lambda2 of L_neg"})

    def alphas(self, num_layers: int) -> tuple[float, ...]:
        """One α per layer; ValueError if ``dgr_alpha`` has neither 1 nor ``num_layers`` values."""
        alpha = tuple(float(a) for a in (self.dgr_alpha if isinstance(self.dgr_alpha, (tuple, list))
                                         else (self.dgr_alpha,)))
        if len(alpha) == 1:
            alpha = alpha * num_layers
        if len(alpha) != num_layers:
            raise ValueError(f"dgr_alpha has {len(alpha)} values but the backbone has "
                             f"{num_layers} layers (give one value or one per layer)")
        if not all(math.isfinite(a) for a in alpha):
            raise ValueError(f"dgr_alpha must be finite, got {alpha}")
        return alpha

    def validate(self) -> "DGRConfig":
        if self.dgr_z not in Z_MODES:
            raise ValueError(f"dgr_z = {self.dgr_z!r}: choose one of {', '.join(Z_MODES)}")
        for name in ("lec_similar", "lec_marginal"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lec_pos_weight", "lec_neg_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        return self


def _rank_one_correction(x_user, x_item, r_user, r_item, beta, coef):
    """(β x − c r (rᵀx)) on the stacked rows [x_user; x_item]: one reduction s = rᵀx [d] over
    both sides, then one fused scale-and-add (``torch.addr``) per side."""
    s = torch.mv(x_user.T, r_user) + torch.mv(x_item.T, r_item)
    return (torch.addr(x_user, r_user, s, beta=beta, alpha=-coef),
            torch.addr(x_item, r_item, s, beta=beta, alpha=-coef))


class _RankOneCorrection(torch.autograd.Function):
    """GMP's y = (β I − c r rᵀ) x. The operator is symmetric, so the backward is the same two
    passes on the gradient (autograd through mv and addr would take four: a scaled copy, a
    reduction, an outer product and the sum of the two contributions)."""

    @staticmethod
    def forward(ctx, x_user, x_item, r_user, r_item, beta, coef):
        ctx.save_for_backward(r_user, r_item)
        ctx.beta, ctx.coef = beta, coef
        return _rank_one_correction(x_user, x_item, r_user, r_item, beta, coef)

    @staticmethod
    def backward(ctx, g_user, g_item):  # unused outputs arrive as zeros (materialised grads)
        r_user, r_item = ctx.saved_tensors
        gx_u, gx_i = _rank_one_correction(g_user, g_item, r_user, r_item, ctx.beta, ctx.coef)
        return gx_u, gx_i, None, None, None, None


class DGR(nn.Module):
    """The DGR plug-in for one training graph (module docstring). Holds no parameters; its
    buffers (the smoothing vector, the LEC lists) follow the model's device.

    Args:
        config: ``DGRConfig``.
        graph: the training ``BipartiteGraph`` (LEC lists and degrees come from it).
        num_layers: the backbone's number of propagation layers (for the per-layer α).
    """

    def __init__(self, config: DGRConfig, graph, num_layers: int, backend: str | None = None):
        super().__init__()
        self.config = config.validate()
        self.alpha = config.alphas(num_layers) if config.dgr_gmp else (0.0,) * num_layers
        self.num_users, self.num_items = graph.num_users, graph.num_items
        d_hat = torch.cat([graph.deg_u, graph.deg_i]).double()
        if config.dgr_gmp and config.dgr_self_loops:
            d_hat += 1
        z = d_hat.sum() * (2 if config.dgr_z == "twice_degree_sum" else 1)
        self.z = float(z)
        self.register_buffer("sqrt_d", d_hat.sqrt(), persistent=False)  # cast per use
        self.lec = config.dgr_lec and (config.lec_similar > 0 or config.lec_marginal > 0)
        if self.lec:
            nb = lec_neighbors(graph, config.lec_similar, config.lec_marginal,
                               config.lec_min_cooccurrence, config.lec_diagonal, backend=backend)
            # One gather for both lists: items [I, K1 + K2] (pads -> item 0, weight 0), their ω,
            # and the per-column factor λ1 (similar) / -λ2 (marginal): L_LEC = Σ -λ ω log σ(s).
            self.register_buffer("lec_items", torch.cat([nb.similar, nb.marginal], 1).clamp_min(0),
                                 persistent=False)
            self.register_buffer("lec_omega", torch.cat([nb.similar_weight, nb.marginal_weight], 1),
                                 persistent=False)
            self.register_buffer("lec_lambda", torch.tensor(
                [config.lec_pos_weight] * nb.similar.shape[1]
                + [-config.lec_neg_weight] * nb.marginal.shape[1], dtype=torch.float64),
                persistent=False)

    def _check_graph(self, graph):
        if (graph.num_users, graph.num_items) != (self.num_users, self.num_items):
            raise ValueError(f"DGR was built for a {self.num_users} x {self.num_items} graph, "
                             f"got {graph.num_users} x {graph.num_items}")

    # ------------------------------------------------------------------ seams
    def layer_kwargs(self, layer: int, graph, batch) -> dict:
        """GMP propagates on Ã with self-loops (paper) when configured."""
        return {"self_loop": True} if self.config.dgr_gmp and self.config.dgr_self_loops else {}

    def after_layer(self, layer: int, graph, x_user: torch.Tensor, x_item: torch.Tensor):
        """GMP: (1 + α) Ê − α √d̂ (√d̂ᵀ Ê) / Z on users and items (one α for the layer)."""
        alpha = self.alpha[layer]
        if alpha == 0.0:
            return x_user, x_item
        self._check_graph(graph)
        r_u = self.sqrt_d[:self.num_users].to(x_user.dtype)
        r_i = self.sqrt_d[self.num_users:].to(x_item.dtype)
        return _RankOneCorrection.apply(x_user, x_item, r_u, r_i, 1 + alpha, alpha / self.z)

    def extra_loss(self, model, graph, layers, batch) -> dict:
        """{"lec": λ1 L_pos − λ2 L_neg} on the readout rows of the batch's users and of its
        positive items' neighbours ({} without LEC)."""
        if not self.lec:
            return {}
        items = self.lec_items[batch.pos]                       # [B, K1 + K2]
        # Read out each distinct neighbour once (popular items recur across the batch).
        distinct, where = torch.unique(items, return_inverse=True)
        e_u, e_j = model.readout_rows(layers, batch.users, distinct)
        scores = torch.bmm(e_j[where], e_u.unsqueeze(-1)).squeeze(-1)
        weights = self.lec_omega[batch.pos].to(scores.dtype) * self.lec_lambda.to(scores.dtype)
        return {"lec": -(weights * F.logsigmoid(scores)).sum()}


__all__ = ["DGR", "DGRConfig", "Z_MODES"]
