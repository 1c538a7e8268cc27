"""SimGCL (Yu et al., SIGIR'22, "Are graph augmentations necessary?") on the propagation op.

LightGCN's encoder; each layer of a *perturbed* pass adds uniform noise aligned with the
embedding's signs and of fixed L2 norm ε per row (``perturb_rows``):

    E^(l) = Ã E^(l-1) + Δ^(l),   Δ_v = ε · sign(e_v) ⊙ normalize(u_v),  u_v ~ U(0, 1)^d
    readout = mean(E^(1), ..., E^(L))                       (E^(0) left out, as SimGCL)
    loss = BPR(clean pass) + L2 + λ (InfoNCE_users(v1, v2) + InfoNCE_items(v1, v2))

v1, v2 are the readouts of two independently perturbed passes; the InfoNCE terms run over the
batch's distinct users and distinct positive items, with cosine similarity / τ (``info_nce``).
So a step is three propagation passes (one clean, two perturbed), as in the official code;
without plug-ins they are computed as one clean pass plus the views' deviations from it, with
one backward (``SimGCL.view_deviations``; same values and gradients). Evaluation uses the clean
pass. The noise comes after the plug-ins' ``after_layer`` (DGR's GMP
desmooths the propagated embeddings, then the layer is perturbed).

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

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import option
from ..ops import dot_logsumexp, masked_spmm
from .lightgcn import LightGCN
from .registry import register_model


def perturb_rows(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x + ε · sign(x) ⊙ normalize(U(0, 1) noise) row-wise (each row moves by ≤ ε in L2)."""
    noise = F.normalize(torch.rand_like(x), dim=1)
    return x + eps * torch.sign(x) * noise


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """mean_r -log softmax_j(cos(a_r, b_j) / τ)[r] for two views a, b [n, d] of n nodes.

    The log-sum-exp over j is ``ops.dot_logsumexp`` (fused, the [n, n] logits never stored).
    """
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return (dot_logsumexp(a, b, temperature) - (a * b).sum(1) / temperature).mean()


class PerturbedLightGCN(LightGCN):
    """What SimGCL and XSimGCL share: LightGCN's propagation with optionally perturbed layers,
    the readout without E^(0), and the weighted InfoNCE between two views.

    ``perturb_training``: whether a training step's pass (``batch`` given) is perturbed
    (XSimGCL: its one pass is; SimGCL: its recommendation pass is clean).
    """

    perturb_training = False

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 64,
        num_layers: int = 3,
        cl_weight: float = 0.5,
        cl_temperature: float = 0.2,
        noise_eps: float = 0.1,
        decay: float = 1e-4,
        backend: str | None = None,
    ):
        super().__init__(
            num_users, num_items, dim=dim, num_layers=num_layers, decay=decay, backend=backend
        )
        name = type(self).__name__
        if self.num_layers < 1:
            raise ValueError(
                f"{name} needs num_layers >= 1 (its readout leaves out E^(0)), got {num_layers}"
            )
        if not (cl_weight >= 0 and cl_temperature > 0 and noise_eps >= 0):
            raise ValueError(
                f"{name} needs cl_weight >= 0, cl_temperature > 0, noise_eps >= 0; "
                f"got {cl_weight}, {cl_temperature}, {noise_eps}"
            )
        self.cl_weight, self.cl_temperature = float(cl_weight), float(cl_temperature)
        self.noise_eps = float(noise_eps)
        torch.nn.init.xavier_uniform_(self.user_emb)
        torch.nn.init.xavier_uniform_(self.item_emb)

    def layer_outputs(self, graph, batch=None, mask_spec=None, perturbed: bool | None = None):
        """[(E_user^(k), E_item^(k)) for k = 0..L]; each propagated layer perturbed when
        ``perturbed`` (default: a training step of a model with ``perturb_training``)."""
        if perturbed is None:
            perturbed = self.perturb_training and batch is not None
        self._check_graph(graph, mask_spec)
        outs = [(self.user_emb, self.item_emb)]
        for k in range(self.num_layers):
            x_user, x_item = self.propagate(graph, *outs[-1], k, batch, mask_spec)
            if perturbed:
                x_user, x_item = (
                    perturb_rows(x_user, self.noise_eps),
                    perturb_rows(x_item, self.noise_eps),
                )
            outs.append((x_user, x_item))
        return outs

    @staticmethod
    def readout(layers):
        """Mean over layers 1..L (E^(0) is not part of SimGCL's readout)."""
        return LightGCN.readout(layers[1:])

    def readout_rows(self, layers, users, items):
        """``readout`` of the rows ``users`` [n] and ``items`` [m] only (the readout is row-wise)."""
        return self.readout([(x_u[users], x_i[items]) for x_u, x_i in layers])

    def contrast(self, view_a, view_b) -> torch.Tensor:
        """λ (InfoNCE over users + InfoNCE over items) between two views, each a pair (user rows
        [n, D], item rows [m, D]) of the same nodes."""
        return self.cl_weight * (
            info_nce(view_a[0], view_b[0], self.cl_temperature)
            + info_nce(view_a[1], view_b[1], self.cl_temperature)
        )


class SimGCL(PerturbedLightGCN):
    """SimGCL; ``cl_weight`` λ, ``cl_temperature`` τ, ``noise_eps`` ε (module docstring)."""

    def loss(self, graph, batch, mask_spec=None) -> dict:
        """The clean pass's terms (BPR, L2, plug-ins) plus "cl" from two perturbed passes."""
        if self.cl_weight == 0 or self.plugins or mask_spec is not None:
            terms = super().loss(graph, batch, mask_spec)
            if self.cl_weight > 0:
                users, items = torch.unique(batch.users), torch.unique(batch.pos)
                views = [
                    self.readout_rows(
                        self.layer_outputs(graph, batch, mask_spec, perturbed=True), users, items
                    )
                    for _ in range(2)
                ]
                terms["cl"] = self.contrast(*views)
                terms["loss"] = terms["loss"] + terms["cl"]
            return terms
        layers = self.layer_outputs(graph, batch)
        terms = self.batch_loss(layers, batch, self.decay)
        users, items = torch.unique(batch.users), torch.unique(batch.pos)
        clean = self.readout_rows(layers, users, items)
        dev_u, dev_i = self.view_deviations(graph, layers, users, items)
        d = self.dim
        views = [
            (clean[0] + dev_u[:, v * d : (v + 1) * d], clean[1] + dev_i[:, v * d : (v + 1) * d])
            for v in range(2)
        ]
        terms["cl"] = self.contrast(*views)
        terms["loss"] = terms["loss"] + terms["cl"]
        return terms

    @torch.no_grad()
    def view_deviations(self, graph, layers, users, items):
        """What the two perturbed passes add to the clean readout on rows ``users``, ``items``:
        ([n, 2D], [m, 2D]), view v in columns [vD, (v + 1)D).

        With no plug-in and no mask the propagation Ã is one fixed linear map, and the noise
        Δ^(l) = ε sign(·) ⊙ normalize(u) has no gradient (sign is flat, u is drawn), so a view is
        E_v^(l) = C^(l) + D_v^(l) with C the clean pass and D_v^(l) = Ã D_v^(l-1) + Δ_v^(l),
        D_v^(0) = 0. The gradient of a view is the clean pass's, which autograd already has: the
        three passes' backward is one (the contrast's gradient joins the clean layers'). Only
        the deviations propagate, both views at once ([·, 2D] columns: the graph's index traffic
        paid once per layer); the first layer needs no product (D^(1) = Δ^(1)) and the last one
        only the rows the contrast reads. The noise is drawn in the order and shapes of two
        separate passes (view 1's layers, then view 2's), so the same seed gives the same
        uniforms as the three-pass computation.
        """
        num_layers, d = self.num_layers, self.dim
        draws = [
            [(torch.rand_like(c_u), torch.rand_like(c_i)) for c_u, c_i in layers[1:]]
            for _ in range(2)
        ]
        rows = (users, items)
        dev = sums = None
        for k in range(num_layers):
            last = k == num_layers - 1
            if dev is None:
                prop = None
            elif last:
                prop = propagate_rows(graph, dev, rows)
            else:
                prop = masked_spmm(graph, *dev, backend=self.backend)
            out = []
            for side in range(2):
                clean = layers[k + 1][side].detach()
                if last:
                    clean = clean[rows[side]]
                if prop is None:
                    delta = torch.empty(
                        clean.shape[0], 2 * d, dtype=clean.dtype, device=clean.device
                    )
                    sign = torch.sign(clean)
                for v in range(2):
                    u = draws[v][k][side]
                    u = u[rows[side]] if last else u
                    # u ε / |u| (F.normalize's clamp) times sign(E_v^(l) before its noise)
                    u = u * (self.noise_eps / u.norm(dim=1, keepdim=True).clamp_min(1e-12))
                    if prop is None:
                        torch.mul(u, sign, out=delta[:, v * d : (v + 1) * d])
                    else:
                        p = prop[side][:, v * d : (v + 1) * d]
                        p.addcmul_(u, torch.add(clean, p).sign_())
                out.append(delta if prop is None else prop[side])
            dev = tuple(out)
            picked = dev if last else (dev[0][users], dev[1][items])
            sums = picked if sums is None else (sums[0] + picked[0], sums[1] + picked[1])
        return sums[0] / num_layers, sums[1] / num_layers


def propagate_rows(graph, x, rows):
    """Rows ``rows`` = (users [n], items [m]) of one plain propagation (``masked_spmm`` with no
    mask, weights or self-loops) of x = (x_user [U, c], x_item [I, c]): ([n, c], [m, c]).

    The rows' slice of the CSR with Â_ui = 1 / sqrt(deg_u deg_i), times x (torch's CSR product):
    the contrast reads a few thousand rows of the last layer, not the whole graph's product.
    """
    out = []
    for side, (rowptr, col, deg, deg_col) in enumerate(
        (
            (graph.rowptr_u, graph.col_item, graph.deg_u, graph.deg_i),
            (graph.rowptr_i, graph.col_user, graph.deg_i, graph.deg_u),
        )
    ):
        r, src = rows[side], x[1 - side]
        count = deg[r]
        crow = torch.zeros(r.shape[0] + 1, dtype=torch.int64, device=r.device)
        torch.cumsum(count, 0, out=crow[1:])
        total = int(crow[-1])
        seg = torch.repeat_interleave(
            torch.arange(r.shape[0], device=r.device), count, output_size=total
        )
        edge = rowptr[r][seg] + torch.arange(total, device=r.device) - crow[:-1][seg]
        nbr = col[edge]
        w = (count[seg] * deg_col[nbr]).to(src.dtype).rsqrt()
        with warnings.catch_warnings():  # torch's one-time "sparse CSR is in beta" notice
            warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
            sub = torch.sparse_csr_tensor(
                crow, nbr, w, size=(r.shape[0], src.shape[0]), check_invariants=False
            )
        out.append(sub @ src)
    return tuple(out)


@dataclass
class SimGCLConfig:
    dim: int = option(64, "embedding size", min=1)
    layers: int = option(3, "propagation layers", min=1)
    decay: float = option(1e-4, "L2 coefficient on the batch's layer-0 embeddings", min=0)
    cl_weight: float = option(0.5, "lambda, weight of the contrastive (InfoNCE) term", min=0)
    cl_temperature: float = option(0.2, "tau, InfoNCE temperature", min=0, min_open=True)
    noise_eps: float = option(
        0.1, "epsilon, L2 norm of the noise added to each row per layer", min=0
    )


@register_model(
    "simgcl",
    config=SimGCLConfig,
    summary="SimGCL (Yu et al., SIGIR'22): LightGCN + InfoNCE between noise-perturbed views",
)
def build_simgcl(cfg: SimGCLConfig, ctx) -> SimGCL:
    return SimGCL(
        ctx.num_users,
        ctx.num_items,
        dim=cfg.dim,
        num_layers=cfg.layers,
        cl_weight=cfg.cl_weight,
        cl_temperature=cfg.cl_temperature,
        noise_eps=cfg.noise_eps,
        decay=cfg.decay,
    )
