"""Learned edge masks that look for noise: pathwise gates, target-edge holdout, mask heads, keep level.

Two plug-ins for any ranking backbone (``train --model lightgcn --mask``, ``--holdout``), beside
the paper's ARM/DisARM masks (``denoisers/sgcn.py``):

* ``holdout`` (**target-edge holdout**): the step's positive edges get weight 0 in that step's
  propagation, degrees renormalised. Without it an edge kept in the graph raises its own
  positive's score, so the worst-fitting (noisy) edges get the strongest push to be kept; with
  it each edge is judged by how well it predicts the *other* positives. Usable alone (what it
  does to LightGCN is measured in ``bench/denoise/``) and built into ``mask``.
* ``mask``: one mask per layer drawn by a **pathwise estimator** (``ESTIMATORS``): ``gumbel``,
  the binary-concrete straight-through gate (forward: an exact Bernoulli(σ(φ)) sample; backward:
  the relaxed sample's gradient at temperature τ), or ``hard_concrete`` (Louizos et al. 2018,
  L0-SIGN's gate). One forward pass per step, the logit gradient by autograd through the
  gate formulas of ``ops.gate`` (the Philox stream the propagation kernels draw from). Logits from
  a **mask head** (``MaskHead``): ``free`` per-edge logits Φ [K, E] (SGCN's), or amortised on the
  backbone's current embeddings so the estimator's signal pools across edges: ``score``
  φ_ke = a_k z_u(⟨f_u, f_i⟩) + b_k (z_u: standardised within the user's interactions),
  ``linear`` adding the standardised log item and user degrees (what a detector must discount
  for popularity), or ``mlp`` (one tanh layer on those features). A **keep-level control**
  (``KeepControl``): a target keep rate met exactly at every step (per-layer shift of the
  logits, with its implicit gradient), or a mean-normalised L0 penalty; and a warm-up during
  which the masks are off.

At evaluation the masks are deterministic: gumbel keeps an edge when σ(φ) > ½ (the mode of its
Bernoulli), hard concrete uses its mean gate. ``keep_scores`` reports P(gate ≠ 0) [K, E].
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..models.base import Plugin
from ..models.registry import register_plugin
from ..modes import MODES
from ..ops import gate, l0_probability, layer_offset, row_standardised_sddmm

ESTIMATORS = ("gumbel", "hard_concrete")
HEADS = ("free", "score", "linear", "mlp")
_GATE = {"gumbel": "concrete_st", "hard_concrete": "hard_concrete"}
_EVAL_GATE = {"gumbel": None, "hard_concrete": "hard_concrete_mean"}  # gumbel: 1[σ(φ) > ½]
_STRETCH = {"gamma": -0.1, "zeta": 1.1}  # hard concrete (Louizos et al.; L0-SIGN)
# masked_spmm draws the gates and applies the holdout itself once it has the gate modes
# (a-masks' fused kernels); until then the gate and the holdout multiply the edge weights.
_FUSED = "concrete_st" in MODES

# Per graph: its edge keys u * I + i (sorted: edge ids are CSR(R) positions).
_KEYS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def edge_ids(graph, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Edge ids (int64) of the pairs (users[b], items[b]); ValueError if one is not an edge."""
    keys = _KEYS.get(graph)
    if keys is None:
        keys = graph.edge_users() * graph.num_items + graph.col_item
        _KEYS[graph] = keys
    query = users * graph.num_items + items
    if graph.num_edges == 0:
        if query.numel():
            raise ValueError("holdout: the graph has no edges, so no batch pair is one")
        return query
    ids = torch.searchsorted(keys, query).clamp_max(graph.num_edges - 1)
    if not bool((keys[ids] == query).all()):
        raise ValueError(
            "holdout: some (user, positive item) pairs of the batch are not edges "
            "of the training graph"
        )
    return ids


def holdout_kwargs(graph, batch, dtype=torch.float32, ids=None) -> dict:
    """``masked_spmm`` kwargs that give the batch's positive edges weight 0 ({} without a batch);
    ``ids``: their edge ids when already known."""
    if batch is None:
        return {}
    if ids is None:
        ids = edge_ids(graph, batch.users, batch.pos)
    if _FUSED:
        return {"holdout": ids}
    w = torch.ones(graph.num_edges, dtype=dtype, device=graph.device)
    w[ids] = 0
    return {"edge_weight": w}


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std over the edges (x detached: the features are inputs)."""
    x = x.detach()
    return (x - x.mean()) / x.std().clamp_min(1e-12)


# Per graph: the standardised log item and log user degree of every edge [E, 2] (float32).
_DEGREES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _degree_features(graph) -> torch.Tensor:
    feats = _DEGREES.get(graph)
    if feats is None:
        users, items = graph.edges()
        log_di = torch.log(graph.deg_i.to(torch.float32).clamp_min(1))[items]
        log_du = torch.log(graph.deg_u.to(torch.float32).clamp_min(1))[users]
        feats = torch.stack([_standardise(log_di), _standardise(log_du)], dim=1)
        _DEGREES[graph] = feats
    return feats


def edge_features(graph, f_user: torch.Tensor, f_item: torch.Tensor, head: str) -> torch.Tensor:
    """[E, F] per-edge features of an amortised head, detached: the score ⟨f_u, f_i⟩ standardised
    within each user's interactions (every user's noise is a share of its own interactions, so
    the question is which of them fit the user least; measured on the built-in data, this raises
    the score's noise AUC by about 0.02 over a global standardisation), and for
    ``linear``/``mlp`` also the standardised log item and log user degrees."""
    score = row_standardised_sddmm(graph, f_user, f_item)
    if head == "score":
        return score[:, None]
    return torch.cat([score[:, None], _degree_features(graph).to(score.dtype)], dim=1)


class MaskHead(nn.Module):
    """Mask logits [K, E] of one training graph: free per edge, or amortised on edge features.

    The amortised heads start with zero weights (every edge at ``init_keep``) so training starts
    from the unmasked graph; the bias sets the keep level unless a target overrides it.
    """

    def __init__(
        self, head: str, num_layers: int, num_edges: int, init_keep: float = 0.9, hidden: int = 16
    ):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown mask head {head!r}; choose one of {', '.join(HEADS)}")
        if not 0.0 < init_keep < 1.0:
            raise ValueError(f"init_keep must be in (0, 1), got {init_keep}")
        self.head = head
        bias = math.log(init_keep / (1.0 - init_keep))
        if head == "free":
            self.logits = nn.Parameter(torch.full((num_layers, num_edges), bias))
            return
        width = 1 if head == "score" else 3
        if head == "mlp":
            self.hidden = nn.Linear(width, hidden)
            width = hidden
        self.weight = nn.Parameter(torch.zeros(num_layers, width))
        self.bias = nn.Parameter(torch.full((num_layers,), bias))

    @property
    def amortised(self) -> bool:
        return self.head != "free"

    def forward(self, features: torch.Tensor | None = None) -> torch.Tensor:
        """[K, E] logits; ``features`` [E, F] (``edge_features``) for the amortised heads."""
        if self.head == "free":
            return self.logits
        x = torch.tanh(self.hidden(features)) if self.head == "mlp" else features
        return torch.addmm(self.bias[:, None], self.weight, x.T)


class _TargetStep(torch.autograd.Function):
    """The last Newton step of the keep-level solve, with its implicit derivative.

    forward: logits + c_k, c_k = b_k - (mean_e p - target) / slope_k, p = σ(logits + b_k - offset)
    given (``p`` [K, E] at the solved b); backward: g - σ'(·) mean_e(g) / slope_k (slope_k =
    mean_e σ', detached), so the common shift gets no gradient. One pass each way over [K, E]
    instead of the half-dozen of autograd through sigmoid, mean and the subtraction. ``mean``:
    [K, E] -> [K, 1], the per-layer mean over all the edges (a partitioned graph's is global, and
    so is its gradient's, which every rank's loss shares).
    """

    @staticmethod
    def forward(ctx, logits, p, b, target, mean):
        level = mean(p)
        slope = (level - mean(p.square())).clamp_min(1e-12)  # mean p (1 - p)
        ctx.save_for_backward(p, slope)
        ctx.mean = mean
        return logits + (b - (level - target) / slope)

    @staticmethod
    def backward(ctx, g):
        p, slope = ctx.saved_tensors
        coef = ctx.mean(g) / slope
        return g - p * (1 - p) * coef, None, None, None, None


class KeepControl:
    """What keeps the masks' keep level from drifting.

    Args:
        target_keep: mean keep probability per layer (None: no target), met exactly at every
            step by a per-layer shift b_k of the logits: found without gradient (Newton's method
            on the monotone mean, from the last step's b_k), then one more Newton step with
            gradient, whose derivative in the logits is the implicit one, -σ'(φ_e) / Σσ'(φ): so
            the common shift is never learned and the head learns *which* edges to drop.
        l0: coefficient of the mean-normalised L0 penalty l0 · mean_{k,e} P(z_ke ≠ 0) (0: off).
    """

    def __init__(self, target_keep: float | None = None, l0: float = 0.0):
        if target_keep is not None and not 0.0 < target_keep < 1.0:
            raise ValueError(f"target_keep must be in (0, 1) or None, got {target_keep}")
        if not (math.isfinite(l0) and l0 >= 0):
            raise ValueError(f"l0 must be a finite number >= 0, got {l0}")
        self.target_keep, self.l0 = target_keep, float(l0)
        self._shift = None  # the last b [K, 1]: the next solve starts there

    def shift(self, logits: torch.Tensor, offset: float = 0.0, mean=None) -> torch.Tensor:
        """``logits`` [K, E] shifted per layer so that mean σ(logits + shift - offset) = target.

        ``offset``: the keep probability is σ(φ - offset) (0 for gumbel; hard concrete's
        τ log(-γ/ζ)). ``mean``: [K, E'] -> [K, 1] per-layer mean over all the edges (default:
        over the E' given; a partitioned graph passes its global mean).
        """
        mean = mean or (lambda x: x.mean(1, keepdim=True))
        if self.target_keep is None:
            return logits
        target = self.target_keep
        with torch.no_grad():
            # warm-started from the last step's shift: usually one or two Newton steps
            x = logits.detach()
            b = (
                self._shift
                if self._shift is not None and self._shift.shape[0] == x.shape[0]
                else torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
            )
            b = b.to(x.dtype)
            p = torch.empty_like(x)
            for _ in range(30):
                torch.add(x, b - offset, out=p).sigmoid_()
                level = mean(p)
                residual = level - target
                if float(residual.abs().max()) < 1e-5:
                    break
                slope = (level - mean(p.square())).clamp_min(1e-6)
                b = b - (residual / slope).clamp(-5.0, 5.0)  # damped: the mean is sigmoid-shaped
            else:  # p must be the probabilities at the final b
                torch.add(x, b - offset, out=p).sigmoid_()
            self._shift = b
        # The last Newton step is taken with or without gradient, so that the value does not
        # depend on requires_grad (the solve stops at a 1e-5 residual; this step squares it).
        return _TargetStep.apply(logits, p, b.to(logits.dtype), target, mean)


@dataclass
class HoldoutConfig:
    """The holdout plug-in has no options."""


@dataclass
class MaskConfig:
    mask_estimator: str = option(
        "gumbel",
        "mask: pathwise gate estimator (gumbel: binary concrete "
        "straight-through; hard_concrete: Louizos et al.)",
        choices=ESTIMATORS,
    )
    mask_head: str = option(
        "score",
        "mask: logits per edge (free) or amortised on the current "
        "embeddings (score, linear = score + log degrees, mlp)",
        choices=HEADS,
    )
    mask_holdout: bool = option(
        True, "mask: hold the step's positive edges out of its propagation (target-edge holdout)"
    )
    mask_temperature: float = option(
        0.5, "mask: temperature of the relaxed gate (hard concrete's beta)", min=0, min_open=True
    )
    target_keep: float = option(
        0.85,
        "mask: mean keep probability per layer, held at every step (none: no target)",
        kind=float,
        min=0,
        max=1,
        min_open=True,
        max_open=True,
        metavar="P",
    )
    mask_l0: float = option(0.0, "mask: coefficient of the mean-normalised L0 penalty", min=0)
    mask_warmup: float = option(
        2.0,
        "mask: epochs before the masks apply (the heads' embeddings must mean something first)",
        min=0,
        metavar="EPOCHS",
    )
    mask_init_keep: float = option(
        0.9,
        "mask: initial keep probability (without a target)",
        min=0,
        max=1,
        min_open=True,
        max_open=True,
        metavar="P",
    )
    mask_head_lr: float = option(
        1e-2, "mask: Adam learning rate of the mask head", min=0, min_open=True, resumable=True
    )
    mask_targets: bool = option(
        True,
        "mask: also weight each positive's BPR term by its keep "
        "probability (detached), so likely noise is not learned",
    )


class Holdout(Plugin):
    """Target-edge holdout for any backbone: the batch's positives get weight 0 in its step."""

    def layer_kwargs(self, layer, graph, batch):
        if layer == 0:  # the same kwargs for every layer of the forward pass
            self._kwargs = holdout_kwargs(graph, batch) if self.training else {}
        return self._kwargs


class EdgeMask(Plugin):
    """A learned mask per layer of a backbone, trained by a pathwise estimator (module docstring).

    Args:
        model: the backbone (its ego embeddings feed the amortised head until the first step).
        num_edges: the training graph's E. The other arguments are ``MaskConfig``'s.
    """

    def __init__(
        self,
        model,
        num_edges: int,
        estimator: str = "gumbel",
        head: str = "score",
        holdout: bool = True,
        temperature: float = 0.5,
        target_keep: float | None = 0.85,
        l0: float = 0.0,
        warmup_epochs: float = 2.0,
        init_keep: float = 0.9,
        lr: float = 1e-2,
        targets: bool = True,
    ):
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(
                f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}"
            )
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        if not (math.isfinite(warmup_epochs) and warmup_epochs >= 0):
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if model.num_layers < 1:
            raise ValueError("a mask needs a backbone with at least one propagation layer")
        self.estimator, self.holdout, self.temperature = (
            estimator,
            bool(holdout),
            float(temperature),
        )
        self.num_layers, self.num_edges = int(model.num_layers), int(num_edges)
        self.control = KeepControl(target_keep, l0)
        self.head = MaskHead(head, self.num_layers, self.num_edges, init_keep)
        self.warmup_examples, self.lr = warmup_epochs * self.num_edges, float(lr)
        self.targets = bool(targets)
        self.examples = 0  # training examples seen (in the extra state)
        self._model = weakref.ref(model)  # not a submodule: the backbone owns this plug-in
        self._embeddings = None  # (f_user, f_item) detached, from the last training step
        self._step = None  # the current forward's (seed, logits [K, E], their rows, holdout, ids)

    # ---------------------------------------------------------------- state
    def get_extra_state(self):
        return {
            "examples": self.examples,
            "embeddings": self._embeddings,
            "shift": self.control._shift,
        }

    def set_extra_state(self, state):
        self.examples = int(state["examples"])
        self._embeddings = state["embeddings"]
        self.control._shift = state["shift"]

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": list(self.parameters()), "lr": self.lr}]

    # ---------------------------------------------------------------- logits
    @property
    def _keep_offset(self) -> float:
        """keep probability = σ(φ - offset) (``l0_probability``)."""
        if self.estimator == "gumbel":
            return 0.0
        return self.temperature * math.log(-_STRETCH["gamma"] / _STRETCH["zeta"])

    def keep_prob(self, logits: torch.Tensor) -> torch.Tensor:
        """P(z ≠ 0) per gate: σ(φ) for gumbel, P(z > 0) for hard concrete."""
        if self.estimator == "gumbel":
            return torch.sigmoid(logits)
        return l0_probability(logits, "hard_concrete", self.temperature, **_STRETCH)

    def logits(self, graph) -> torch.Tensor:
        """[K, E] mask logits after the keep-level shift."""
        if graph.num_edges != self.num_edges:
            raise ValueError(
                f"the mask was built for a graph with {self.num_edges} edges; this "
                f"one has {graph.num_edges} (use the training graph)"
            )
        features = None
        if self.head.amortised:
            embeddings = self._embeddings
            if embeddings is None:
                model = self._model()
                embeddings = (model.user_emb, model.item_emb)
            features = edge_features(graph, *embeddings, self.head.head)
        return self.control.shift(self.head(features), self._keep_offset)

    def keep_scores(self, graph) -> torch.Tensor:
        """Keep probabilities P(z ≠ 0) [K, E] (edge-id order, higher = keep), detached."""
        with torch.no_grad():
            return self.keep_prob(self.logits(graph))

    @property
    def active(self) -> bool:
        return not self.training or self.examples >= self.warmup_examples

    # ---------------------------------------------------------------- the seams
    def layer_kwargs(self, layer, graph, batch):
        if layer == 0:  # one draw of logits, seed and holdout per forward pass
            logits = self.logits(graph) if self.active else None
            seed = int(torch.randint(0, 2**62, (1,)).item()) if self.training else 0
            ids = None  # the batch's positive edges: held out, and reweighted in extra_loss
            if self.training and batch is not None and (self.holdout or self.targets):
                ids = edge_ids(graph, batch.users, batch.pos)
            hold = holdout_kwargs(graph, batch, ids=ids) if ids is not None and self.holdout else {}
            # one view per layer: their gradients are stacked once in backward (indexing would
            # give each layer's a zero [K, E] buffer and sum them)
            layers = None if logits is None else logits.unbind(0)
            self._step = (seed, logits, layers, hold, ids)
        seed, logits, layers, hold, _ = self._step
        if logits is None:
            return hold
        phi = layers[layer]
        stretch = _STRETCH if self.estimator == "hard_concrete" else {}
        kind = _GATE[self.estimator] if self.training else _EVAL_GATE[self.estimator]
        if kind is None:  # gumbel at evaluation (no holdout then): the mode of the Bernoulli
            return {"edge_weight": (phi > 0).to(phi.dtype)}
        offset = layer_offset(0, layer, self.num_edges)
        if _FUSED:
            return {
                "logits": phi,
                "mode": kind,
                "seed": seed,
                "offset": offset,
                "temperature": self.temperature,
                **stretch,
                **hold,
            }
        z = gate(phi, kind, seed, offset, self.temperature, **stretch)
        return {"edge_weight": z * hold["edge_weight"] if hold else z}

    def extra_loss(self, model, graph, layers, batch):
        """Remember the final embeddings (the heads' next input); the L0 term and the positives'
        reweighting when on."""
        _, logits, _, _, ids = self._step
        reweight = self.targets and self.training and logits is not None
        if self.training:
            self.examples += int(batch.users.shape[0])
            if self.head.amortised:  # an input, not differentiated: no full readout in backward
                with torch.no_grad():
                    self._embeddings = model.readout(layers)
        terms = {}
        if logits is None:
            return terms
        if self.control.l0 > 0:
            terms["l0"] = self.control.l0 * self.keep_prob(logits).mean()
        if reweight:
            # mean_b keep_b * bpr_b = the backbone's mean bpr_b + this correction, on the triples'
            # rows the backbone's batch loss read out (``batch_readout``: gathered once a step)
            keep = self.keep_prob(logits.detach().index_select(1, ids)).mean(0)
            f_user, f_item = model.batch_readout(layers, batch)
            n = batch.pos.shape[0]
            bpr = torch.nn.functional.softplus(
                (f_user * f_item[n:]).sum(-1) - (f_user * f_item[:n]).sum(-1)
            )
            terms["targets"] = ((keep - 1) * bpr).mean()
        return terms


@register_plugin(
    "holdout",
    config=HoldoutConfig,
    summary="target-edge holdout: each step's positive edges are left out of its propagation",
)
def build_holdout(cfg: HoldoutConfig, model, ctx) -> Holdout:
    return Holdout()


@register_plugin(
    "mask",
    config=MaskConfig,
    summary="learned edge masks with a pathwise estimator (gumbel / hard concrete), "
    "target-edge holdout, free or amortised heads and a keep-level target",
)
def build_mask(cfg: MaskConfig, model, ctx) -> EdgeMask:
    return EdgeMask(
        model,
        ctx.train.num_edges,
        cfg.mask_estimator,
        cfg.mask_head,
        cfg.mask_holdout,
        cfg.mask_temperature,
        cfg.target_keep,
        cfg.mask_l0,
        cfg.mask_warmup,
        cfg.mask_init_keep,
        cfg.mask_head_lr,
        cfg.mask_targets,
    )
