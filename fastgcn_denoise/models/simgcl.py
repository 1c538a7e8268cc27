"""SimGCL (Yu et al., SIGIR'22, "Are graph augmentations necessary?") on the propagation op.

LightGCN's encoder; each layer of a *perturbed* pass adds uniform noise aligned with the
embedding's signs and of fixed L2 norm ε per row (``perturb_rows``):

    E^(l) = Ã E^(l-1) + Δ^(l),   Δ_v = ε · sign(e_v) ⊙ normalize(u_v),  u_v ~ U(0, 1)^d
    readout = mean(E^(1), ..., E^(L))                       (E^(0) left out, as SimGCL)
    loss = BPR(clean pass) + L2 + λ (InfoNCE_users(v1, v2) + InfoNCE_items(v1, v2))

v1, v2 are the readouts of two independently perturbed passes; the InfoNCE terms run over the
batch's distinct users and distinct positive items, with cosine similarity / τ (``info_nce``).
The uniforms u come from Philox (``ops.sign_noise``), one key per step drawn from torch's
generator, one counter per (view, layer, node, column): any row of any layer can be drawn alone.
So a step is three propagation passes (one clean, two perturbed), as in the official code;
without plug-ins they are computed as one clean pass on ``ops.propagation_rows`` (LightGCN's
fast step, read out at the batch's and the contrast's rows) plus the views' deviations from it,
with one backward (``SimGCL.view_deviations``; same values and gradients). Evaluation uses the
clean pass. The noise comes after the plug-ins' ``after_layer`` (DGR's GMP
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

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import option
from ..ops import bipartite_operator, dot_logsumexp, propagation_rows, sign_noise
from ..ops.sign_noise import counters_per_row
from ..ops.weighted_spmm import csr_product
from .base import _bpr_terms
from .lightgcn import LightGCN
from .registry import register_model


def noise_seed() -> int:
    """One step's Philox key for the noise, drawn from torch's default generator (so
    ``torch.manual_seed`` fixes the noise)."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64))


def noise_offset(view: int, layer: int, num_layers: int, num_nodes: int, dim: int) -> int:
    """First Philox counter of view ``view``'s layer ``layer`` (0-based): node v (users 0..U-1,
    then items U + i) draws counters base + v q .. base + v q + q - 1, q = ⌈dim / 4⌉
    (``ops.sign_noise``)."""
    return (view * num_layers + layer) * num_nodes * counters_per_row(dim)


def perturb_rows(x: torch.Tensor, eps: float, seed: int, offset: int, backend=None):
    """x + ε · sign(x) ⊙ normalize(u) row-wise (each row moves by ≤ ε in L2); u [n, d] the
    uniforms of row r from Philox counters offset + r ⌈d / 4⌉ + ... (``ops.sign_noise``)."""
    return x + sign_noise(x.detach(), eps, seed, [offset], backend=backend)[0]


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """mean_r -log softmax_j(cos(a_r, b_j) / τ)[r] for two views a, b [n, d] of n nodes.

    The log-sum-exp over j is ``ops.dot_logsumexp`` (fused, the [n, n] logits never stored).
    """
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return (dot_logsumexp(a, b, temperature) - (a * b).sum(1) / temperature).mean()


def operator_rows(graph, dtype, rows: torch.Tensor | None = None, copies: int = 1):
    """(crow, col, weight): the rows ``rows`` [n] (node ids; None: all N) of the normalised
    adjacency Â (``ops.bipartite_operator``) as a CSR of n rows over the N nodes; with
    ``copies`` = V, the block-diagonal diag(Â[rows], ..., Â[rows]) of V n rows over V N: one
    product for V stacked [V N, d] blocks (SimGCL's views), each row gathering only d columns."""
    pattern, weight = bipartite_operator(graph, dtype)
    if rows is None:
        crow, col = pattern.rowptr, pattern.col
    else:
        crow, col, weight = _rows_of(pattern, weight, rows)
    nodes, nnz = pattern.num_rows, col.shape[0]
    return (
        torch.cat([crow[:-1] + v * nnz for v in range(copies)] + [crow[-1:] * copies]),
        torch.cat([col + v * nodes for v in range(copies)]),
        weight.repeat(copies),
    )


def _rows_of(pattern, weight, rows):
    """The CSR (crow, col, weight) of the operator's rows ``rows`` (index_select gathers:
    advanced indexing was 10x slower for these)."""
    start = torch.index_select(pattern.rowptr, 0, rows)
    count = torch.index_select(pattern.rowptr, 0, rows + 1) - start
    crow = torch.zeros(rows.shape[0] + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(count, 0, out=crow[1:])
    total = int(crow[-1])
    seg = torch.repeat_interleave(
        torch.arange(rows.shape[0], device=rows.device), count, output_size=total
    )
    entry = torch.index_select(start - crow[:-1], 0, seg) + torch.arange(total, device=rows.device)
    return crow, torch.index_select(pattern.col, 0, entry), torch.index_select(weight, 0, entry)


_VIEWS_OPERATOR = weakref.WeakKeyDictionary()  # graph -> {dtype: operator_rows(copies=2)}


def _views_operator(graph, dtype=torch.float32):
    """``operator_rows(graph, dtype, copies=2)``, cached per graph (immutable)."""
    cache = _VIEWS_OPERATOR.setdefault(graph, {})
    if dtype not in cache:
        cache[dtype] = operator_rows(graph, dtype, copies=2)
    return cache[dtype]


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

    def layer_outputs(
        self,
        graph,
        batch=None,
        mask_spec=None,
        perturbed: bool | None = None,
        view: int = 0,
        seed: int | None = None,
    ):
        """[(E_user^(k), E_item^(k)) for k = 0..L]; each propagated layer perturbed when
        ``perturbed`` (default: a training step of a model with ``perturb_training``), with the
        uniforms of view ``view`` under Philox key ``seed`` (default: ``noise_seed()``)."""
        if perturbed is None:
            perturbed = self.perturb_training and batch is not None
        self._check_graph(graph, mask_spec)
        if perturbed and seed is None:
            seed = noise_seed()
        nodes = self.num_users + self.num_items
        outs = [(self.user_emb, self.item_emb)]
        for k in range(self.num_layers):
            x_user, x_item = self.propagate(graph, *outs[-1], k, batch, mask_spec)
            if perturbed:
                base = noise_offset(view, k, self.num_layers, nodes, x_user.shape[1])
                x_user = perturb_rows(x_user, self.noise_eps, seed, base, self.backend)
                x_item = perturb_rows(
                    x_item,
                    self.noise_eps,
                    seed,
                    base + self.num_users * counters_per_row(x_item.shape[1]),
                    self.backend,
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
        if self.plugins or mask_spec is not None or torch.compiler.is_compiling():
            terms = super().loss(graph, batch, mask_spec)
            if self.cl_weight > 0:
                users, items = torch.unique(batch.users), torch.unique(batch.pos)
                seed = noise_seed()
                views = [
                    self.readout_rows(
                        self.layer_outputs(graph, batch, mask_spec, True, v, seed), users, items
                    )
                    for v in range(2)
                ]
                terms["cl"] = self.contrast(*views)
                terms["loss"] = terms["loss"] + terms["cl"]
            return terms
        self._check_graph(graph)
        users, pos, neg = batch
        b, n_users, k = users.shape[0], self.num_users, self.num_layers
        rows = [users, pos + n_users, neg + n_users]
        if self.cl_weight > 0:
            cl_users, cl_items = torch.unique(users), torch.unique(pos)
            cl_rows = torch.cat([cl_users, cl_items + n_users])
            rows.append(cl_rows)
        read, ego, *layers = propagation_rows(
            graph,
            self.user_emb,
            self.item_emb,
            torch.cat(rows),
            k,
            self.backend,
            weights=(0.0,) + (1.0 / k,) * k,
            keep_layers=self.cl_weight > 0,
        )
        ego_sq = ego[: 3 * b].pow(2).sum()
        terms = _bpr_terms(read[:b], read[b : 2 * b], read[2 * b : 3 * b], ego_sq, self.decay)
        if self.cl_weight > 0:
            clean, dev = read[3 * b :], self.view_deviations(graph, layers, cl_rows)
            n = cl_users.shape[0]
            views = [(clean[:n] + dev[v, :n], clean[n:] + dev[v, n:]) for v in range(2)]
            terms["cl"] = self.contrast(*views)
            terms["loss"] = terms["loss"] + terms["cl"]
        return terms

    @torch.no_grad()
    def view_deviations(self, graph, layers, rows):
        """What the two perturbed passes add to the clean readout on the nodes ``rows`` [n]
        (users u, items U + i): [2, n, D], view v at [v].

        With no plug-in and no mask the propagation Ã is one fixed linear map, and the noise
        Δ^(l) = ε sign(·) ⊙ normalize(u) has no gradient (sign is flat, u is drawn), so a view is
        E_v^(l) = C^(l) + D_v^(l) with C the clean pass (``layers``: C^(1..L) [N, D]) and
        D_v^(l) = Ã D_v^(l-1) + Δ_v^(l), D_v^(0) = 0. The gradient of a view is the clean
        pass's, which autograd already has: the three passes' backward is one (the contrast's
        gradient joins the clean readout's rows). Only the deviations propagate, the two views
        as one product of the block-diagonal diag(Ã, Ã) with the stacked [2N, D] (rows of D
        columns: 1.5x faster than [N, 2D]); the first layer needs no product (D^(1) = Δ^(1)) and the last one only the
        rows the contrast reads, the noise of those rows only (``ops.sign_noise``: Philox
        counters per node, the same uniforms as the three explicit passes of
        ``layer_outputs``).
        """
        num_layers, d = self.num_layers, self.dim
        nodes = self.num_users + self.num_items
        seed = noise_seed()
        dev = total = None
        for k in range(num_layers):
            last = k == num_layers - 1
            if dev is None:
                prop = None
            else:
                if last:
                    a = operator_rows(graph, dev.dtype, rows, 2)
                else:
                    a = _views_operator(graph, dev.dtype)
                prop = csr_product(a[0], a[1], None, a[2], dev.view(2 * nodes, d), self.backend)
                prop = prop.view(2, -1, d)
            offsets = [noise_offset(v, k, num_layers, nodes, d) for v in range(2)]
            dev = sign_noise(
                torch.index_select(layers[k], 0, rows) if last else layers[k],
                self.noise_eps,
                seed,
                offsets,
                prop=prop,
                nodes=rows if last else None,
                backend=self.backend,
            )
            picked = dev if last else torch.index_select(dev, 1, rows)
            total = picked if total is None else total + picked
        return total / num_layers


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
