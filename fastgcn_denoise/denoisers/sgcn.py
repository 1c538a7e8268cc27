"""SGCN (Chen et al., SIGIR'21): stochastic binary masks on a GCN recommender's graph.

Each layer k of the backbone (LightGCN or NGCF) propagates on A ⊙ Z^(k), Z^(k)_e ~ Bern(σ(Φ_ke)),
with one logit per interaction and layer (Φ [K, E], tied across the two directions, so A^(k)
stays symmetric) and the degrees recomputed on the masked graph. The objective (paper Eq. 13)

    E_Z[L_BPR(Z, Θ)] + β Σ_k Σ_e σ(Φ_ke) + γ Σ_k Σ_{j≤n} s_j(R ⊙ σ(Φ_k))

is minimised with, per step:
  * one Philox stream of uniforms U [K, E] (seed drawn from torch's RNG, counter k*E + e), the
    two antithetic passes ``arm_pos`` (Z = 1[U > σ(-Φ)]) and ``arm_neg`` (Z = 1[U < σ(Φ)]); at
    layer 1 both come from one ``masked_spmm_dual`` call (shared index reads and gathers);
  * embedding gradients by autograd through the ``arm_pos`` pass (Z is an exact Bernoulli sample,
    so this is an unbiased stochastic gradient of E_Z[L_BPR]); the ``arm_neg`` pass runs without
    autograd and only supplies f_neg. Both passes see the same dropout draws (NGCF): torch's RNG
    is rewound between them, so f_pos - f_neg reflects the masks only;
  * mask gradients by ARM (paper Eq. 11) or DisARM from ``ops.arm_grad`` (the uniforms are
    regenerated, never stored), with f = the batch BPR loss (the L2 term is the same in both
    passes and cancels);
  * β Σσ(Φ) (the paper's L0 relaxation, summed, not averaged, as in Eq. 10), gradient β σ'(Φ);
  * the nuclear norm on the user x item matrix R ⊙ σ(Φ_k) (A's singular values are R's twice)
    from ``ops.nuclear_norm`` (block-Krylov truncated SVD, warm-started from the last subspace).
    It is recomputed every ``svd_every`` steps; in between its gradient d/dw (U_n V_nᵀ on the
    pattern) is reused, chained through the current σ'(Φ). With ``svd_every = 1`` this is the
    exact per-step penalty; larger values amortise the SVD (our choice; the paper is silent).

Inference (``eval()``): ``hard`` masks, σ(Φ)·1[σ(Φ) > ½] (the paper's "clip ≤ 0.5 to zero").

Measured caveats (bench/results/arm_signal_synthetic.json, robustness_synthetic.json):
  * ARM shares one scalar loss difference among all K x E logits. On the built-in data
    (3 x 78k logits), the per-step signal-to-noise ratio per logit is ~2e-4. So within a
    normal training budget the masks do not single out individual noisy interactions
    (planted-noise ROC AUC ~0.5).
  * The top-n nuclear norm's gradient U_n V_nᵀ is largest on interactions that lie in the
    dominant (consistent) subspace. So γ > 0 lowers the keep probability of clean
    interactions more than that of random ones (AUC 0.47 at γ = 0.001 and 0.42 at γ = 0.01,
    against 0.50 at γ = 0; 10% injected noise).
The logit gradient (ARM estimate + σ'(Φ) (β + γ dN/dkeep), in closed form) enters autograd as a
zero-valued linear term ``<G, Φ> - <G, Φ>.detach()``, so an ordinary ``loss.backward();
optimizer.step()`` loop trains the masks and the embeddings together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..models.base import Batch
from ..models.lightgcn import LightGCN, LightGCNConfig
from ..models.ngcf import NGCF, NGCFConfig
from ..models.registry import register_model
from ..ops import NuclearNormState, arm_grad, layer_offset, masked_spmm_dual, nuclear_norm
from ..ops.arm_grad import ESTIMATORS
from ..ops.nuclear_norm import BACKWARDS

_ARM_BACKENDS = ("reference", "cpu", "triton")  # arm_grad's kernels; other backends dispatch


class SGCN(nn.Module):
    """A backbone (``backbone_cls``) whose every layer propagates on a learned stochastic mask.

    Args:
        num_edges: E, the training graph's interactions; the model only runs on that graph.
        beta: L0 (sparsity) coefficient β.
        gamma: nuclear-norm (low-rank) coefficient γ; 0 disables the SVD.
        svd_rank: n, singular values in the truncated nuclear norm (capped at min(U, I)).
        svd_every: recompute the SVD every this many training steps (see module docstring).
        svd_iters: maximum Krylov depth of each SVD (``truncated_svd``'s n_iter); the warm start
            from the previous subspace makes a shallow one enough (the penalty only needs the
            leading subspace, not 1e-3 accuracy on the n-th value).
        estimator: ``"arm"`` (the paper's) or ``"disarm"`` (lower variance, same cost).
        nuclear_backward: ``"exact"`` (U_n V_nᵀ) or ``"power_iteration"`` (the paper's).
        init_keep: initial keep probability σ(Φ) of every interaction.
        mask_lr: the logits' learning rate in ``param_groups`` (None: the backbone's).
        **backbone: the backbone's constructor arguments (num_users, num_items, dim, ...).
    """

    backbone_cls = None  # set by the concrete classes below

    def __init__(
        self,
        num_users: int,
        num_items: int,
        num_edges: int,
        beta: float = 0.001,
        gamma: float = 0.001,
        svd_rank: int = 128,
        svd_every: int = 100,
        svd_iters: int = 2,
        estimator: str = "arm",
        nuclear_backward: str = "exact",
        init_keep: float = 0.9,
        mask_lr: float | None = None,
        **backbone,
    ):
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(
                f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}"
            )
        if nuclear_backward not in BACKWARDS:
            raise ValueError(
                f"unknown nuclear_backward {nuclear_backward!r}; choose one of "
                f"{', '.join(BACKWARDS)}"
            )
        for name, value in (("beta", beta), ("gamma", gamma)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"SGCN {name} must be a finite number >= 0, got {value}")
        if not 0.0 < init_keep < 1.0:
            raise ValueError(f"SGCN init_keep must be in (0, 1), got {init_keep}")
        if min(int(num_edges), int(svd_rank), int(svd_every), int(svd_iters) + 1) <= 0:
            raise ValueError(
                f"SGCN needs num_edges, svd_rank, svd_every > 0 and svd_iters >= 0, "
                f"got {num_edges}, {svd_rank}, {svd_every}, {svd_iters}"
            )
        self.net = self.backbone_cls(num_users, num_items, **backbone)
        if self.net.num_layers < 1:
            raise ValueError("SGCN needs at least one propagation layer to mask")
        self.num_users, self.num_items = self.net.num_users, self.net.num_items
        self.num_layers, self.num_edges = self.net.num_layers, int(num_edges)
        self.beta, self.gamma = float(beta), float(gamma)
        self.svd_rank = min(int(svd_rank), self.num_users, self.num_items)
        self.svd_every, self.svd_iters, self.estimator = int(svd_every), int(svd_iters), estimator
        self.nuclear_backward, self.init_keep = nuclear_backward, float(init_keep)
        self.mask_lr = mask_lr
        self.logits = nn.Parameter(
            torch.full((self.num_layers, self.num_edges), math.log(init_keep / (1.0 - init_keep)))
        )
        self.steps = 0  # training steps taken (in the state dict)
        self._svd_states = [NuclearNormState() for _ in range(self.num_layers)]
        self._nuclear_cache = None  # (value, d/dw [K, E]) from the last SVD step

    # The backbone's parameters are the ego embeddings the BPR regulariser reads.
    @property
    def user_emb(self):
        return self.net.user_emb

    @property
    def item_emb(self):
        return self.net.item_emb

    @property
    def backend(self):
        return self.net.backend

    @backend.setter
    def backend(self, name):
        self.net.backend = name

    def get_extra_state(self):
        return {"steps": self.steps}

    def set_extra_state(self, state):
        self.steps = int(state["steps"])
        self._nuclear_cache = None  # recomputed at the next step

    def _check_graph(self, graph):
        if graph.num_edges != self.num_edges:
            raise ValueError(
                f"SGCN learned one mask logit per interaction of a graph with "
                f"{self.num_edges} edges; this graph has {graph.num_edges} (run it "
                "on the training graph it was built for)"
            )

    def mask_spec(self, mode: str, seed: int = 0, offset: int = 0) -> list[dict]:
        """Per-layer ``masked_spmm`` kwargs for ``mode`` (logits detached: ARM drives their grads).

        Layer k draws from counters ``offset + k * E + e`` (``layer_offset``)."""
        phi = self.logits.detach()
        return [
            {
                "logits": phi[k],
                "mode": mode,
                "seed": seed,
                "offset": layer_offset(offset, k, self.num_edges),
            }
            for k in range(self.num_layers)
        ]

    def keep_probabilities(self) -> torch.Tensor:
        """σ(Φ) [K, E] (edge-id order), detached: each interaction's keep probability per layer."""
        return torch.sigmoid(self.logits.detach())

    def keep_scores(self, graph) -> torch.Tensor:
        """The keep probabilities σ(Φ) [K, E] (the denoiser's report; see ``models.base``)."""
        self._check_graph(graph)
        return self.keep_probabilities()

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser groups: the backbone at ``lr``, the mask logits at ``mask_lr`` (default ``lr``)."""
        rest = [p for p in self.parameters() if p is not self.logits]
        return [{"params": rest, "lr": lr}, {"params": [self.logits], "lr": self.mask_lr or lr}]

    def forward(self, graph, mask_spec=None):
        """(user_emb, item_emb) on the masked graph: ``hard`` masks in eval mode, one Bernoulli
        sample in training mode, or the given ``mask_spec``."""
        self._check_graph(graph)
        if mask_spec is None:
            if self.training:
                mask_spec = self.mask_spec("bernoulli", self._draw_seed())
            else:
                mask_spec = self.mask_spec("hard")
        return self.net(graph, mask_spec)

    @staticmethod
    def _draw_seed() -> int:
        # From torch's RNG, so torch.manual_seed makes a run reproducible.
        return int(torch.randint(0, 2**62, (1,)).item())

    def _pass(self, graph, side_user, side_item, specs):
        """Layer outputs of a pass whose layer-1 normalised products are given (the dual's)."""
        net = self.net
        x_user, x_item = net.user_emb, net.item_emb
        layers = [(x_user, x_item), net.transform(0, x_user, x_item, side_user, side_item)]
        for k in range(1, self.num_layers):
            layers.append(net.propagate(graph, *layers[-1], k, None, specs))
        return layers

    def _nuclear(self, graph, keep):
        """(Σ_k ||R ⊙ keep_k||_n, its gradient d/dkeep [K, E]) from the last SVD step, refreshed
        every ``svd_every`` steps; None when γ = 0."""
        if self.gamma == 0.0:
            return None
        if self._nuclear_cache is None or self.steps % self.svd_every == 0:
            values, grads = [], []
            with torch.enable_grad():
                for k in range(self.num_layers):
                    w = keep[k].detach().requires_grad_()
                    value = nuclear_norm(
                        graph,
                        w,
                        self.svd_rank,
                        self._svd_states[k],
                        backward=self.nuclear_backward,
                        n_iter=self.svd_iters,
                    )
                    values.append(value.detach())
                    grads.append(torch.autograd.grad(value, w)[0])
            self._nuclear_cache = (torch.stack(values).sum(), torch.stack(grads))
        return self._nuclear_cache

    def loss(self, graph, batch: Batch, mask_spec=None) -> dict:
        """{loss, bpr, reg, penalty} of one SGCN training step (module docstring).

        ``loss``'s gradient w.r.t. the embeddings is the BPR + L2 gradient of the ``arm_pos``
        pass; w.r.t. the logits it is the ARM/DisARM estimate + β σ'(Φ) + the nuclear term's.
        ``penalty`` is β Σσ(Φ) + γ Σ_k (truncated nuclear norm). In eval mode, or with an explicit
        ``mask_spec``, it is the backbone's loss on those masks.
        """
        net = self.net
        self._check_graph(graph)
        if mask_spec is not None or not self.training:
            return net.loss(
                graph, batch, self.mask_spec("hard") if mask_spec is None else mask_spec
            )
        seed = self._draw_seed()
        pos_specs = self.mask_spec("arm_pos", seed)
        neg_specs = self.mask_spec("arm_neg", seed)
        (pos_u, pos_i), (neg_u, neg_i) = masked_spmm_dual(
            graph, net.user_emb, net.item_emb, pos_specs[0]["logits"], seed, 0, backend=net.backend
        )
        cuda = [graph.device] if graph.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the neg pass replays the same dropout draws
            terms = net.batch_loss(self._pass(graph, pos_u, pos_i, pos_specs), batch, net.decay)
        with torch.no_grad():
            bpr_neg = net.batch_loss(self._pass(graph, neg_u, neg_i, neg_specs), batch, 0.0)["bpr"]
        bpr_pos = terms["bpr"]
        arm_backend = net.backend if net.backend in _ARM_BACKENDS else None
        phi = self.logits
        grad = arm_grad(
            phi.detach(), seed, 0, bpr_pos.detach(), bpr_neg, self.estimator, backend=arm_backend
        )
        with torch.no_grad():
            # The penalties' logit gradient in closed form, σ'(Φ) (β + γ dN/dkeep), added to the
            # ARM estimate: one pass over the K x E logits instead of an autograd graph of them.
            keep = torch.sigmoid(phi)
            penalty = self.beta * keep.sum()
            coef = self.beta
            nuclear = self._nuclear(graph, keep)
            if nuclear is not None:
                penalty = penalty + self.gamma * nuclear[0]
                coef = nuclear[1] * self.gamma + self.beta
            grad += keep * (1 - keep) * coef
        linear = torch.dot(grad.reshape(-1), phi.reshape(-1))  # d/dΦ = grad, value cancelled
        terms["loss"] = terms["loss"] + penalty + (linear - linear.detach())
        terms["penalty"] = penalty
        self.steps += 1
        return terms


class SLightGCN(SGCN):
    """S-LightGCN: SGCN masks on LightGCN (backbone kwargs: dim, num_layers, init_std)."""

    backbone_cls = LightGCN


class SNGCF(SGCN):
    """S-NGCF: SGCN masks on NGCF (backbone kwargs: dim, layer_dims, mess_dropout, node_dropout;
    the learned masks replace node dropout in training)."""

    backbone_cls = NGCF


@dataclass
class _SGCNOptions:
    beta: float = option(
        0.001, "SGCN: L0 coefficient (beta * sum of the keep probabilities)", min=0
    )
    gamma: float = option(
        0.001,
        "SGCN: low-rank coefficient (gamma * truncated nuclear norm per layer; 0: no SVD)",
        min=0,
    )
    svd_rank: int = option(128, "SGCN: singular values in the truncated nuclear norm", min=1)
    svd_every: int = option(
        100,
        "SGCN: recompute the SVD every N steps (its gradient is reused in between)",
        min=1,
        metavar="STEPS",
    )
    svd_iters: int = option(
        2, "SGCN: maximum block-Krylov depth of each (warm-started) SVD", min=0, metavar="DEPTH"
    )
    estimator: str = option(
        "arm",
        "SGCN: mask gradient estimator (arm: the paper's; disarm: lower variance)",
        choices=ESTIMATORS,
    )
    nuclear_backward: str = option(
        "exact",
        "SGCN: nuclear-norm gradient (exact U V^T, or the paper's power iteration)",
        choices=BACKWARDS,
    )
    init_keep: float = option(
        0.9,
        "SGCN: initial keep probability of every interaction",
        min=0,
        max=1,
        min_open=True,
        max_open=True,
        metavar="P",
    )
    mask_lr: float = option(
        None,
        "SGCN: Adam learning rate of the mask logits (default: --lr)",
        kind=float,
        min=0,
        min_open=True,
        resumable=True,
    )


@dataclass
class SLightGCNConfig(LightGCNConfig, _SGCNOptions):
    layers: int = option(3, "propagation layers", min=1)


@dataclass
class SNGCFConfig(NGCFConfig, _SGCNOptions):
    pass


def _sgcn_kwargs(cfg, ctx) -> dict:
    return dict(
        num_users=ctx.num_users,
        num_items=ctx.num_items,
        num_edges=ctx.train.num_edges,
        beta=cfg.beta,
        gamma=cfg.gamma,
        svd_rank=cfg.svd_rank,
        svd_every=cfg.svd_every,
        svd_iters=cfg.svd_iters,
        estimator=cfg.estimator,
        nuclear_backward=cfg.nuclear_backward,
        init_keep=cfg.init_keep,
        mask_lr=cfg.mask_lr,
        dim=cfg.dim,
        decay=cfg.decay,
    )


@register_model(
    "s-lightgcn",
    config=SLightGCNConfig,
    summary="SGCN masks on LightGCN (Chen et al., SIGIR'21; ARM/DisARM, L0, nuclear norm)",
)
def build_slightgcn(cfg: SLightGCNConfig, ctx) -> SLightGCN:
    return SLightGCN(num_layers=cfg.layers, init_std=cfg.init_std, **_sgcn_kwargs(cfg, ctx))


@register_model(
    "s-ngcf",
    config=SNGCFConfig,
    summary="SGCN masks on NGCF (Chen et al., SIGIR'21; ARM/DisARM, L0, nuclear norm)",
)
def build_sngcf(cfg: SNGCFConfig, ctx) -> SNGCF:
    return SNGCF(
        layer_dims=(cfg.dim,) * cfg.layers,
        mess_dropout=cfg.mess_dropout,
        node_dropout=cfg.node_dropout,
        **_sgcn_kwargs(cfg, ctx),
    )
