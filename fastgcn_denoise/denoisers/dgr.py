"""DGR (Ding et al., IJCAI'24): desmoothing for any GCN recommender, as a plug-in.

Two parts, each through the seams every backbone has (``models.base``):

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
  (True: the paper; default False, the code) and ``z`` = "degree_sum" (Z = Σ d̂, the paper) or
  "twice_degree_sum" (Z = 2 Σ d̂, the code; default). The self-loops belong to GMP: with
  ``gmp=False`` (or the default) the backbone's propagation is left as it is. Degrees are the training graph's (unmasked).
  Cost: two reductions over the layer (forward and backward) and one fused scale-and-add
  (``torch.addr``), against the propagation's ~avg-degree gathers per row; the benchmark
  (bench/ops/dgr_step.py) measures what it adds to a training step.

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

Defaults (``DGRConfig``), chosen on the Yelp split (issue 23, bench/studies/dgr_components.sh,
bench/results/dgr_components_yelp_sub.json): GMP as the official code (no self-loops, Z = 2 Σ d)
with its LightGCN α = (0.1, 1.1, 0.0) (the paper searches each layer's α in [0, 1]); K1 = K2 =
10, the 3·K2 rule, λ1 = 5e-4, λ2 = 5e-7 (the official values for its sparse data set, Gowalla;
its ML-1M LightGCN uses 1e-2 / 5e-6, its SimGCL 5e-4 / 5e-8, its XSimGCL 1e-1 / 5e-6). LEC is a
sum over the batch while BPR is a mean, and ω grows as the data gets sparser (small D): at the
ML-1M λ1 = 1e-2 the LEC term is ~5x the BPR loss at the start on Yelp and LightGCN + LEC trails
LightGCN (−4 % test Recall@20 on a Yelp sample); the paper's self-loops change the backbone's
propagation (GMP with them: −4 %). These defaults: +4.7 % on that sample (one seed).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import check, option
from ..models.base import Plugin
from ..models.registry import register_plugin
from ..ops import lec_neighbors, sddmm

Z_MODES = ("degree_sum", "twice_degree_sum")


@dataclass
class DGRConfig:
    """DGR's hyper-parameters (``--dgr-*`` / ``--lec-*`` flags with ``--dgr``)."""

    dgr_alpha: tuple = option(
        (0.1, 1.1, 0.0),
        "GMP alpha per layer, comma-separated (one value: every layer)",
        item=float,
        metavar="A,A,...",
    )
    dgr_gmp: bool = option(True, "global desmoothing message passing (GMP)")
    dgr_self_loops: bool = option(
        False, "GMP propagates with self-loops (the paper; the official code has none)"
    )
    dgr_z: str = option(
        "twice_degree_sum",
        "GMP normaliser Z: degree_sum (the paper: sum of the "
        "degrees) or twice_degree_sum (the official code)",
        choices=Z_MODES,
    )
    dgr_lec: bool = option(True, "local embedding correction loss (LEC)")
    lec_similar: int = option(10, "K1: similar items per item (largest omega)", min=0)
    lec_marginal: int = option(10, "K2: marginal items per item (smallest omega)", min=0)
    lec_min_cooccurrence: int = option(
        None,
        "items with fewer co-occurring items get no "
        "marginal ones (default 3*K2, the official rule)",
        kind=int,
        min=0,
    )
    lec_diagonal: bool = option(
        False,
        "an item may be its own LEC neighbour (the official code; the paper: other items only)",
    )
    lec_pos_weight: float = option(5e-4, "lambda1, weight of the similar-neighbour term", min=0)
    lec_neg_weight: float = option(
        5e-7, "lambda2, weight of the marginal-neighbour term (subtracted)", min=0
    )

    def alphas(self, num_layers: int) -> tuple[float, ...]:
        """One α per layer; ValueError if ``dgr_alpha`` has neither 1 nor ``num_layers`` values."""
        alpha = tuple(float(a) for a in self.dgr_alpha)
        if len(alpha) == 1:
            alpha = alpha * num_layers
        if len(alpha) != num_layers:
            raise ValueError(
                f"dgr_alpha has {len(alpha)} values but the backbone has "
                f"{num_layers} layers (give one value or one per layer)"
            )
        return alpha


def _rank_one_correction(x_user, x_item, r_user, r_item, beta, coef):
    """(β x − c r (rᵀx)) on the stacked rows [x_user; x_item]: one reduction s = rᵀx [d] over
    both sides, then one fused scale-and-add (``torch.addr``) per side."""
    s = torch.mv(x_user.T, r_user) + torch.mv(x_item.T, r_item)
    return (
        torch.addr(x_user, r_user, s, beta=beta, alpha=-coef),
        torch.addr(x_item, r_item, s, beta=beta, alpha=-coef),
    )


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


class DGR(Plugin):
    """The DGR plug-in for one training graph (module docstring). Holds no parameters; its
    buffers (the smoothing vector, the LEC lists) follow the model's device.

    Args:
        config: ``DGRConfig``.
        graph: the training ``BipartiteGraph`` (LEC lists and degrees come from it).
        num_layers: the backbone's number of propagation layers (for the per-layer α).
        backend: force a backend for the LEC lists' product and selection.
    """

    def __init__(self, config: DGRConfig, graph, num_layers: int, backend: str | None = None):
        super().__init__()
        self.config = check(config, "plug-in dgr")
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
            nb = lec_neighbors(
                graph,
                config.lec_similar,
                config.lec_marginal,
                config.lec_min_cooccurrence,
                config.lec_diagonal,
                backend=backend,
            )
            # One gather for both lists: items [I, K1 + K2] (pads -> item 0, weight 0), their ω,
            # and the per-column factor λ1 (similar) / -λ2 (marginal): L_LEC = Σ -λ ω log σ(s).
            self.register_buffer(
                "lec_items", torch.cat([nb.similar, nb.marginal], 1).clamp_min(0), persistent=False
            )
            self.register_buffer(
                "lec_omega", torch.cat([nb.similar_weight, nb.marginal_weight], 1), persistent=False
            )
            self.register_buffer(
                "lec_lambda",
                torch.tensor(
                    [config.lec_pos_weight] * nb.similar.shape[1]
                    + [-config.lec_neg_weight] * nb.marginal.shape[1],
                    dtype=torch.float64,
                ),
                persistent=False,
            )

    def _check_graph(self, graph):
        if (graph.num_users, graph.num_items) != (self.num_users, self.num_items):
            raise ValueError(
                f"DGR was built for a {self.num_users} x {self.num_items} graph, "
                f"got {graph.num_users} x {graph.num_items}"
            )

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
        r_u = self.sqrt_d[: self.num_users].to(x_user.dtype)
        r_i = self.sqrt_d[self.num_users :].to(x_item.dtype)
        return _RankOneCorrection.apply(x_user, x_item, r_u, r_i, 1 + alpha, alpha / self.z)

    def propagation_rows_args(self, graph, num_layers: int) -> dict | None:
        """GMP alone as ``ops.propagation_rows`` arguments: its self-loops and (1 + α, α / Z)
        per layer (the op's r = √d̂ of ``graph`` is this plug-in's own when ``graph`` has the
        training graph's degrees). None with LEC (a loss term on the layers) or other degrees."""
        loops = self.config.dgr_gmp and self.config.dgr_self_loops
        if self.lec or len(self.alpha) != num_layers:
            return None
        self._check_graph(graph)
        same = getattr(self, "_same_degrees", None)
        if same is None or same() is not graph:  # checked once per graph (an immutable one)
            d_hat = torch.cat([graph.deg_u, graph.deg_i]).to(self.sqrt_d) + int(loops)
            if not torch.equal(d_hat.sqrt_(), self.sqrt_d):
                return None
            self._same_degrees = weakref.ref(graph)
        return {"self_loop": loops, "gmp": tuple((1 + a, a / self.z) for a in self.alpha)}

    def extra_loss(self, model, graph, layers, batch) -> dict:
        """{"lec": λ1 L_pos − λ2 L_neg} on the readout rows of the batch's users and of its
        positive items' neighbours ({} without LEC)."""
        if not self.lec:
            return {}
        items = self.lec_items[batch.pos]  # [B, K1 + K2]
        # Read out each distinct neighbour once (popular items recur across the batch).
        distinct, where = torch.unique(items, return_inverse=True)
        e_u, e_j = model.readout([(x_u[batch.users], x_i[distinct]) for x_u, x_i in layers])
        scores = torch.bmm(e_j[where], e_u.unsqueeze(-1)).squeeze(-1)
        weights = self.lec_omega[batch.pos].to(scores.dtype) * self.lec_lambda.to(scores.dtype)
        return {"lec": -(weights * F.logsigmoid(scores)).sum()}

    def attach(self, model) -> "DGR":
        """Remember (weakly: no module cycle) the backbone, for ``keep_scores``."""
        self._model = weakref.ref(model)
        return self

    @torch.no_grad()
    def keep_scores(self, graph):
        """[E] σ(<e_u, e_i>) of each training interaction from the backbone's final embeddings:
        DGR learns no edge scores, so the noise benchmark judges the trained model's own belief
        in each interaction (higher = keep). None before ``attach``."""
        model = self._model() if getattr(self, "_model", None) is not None else None
        if model is None:
            return None
        was_training = model.training
        model.eval()
        try:
            return torch.sigmoid(sddmm(graph, *model(graph)))
        finally:
            model.train(was_training)


@register_plugin(
    "dgr",
    config=DGRConfig,
    summary="DGR (Ding et al., IJCAI'24): desmoothing "
    "message passing (GMP) and local embedding correction (LEC) on any backbone",
)
def build_dgr(cfg: DGRConfig, model, ctx) -> DGR:
    return DGR(cfg, ctx.train, model.num_layers).attach(model)


__all__ = ["DGR", "DGRConfig", "Z_MODES"]
