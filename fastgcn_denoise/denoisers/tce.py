"""ADT's T-CE and R-CE (Wang et al., "Denoising Implicit Feedback for Recommendation", WSDM'21).

Adaptive denoising training changes only the loss, so both are plug-ins of any ranking backbone
(``--t-ce`` / ``--r-ce``): their ``extra_loss`` adds ``new − bpr`` to the backbone's total, which
then becomes ``new + reg`` (+ the backbone's other terms), with ``new`` computed on the same
final embeddings of the batch's triples:

* **T-CE** (truncated loss): each step drops the share ε(T) of the batch's positives with the
  largest loss; ε(T) = ε_max · min(T / N, 1) grows linearly with the step T to its maximum over
  N steps (paper: ε_max = 0.2, N = 30,000 iterations).
* **R-CE** (reweighted loss): each positive's loss is weighted by ŷ^β and each sampled
  negative's by (1 − ŷ)^β, ŷ = σ(score) detached (β = 0.25, from the paper's search grid
  {0.05, 0.1, 0.25, 0.5, 1}; the text is not in ``seeds/``).

``tce_loss`` / ``rce_loss`` "bce" (default, as the paper: binary cross-entropy on the positive and its sampled
negative, each a sample, mean over the samples kept) or "bpr" (the backbone's pairwise term per
triple, truncated / weighted by the positive's weight on σ(s_pos − s_neg)). The paper's official
code counts T-CE's dropped share over positives *and* negatives (negatives have loss 0 in its
ranking, so with one negative per positive it drops up to 2·ε_max of the positives); we follow
the text: ε is the share of the positives.

Keep scores (a detector for ``denoise``): exp(−mean BCE loss of the edge as a positive over the
training so far), per training edge; edges never drawn score 1. Noisy interactions are the ones
with large loss early in training (the paper's observation), so the mean over the run ranks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import option
from ..models.base import Plugin
from ..models.registry import register_plugin
from .masks import edge_ids

LOSSES = ("bce", "bpr")


def drop_rate(step: int, max_rate: float, num_gradual: int) -> float:
    """T-CE's schedule ε(T) = max_rate · min(T / num_gradual, 1)."""
    return max_rate * min(step / num_gradual, 1.0)


def truncated_mask(loss_pos: torch.Tensor, rate: float) -> torch.Tensor:
    """bool [B]: the positives kept, i.e. all but the ``round(rate · B)`` largest losses (ties:
    the later index is dropped first, deterministic)."""
    drop = round(rate * loss_pos.shape[0])
    keep = torch.ones_like(loss_pos, dtype=torch.bool)
    if drop > 0:
        keep[torch.topk(loss_pos.detach(), drop, sorted=False).indices] = False
    return keep


def adt_loss(
    s_pos: torch.Tensor,
    s_neg: torch.Tensor,
    method: str,
    loss: str,
    rate: float = 0.0,
    beta: float = 0.25,
) -> torch.Tensor:
    """The ADT loss of one batch (a scalar).

    Args:
        s_pos, s_neg [B]: scores of the positives and of their sampled negatives.
        method: "t-ce" (truncate at ``rate``) or "r-ce" (reweight with exponent ``beta``).
        loss: "bce" (each pair two samples) or "bpr" (each triple one sample).
    """
    if loss == "bce":
        l_pos, l_neg = F.softplus(-s_pos), F.softplus(s_neg)
        if method == "t-ce":
            keep = truncated_mask(l_pos, rate)
            return (l_pos[keep].sum() + l_neg.sum()) / (int(keep.sum()) + l_neg.shape[0])
        w_pos = torch.sigmoid(s_pos).detach().pow(beta)
        w_neg = torch.sigmoid(-s_neg).detach().pow(beta)
        return torch.cat([w_pos * l_pos, w_neg * l_neg]).mean()
    diff = s_pos - s_neg
    triple = F.softplus(-diff)
    if method == "t-ce":
        keep = truncated_mask(triple, rate)
        return triple[keep].mean()
    return (torch.sigmoid(diff).detach().pow(beta) * triple).mean()


@dataclass
class TCEConfig:
    tce_drop_rate: float = option(
        0.2,
        "t-ce: maximum share of each batch's positives dropped (those with the largest loss)",
        min=0,
        max=1,
        max_open=True,
        metavar="RATE",
    )
    tce_num_gradual: int = option(
        30000,
        "t-ce: training steps over which the drop rate grows "
        "linearly from 0 to its maximum (paper: 30000)",
        min=1,
        metavar="STEPS",
    )
    tce_loss: str = option(
        "bce",
        "t-ce: the loss truncated: bce (the paper's, positive and "
        "sampled negative as samples) or bpr",
        choices=LOSSES,
    )


@dataclass
class RCEConfig:
    rce_beta: float = option(
        0.25, "r-ce: exponent beta of the weight prediction^beta", min=0, metavar="BETA"
    )
    rce_loss: str = option(
        "bce",
        "r-ce: the loss reweighted: bce (the paper's, positive and "
        "sampled negative as samples) or bpr",
        choices=LOSSES,
    )


class ADT(Plugin):
    """T-CE (``method`` "t-ce") or R-CE ("r-ce") on a backbone's final embeddings (module
    docstring); ``num_edges``: the training graph's E (for the per-edge loss statistics)."""

    def __init__(
        self,
        method: str,
        num_edges: int,
        loss: str = "bce",
        max_rate: float = 0.2,
        num_gradual: int = 30000,
        beta: float = 0.25,
    ):
        super().__init__()
        if method not in ("t-ce", "r-ce"):
            raise ValueError(f"unknown ADT method {method!r}; choose t-ce or r-ce")
        if loss not in LOSSES:
            raise ValueError(f"tce_loss = {loss!r}: choose one of {', '.join(LOSSES)}")
        if not 0 <= max_rate < 1:
            raise ValueError(f"tce_drop_rate = {max_rate}: must be in [0, 1)")
        if num_gradual < 1:
            raise ValueError(f"tce_num_gradual = {num_gradual}: must be >= 1")
        if beta < 0:
            raise ValueError(f"rce_beta = {beta}: must be >= 0")
        self.method, self.loss_kind = method, loss
        self.max_rate, self.num_gradual, self.beta = float(max_rate), int(num_gradual), float(beta)
        self.steps = 0
        # Per-edge BCE loss as a positive, summed over the run, and how often it was drawn.
        self.register_buffer("loss_sum", torch.zeros(num_edges, dtype=torch.float64))
        self.register_buffer("loss_count", torch.zeros(num_edges, dtype=torch.float64))

    def get_extra_state(self):
        return {"steps": self.steps}

    def set_extra_state(self, state):
        self.steps = int(state["steps"])

    @property
    def rate(self) -> float:
        """The current T-CE drop rate (0 for R-CE)."""
        if self.method != "t-ce":
            return 0.0
        return drop_rate(self.steps, self.max_rate, self.num_gradual)

    def extra_loss(self, model, graph, layers, batch):
        if not self.training or batch is None:
            return {}
        users, pos, neg = batch
        rows = model.readout([(x_u[users], x_i[torch.cat([pos, neg])]) for x_u, x_i in layers])
        u, it = rows
        s_pos = (u * it[: pos.shape[0]]).sum(-1)
        s_neg = (u * it[pos.shape[0] :]).sum(-1)
        new = adt_loss(s_pos, s_neg, self.method, self.loss_kind, self.rate, self.beta)
        bpr = F.softplus(s_neg - s_pos).mean()  # the backbone's own term, replaced by ``new``
        with torch.no_grad():
            ids = edge_ids(graph, users, pos)
            self.loss_sum.index_add_(0, ids, F.softplus(-s_pos).double())
            self.loss_count.index_add_(0, ids, torch.ones_like(self.loss_count[ids]))
        self.steps += 1
        return {self.method.replace("-", ""): new - bpr}

    def keep_scores(self, graph):
        """exp(−mean BCE loss as a positive) per training edge [E] (1 where never drawn)."""
        if graph.num_edges != self.loss_sum.shape[0]:
            raise ValueError(
                f"{self.method} was built for a graph with {self.loss_sum.shape[0]} "
                f"edges; this one has {graph.num_edges} (use the training graph)"
            )
        mean = self.loss_sum / self.loss_count.clamp_min(1)
        return torch.exp(-mean).float()


@register_plugin(
    "t-ce",
    config=TCEConfig,
    summary="ADT's truncated loss (Wang et al., WSDM'21): drop each batch's "
    "largest-loss positives at a rate growing to its maximum",
)
def build_tce(cfg: TCEConfig, model, ctx) -> ADT:
    return ADT(
        "t-ce",
        ctx.train.num_edges,
        cfg.tce_loss,
        max_rate=cfg.tce_drop_rate,
        num_gradual=cfg.tce_num_gradual,
    )


@register_plugin(
    "r-ce",
    config=RCEConfig,
    summary="ADT's reweighted loss (Wang et al., WSDM'21): each positive's loss "
    "weighted by prediction^beta",
)
def build_rce(cfg: RCEConfig, model, ctx) -> ADT:
    return ADT("r-ce", ctx.train.num_edges, cfg.rce_loss, beta=cfg.rce_beta)
