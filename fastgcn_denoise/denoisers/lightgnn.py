"""LightGNN (Chen, Xia & Huang, WSDM'25): a pruned student distilled from LightGCN through an
intermediate model on the high-order closure graph.

One model class serves the three stages. ``PrunableLightGCN`` is the official ``LightGCN_sp``:
free user/item tables (Xavier uniform), a fixed normalised graph over the U + I nodes with one
learnable weight and one binary mask per stored entry, a binary mask per embedding entry, and

    E_0 = [E_user; E_item] * M_emb,   E_l = (A_hat * W * M) E_{l-1},   out = E_0 + ... + E_L.

- teacher:      A_hat = D~^-1/2 (A + I) D~^-1/2 (``NodeGraph.build(graph, 1)``), 8 layers, no
                weights or masks (LightGCN as the LightGNN code trains it: self-loops inside the
                normalisation, sum readout);
- intermediate: A_hat = the normalised (h+1)-hop closure I + A + ... + A^(h+1) (order h + 1,
                path counts as values, user-user and item-item entries), learnable W;
- student:      A + I again, learnable W, masks M and M_emb pruned between runs.

Decisions where the paper and the official code differ (the code produced the published
numbers; ``../shared/research/official_code.md`` section 1 has the details):

- Weights and masks live on every *directed* entry, self-loops included (code). The paper's
  Eq. 4 ties the two directions and adds an unweighted residual; in the code the residual is the
  self-loop entry of A_hat, weighted and prunable. "Edges kept" counts these entries.
- No renormalisation after weighting or pruning (code and paper agree): A_hat is normalised once.
- Importance (Eq. 8): w + beta1 sigma(e_r . e_c) + beta2 w~, with beta1 on the prediction and
  beta2 on the intermediate weight as in the code (the paper's Eq. 8 names them the other way);
  e and w~ are the intermediate model's final embeddings and learned weights W (Eq. 8's W^t).
- The embedding-level KD teacher side is the sum of the teacher's layers from
  ``ekd_from_layer`` on (code: 2; the paper's Eq. 6 uses the final embedding: 0).
- Uniformity: log sum_j exp(e_a . e_j / tau) over all nodes for the four pairs of the code
  (batch users vs all items / users, batch items vs all users / items), computed stably (the
  code's exp without max subtraction, and its + 1e-5 guard, are not kept).
- Subspace constraint: Eq. 9 as written, -log(sum_{S_a} exp / sum_all exp) on user-user and
  item-item pairs with S_a from Eq. 10 (the code's soft-target cross-entropy over four blocks is
  not followed); it is the fused log-sum-exp with the mask positive sets.
- Model selection and the pruning state use validation (the code uses test).
"""
from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import config as cfgmod
from ..config import option
from ..ops import CSRPattern, dot_logsumexp, power_sum, weighted_spmm
from ..ops.sddmm import sddmm_kernel
from ..models.registry import register_model


@dataclass
class NodeGraph:
    """D^-1/2 C D^-1/2 of a power sum C = I + A + ... + A^order over the U + I nodes.

    ``pattern`` (entry e = position e of CSR(C), users first, columns sorted), ``values`` [nnz]
    float32 (the normalised entries), ``counts`` [nnz] float64 (C itself: path counts).
    """

    pattern: CSRPattern
    values: torch.Tensor
    counts: torch.Tensor
    num_users: int
    num_items: int
    order: int

    @classmethod
    def build(cls, graph, order: int, backend: str | None = None) -> "NodeGraph":
        c = power_sum(graph, order, backend=backend)
        rows = torch.repeat_interleave(torch.arange(c.num_rows, device=c.val.device), c.rowptr.diff())
        deg = torch.zeros(c.num_rows, dtype=torch.float64, device=c.val.device).index_add_(0, rows, c.val)
        r = deg.pow(-0.5)  # every node has its self-loop: deg >= 1
        values = (r[rows] * c.val * r[c.col]).to(torch.float32)
        return cls(c.pattern(), values, c.val, graph.num_users, graph.num_items, int(order))

    @property
    def nnz(self) -> int:
        return self.pattern.nnz

    @property
    def num_nodes(self) -> int:
        return self.num_users + self.num_items

    def entry_rows(self) -> torch.Tensor:
        """int64 [nnz]: the row (source node of the product's output) of each entry."""
        return torch.repeat_interleave(torch.arange(self.num_nodes, device=self.values.device),
                                       self.pattern.rowptr.diff(), output_size=self.nnz)

    def keys(self) -> torch.Tensor:
        """int64 [nnz] row * N + col, ascending (CSR order)."""
        return self.entry_rows() * self.num_nodes + self.pattern.col

    def positions_of(self, other: "NodeGraph") -> torch.Tensor:
        """int64 [other.nnz]: where each entry of ``other`` sits in this graph (other ⊂ self)."""
        mine, theirs = self.keys(), other.keys()
        pos = torch.searchsorted(mine, theirs).clamp_(max=max(self.nnz - 1, 0))
        if other.nnz and not torch.equal(mine[pos], theirs):
            raise ValueError(f"the order-{other.order} graph is not contained in the "
                             f"order-{self.order} graph")
        return pos

    def interaction_entries(self, graph) -> torch.Tensor:
        """int64 [2, E]: entry of interaction e = (u, i) in row u (message item -> user) and in
        row U + i (user -> item)."""
        users, items = graph.edges()
        n, u0 = self.num_nodes, self.num_users
        keys = self.keys()
        forward = torch.searchsorted(keys, users * n + u0 + items)
        backward = torch.searchsorted(keys, (u0 + items) * n + users)
        return torch.stack([forward, backward])

    def to(self, device) -> "NodeGraph":
        return NodeGraph(self.pattern.to(device), self.values.to(device), self.counts.to(device),
                         self.num_users, self.num_items, self.order)


class PrunableLightGCN(nn.Module):
    """LightGCN over a ``NodeGraph`` with per-entry weights and masks (module docstring).

    Args:
        graph: the ``NodeGraph`` it propagates on (not a parameter; keep it to rebuild).
        dim, num_layers: embedding width, propagation layers.
        learn_weights: whether the per-entry weights W are trained (False: W = 1, the teacher).
        backend: force a ``weighted_spmm`` backend.
    """

    def __init__(self, graph: NodeGraph, dim: int = 64, num_layers: int = 2,
                 learn_weights: bool = True, backend: str | None = None):
        super().__init__()
        if dim <= 0 or num_layers < 0:
            raise ValueError(f"need dim > 0 and num_layers >= 0, got {dim}, {num_layers}")
        self.graph, self.backend = graph, backend
        self.num_users, self.num_items = graph.num_users, graph.num_items
        self.dim, self.num_layers = int(dim), int(num_layers)
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(graph.num_users, dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(graph.num_items, dim)))
        self.edge_weight = nn.Parameter(torch.ones(graph.nnz), requires_grad=learn_weights)
        self.register_buffer("edge_mask", torch.ones(graph.nnz))
        self.register_buffer("emb_mask", torch.ones(graph.num_nodes, dim))
        # Set by the registered builders (``build_*``): what ``loss`` and ``keep_scores`` use.
        self.loss_weights = LossWeights()
        self.teacher: TeacherView | None = None   # the frozen model distilled from
        self.subspace_slack: int | None = None   # delta of Eq. 10 (None: no subspace term)
        self.importance: Importance | None = None  # the student's Eq. 8 ingredients

    def to(self, *args, **kwargs):
        out = super().to(*args, **kwargs)
        self.graph = self.graph.to(self.user_emb.device)
        return out

    def entry_weights(self) -> torch.Tensor:
        """[nnz]: A_hat * W * M, the values each layer multiplies by."""
        return self.graph.values * self.edge_weight * self.edge_mask

    def layer_outputs(self) -> list[torch.Tensor]:
        """[E_0, ..., E_L], each [U + I, d] (users first)."""
        x = torch.cat([self.user_emb, self.item_emb]) * self.emb_mask
        w = self.entry_weights()
        outs = [x]
        for _ in range(self.num_layers):
            outs.append(weighted_spmm(self.graph.pattern, w, outs[-1], backend=self.backend))
        return outs

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:self.num_users], x[self.num_users:]

    def forward(self, graph=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_emb [U, d], item_emb [I, d]): the sum over layers; scores are dot products.
        ``graph`` (the trainer's training ``BipartiteGraph``) is only checked: the model
        propagates on its own node graph, built from it."""
        if graph is not None:
            self._check_graph(graph)
        return self.split(sum(self.layer_outputs()))

    # ------------------------------------------------------------------ the trainer's API
    def _check_graph(self, graph):
        if (graph.num_users, graph.num_items) != (self.num_users, self.num_items):
            raise ValueError(f"graph has {graph.num_users} users x {graph.num_items} items but the "
                             f"model was built for {self.num_users} x {self.num_items}")

    def param_groups(self, lr: float) -> list[dict]:
        """Adam's groups: the trainable parameters only (the teacher's weights W stay 1)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def add_plugin(self, plugin):
        raise ValueError("the LightGNN models take no plug-ins: they propagate on their own node "
                         "graph (weighted_spmm), where the masked_spmm seams do not apply")

    def loss(self, graph, batch) -> dict:
        """``lightgnn_loss`` of a batch (users, pos, neg) with the builder's settings."""
        self._check_graph(graph)
        users, pos, neg = batch
        return lightgnn_loss(self, users, pos, neg, self.loss_weights, self.teacher,
                             subspace_slack=self.subspace_slack)

    @torch.no_grad()
    def keep_scores(self, graph):
        """[2, E] (edge-id order of ``graph``) for the student, None for the other stages: the
        entry of message item -> user (row 0) and user -> item (row 1); 0 where pruned, else
        0.5 + tanh(|importance|) / 2 in (0.5, 1), increasing with the Eq. 8 importance the
        pruning ranks by, so ``denoise``'s default threshold 0.5 gives exactly the pruned set."""
        if self.importance is None:
            return None
        self._check_graph(graph)
        score = edge_importance(self, self.importance).abs()
        score = torch.where(self.edge_mask > 0, 0.5 + 0.5 * torch.tanh(score), 0.0)
        return score[self.graph.interaction_entries(graph)]

    # ------------------------------------------------------------------ pruning state
    def kept_fractions(self) -> dict:
        """Fractions of stored entries and of embedding entries still kept."""
        return {"edges": float(self.edge_mask.mean()), "embeddings": float(self.emb_mask.mean())}

    def parameter_count(self) -> dict:
        """What inference stores: non-zero embedding entries and graph entries (with weights)."""
        return {"embedding_entries": int(self.emb_mask.sum()), "graph_entries": int(self.edge_mask.sum()),
                "total": int(self.emb_mask.sum()) + int(self.edge_mask.sum())}

    @torch.no_grad()
    def compacted(self) -> "PrunableLightGCN":
        """The same function for inference on the kept entries only: a graph of the kept entries
        with A_hat * W * M folded into its values, masked embeddings, no masks or weights left
        (its propagation touches only what pruning kept)."""
        keep = self.edge_mask > 0
        g = self.graph
        rows = g.entry_rows()[keep]
        rowptr = torch.zeros(g.num_nodes + 1, dtype=torch.int64, device=rows.device)
        rowptr[1:] = torch.cumsum(torch.bincount(rows, minlength=g.num_nodes), 0)
        pattern = CSRPattern.from_csr(rowptr.cpu().numpy(), g.pattern.col[keep].cpu().numpy(),
                                      g.num_nodes).to(rows.device)
        small = NodeGraph(pattern, self.entry_weights()[keep].contiguous(), g.counts[keep],
                          g.num_users, g.num_items, g.order)
        out = PrunableLightGCN(small, self.dim, self.num_layers, learn_weights=False,
                               backend=self.backend).to(rows.device)
        out.user_emb.copy_(self.user_emb * self.emb_mask[:self.num_users])
        out.item_emb.copy_(self.item_emb * self.emb_mask[self.num_users:])
        return out.requires_grad_(False)


# ---------------------------------------------------------------------- distillation losses
@dataclass
class TeacherView:
    """A frozen teacher's outputs, computed once per stage: its final embeddings (prediction KD,
    pruning importance) and the embedding-level KD side (sum of layers >= ``ekd_from_layer``)."""

    user: torch.Tensor
    item: torch.Tensor
    high_user: torch.Tensor
    high_item: torch.Tensor
    weights: torch.Tensor  # [nnz] the teacher's learned W (ones for a teacher without weights)

    @classmethod
    @torch.no_grad()
    def of(cls, model: PrunableLightGCN, ekd_from_layer: int) -> "TeacherView":
        layers = model.layer_outputs()
        if not 0 <= ekd_from_layer <= model.num_layers:
            raise ValueError(f"ekd_from_layer = {ekd_from_layer} is outside the teacher's layers "
                             f"0..{model.num_layers}")
        user, item = model.split(sum(layers))
        high_user, high_item = model.split(sum(layers[ekd_from_layer:]))
        return cls(user, item, high_user, high_item, model.edge_weight.detach().clone())


@dataclass
class LossWeights:
    """The loss terms' weights and temperatures (official defaults; LightGNN Eq. 11)."""

    softreg: float = 1.0      # prediction-level KD weight (lambda_1)
    tempsoft: float = 0.03    # its temperature
    kd_triples: int = 100_000  # random (u, i1, i2) triples per step
    cdreg: float = 1e-2       # embedding-level KD (InfoNCE) weight (lambda_2)
    tempcd: float = 0.1       # its temperature
    screg: float = 1.0        # uniformity weight (lambda_3)
    tempsc: float = 1.0       # its temperature
    subspcreg: float = 1e-4   # subspace constraint weight (pruning runs >= 2)
    tempsubsp: float = 1.0    # its temperature
    reg: float = 1e-6         # weight decay on the whole embedding tables (lambda_4)
    ereg: float = 1e-10       # weight decay on the per-entry weights
    kd_anchors: int = 0       # at most this many anchors per side and step (0: every unique
                              # batch user / positive item, as the code; a cap is a cheaper,
                              # sampled estimate of the same mean, for CPU schedules)


def bpr(user, item, users, pos, neg) -> torch.Tensor:
    """mean -log sigmoid(s(u, pos) - s(u, neg))."""
    u = user[users]
    return F.softplus((u * item[neg]).sum(-1) - (u * item[pos]).sum(-1)).mean()


def prediction_kd(student, teacher, triples, tau: float) -> torch.Tensor:
    """Eq. 5: binary cross-entropy between sigma(eps^t / tau) and sigma(eps^s / tau) with
    eps = s(u, i1) - s(u, i2) on random triples."""
    u, i1, i2 = triples
    (su, si), (tu, ti) = student, teacher
    eps_s = (su[u] * (si[i1] - si[i2])).sum(-1)
    eps_t = (tu[u] * (ti[i1] - ti[i2])).sum(-1)
    return F.binary_cross_entropy_with_logits(eps_s / tau, torch.sigmoid(eps_t / tau))


def info_nce(anchor_side, key_side, anchors, tau: float, backend=None) -> torch.Tensor:
    """Eq. 6 for one side: mean over anchors a of -log softmax_j(cos(t_a, s_j) / tau) at j = a,
    the denominator over all N nodes of the side (fused log-sum-exp, no [B, N] matrix).
    ``anchor_side`` (the teacher, constant) gives the queries, ``key_side`` (the student) the
    keys, as the paper's s_{i', i} = cos(e^s_{i'}, e^t_i)."""
    t = F.normalize(anchor_side[anchors], dim=-1)
    s = F.normalize(key_side, dim=-1)
    lse = dot_logsumexp(t, s, tau, backend=backend)
    return (lse - (t * s[anchors]).sum(-1) / tau).mean()


def _sample(anchors: torch.Tensor, cap: int, generator: torch.Generator | None) -> torch.Tensor:
    if cap <= 0 or anchors.numel() <= cap:
        return anchors
    return anchors[torch.randperm(anchors.numel(), generator=generator)[:cap].to(anchors.device)]


def lightgnn_loss(model: PrunableLightGCN, users, pos, neg, weights: LossWeights,
                  teacher: TeacherView | None, generator: torch.Generator | None = None,
                  subspace_slack: int | None = None) -> dict:
    """The multi-task loss (Eq. 11) of one batch; ``{"loss": total, term: value, ...}``.

    ``teacher`` None: BPR + weight decay only (the teacher's own training). ``subspace_slack``
    (delta of Eq. 10) switches the subspace constraint on. The KD triples and anchor samples
    draw from ``generator`` (default: torch's global generator, which checkpoints save).
    """
    user, item = model()
    be = model.backend
    terms = {"bpr": bpr(user, item, users, pos, neg)}
    reg = weights.reg * (model.user_emb.pow(2).sum() + model.item_emb.pow(2).sum())
    if model.edge_weight.requires_grad:
        reg = reg + weights.ereg * model.edge_weight.pow(2).sum()
    terms["reg"] = reg
    if teacher is not None:
        n, dev = weights.kd_triples, users.device
        triples = tuple(torch.randint(hi, (n,), generator=generator).to(dev)
                        for hi in (model.num_users, model.num_items, model.num_items))
        terms["pkd"] = weights.softreg * prediction_kd((user, item), (teacher.user, teacher.item),
                                                       triples, weights.tempsoft)
        ua, ia = (_sample(torch.unique(x), weights.kd_anchors, generator) for x in (users, pos))
        terms["ekd"] = weights.cdreg * (info_nce(teacher.high_user, user, ua, weights.tempcd, be)
                                        + info_nce(teacher.high_item, item, ia, weights.tempcd, be))
        lse = {}
        for name, q, k in (("ui", user[ua], item), ("iu", item[ia], user),
                           ("uu", user[ua], user), ("ii", item[ia], item)):
            lse[name] = dot_logsumexp(q, k, weights.tempsc, backend=be)
        terms["unif"] = weights.screg * sum(v.mean() for v in lse.values())
        if subspace_slack is not None:
            masks = model.split(model.emb_mask)
            sub = 0
            for name, side, mask, anchors in (("uu", user, masks[0], ua), ("ii", item, masks[1], ia)):
                q = side[anchors]
                every = lse[name] if weights.tempsubsp == weights.tempsc else \
                    dot_logsumexp(q, side, weights.tempsubsp, backend=be)
                positive = dot_logsumexp(q, side, weights.tempsubsp, query_mask=mask[anchors],
                                         key_mask=mask, slack=subspace_slack, backend=be)
                sub = sub + (every - positive).mean()
            terms["subsp"] = weights.subspcreg * sub
    terms["loss"] = sum(terms.values())
    return terms


# ---------------------------------------------------------------------- pruning (Eq. 8)
@dataclass
class Importance:
    """What Eq. 8 takes from the intermediate model: its view (final embeddings, learned closure
    weights), where each student entry sits in the closure, and the two weights."""

    view: TeacherView
    closure_positions: torch.Tensor  # int64 [student nnz]
    beta1: float = 1.0   # on sigma(e_r . e_c)
    beta2: float = 0.05  # on the intermediate's weight w~


@torch.no_grad()
def edge_importance(student: PrunableLightGCN, imp: Importance) -> torch.Tensor:
    """[nnz] (w + beta1 sigma(e_r . e_c) + beta2 w~) * m over the student's entries: e the
    intermediate model's final embeddings (an SDDMM on the student pattern), w~ its learned
    weight on the same entry."""
    e = torch.cat([imp.view.user, imp.view.item]).contiguous()
    p = student.graph.pattern
    pred = sddmm_kernel(e.device, student.backend)(p.rowptr, p.col, e, e)
    w_tilde = imp.view.weights[imp.closure_positions]
    return (student.edge_weight + imp.beta1 * torch.sigmoid(pred) + imp.beta2 * w_tilde) * \
        student.edge_mask


def _smallest(values: torch.Tensor, alive: torch.Tensor, ratio: float) -> torch.Tensor:
    """Indices of the floor(ratio * #alive) alive entries of smallest |value| (global k-th value)."""
    idx = alive.nonzero().flatten()
    k = int(ratio * idx.numel())
    if k == 0:
        return idx[:0]
    return idx[torch.topk(values[idx].abs(), k, largest=False, sorted=False).indices]


@torch.no_grad()
def prune(student: PrunableLightGCN, importance: torch.Tensor, edge_ratio: float,
          emb_ratio: float) -> dict:
    """Drop the ``edge_ratio`` least important kept entries and the ``emb_ratio`` smallest kept
    embedding entries (global over users and items), in place: masks updated, pruned embedding
    entries zeroed, the surviving entries keep their trained values, and the edge weights reset
    to the new mask (the code's default for the next run). Returns the counts dropped.

    Exactly floor(ratio * kept) entries go (the code drops every entry at or below the value at
    that index, so one more plus ties).
    """
    drop_edges = _smallest(importance, student.edge_mask > 0, edge_ratio)
    student.edge_mask[drop_edges] = 0
    student.edge_weight.copy_(student.edge_mask)
    emb = torch.cat([student.user_emb, student.item_emb])
    drop_emb = _smallest(emb.flatten(), student.emb_mask.flatten() > 0, emb_ratio)
    student.emb_mask.view(-1)[drop_emb] = 0
    u = student.num_users
    student.user_emb.mul_(student.emb_mask[:u])
    student.item_emb.mul_(student.emb_mask[u:])
    return {"edges_dropped": int(drop_edges.numel()), "embeddings_dropped": int(drop_emb.numel())}


# ---------------------------------------------------------------------- the registered stages
# Three ranking models for ``train --model`` (the ``lightgnn`` command runs them in turn, with the
# pruning between the student's runs). Defaults: the official code's Yelp settings.
_GRAPHS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # train graph -> {order: NodeGraph}


def node_graph(train, order: int) -> NodeGraph:
    """``NodeGraph.build(train, order)``, built once per training graph and order."""
    cache = _GRAPHS.setdefault(train, {})
    if order not in cache:
        cache[order] = NodeGraph.build(train, order)
    return cache[order]


@dataclass
class LightGNNTeacherConfig:
    dim: int = option(64, "embedding size", min=1)
    layers: int = option(8, "propagation layers", min=0)
    emb_reg: float = option(1.5e-6, "weight decay on the whole embedding tables (the code's reg)",
                            min=0)


@dataclass
class DistillConfig:
    """The distillation terms of the intermediate model and the student (``LossWeights``)."""

    ekd_from_layer: int = option(2, "InfoNCE teacher side: the sum of the teacher's layers from "
                                    "this one on (code: 2; the paper's Eq. 6: 0, the final "
                                    "embedding)", min=0)
    softreg: float = option(1.0, "prediction-level KD weight (Eq. 5)", min=0)
    tempsoft: float = option(0.03, "prediction-level KD temperature", min=0, min_open=True)
    kd_triples: int = option(100_000, "random (user, item, item) triples per step for Eq. 5",
                             min=1)
    kd_anchors: int = option(0, "at most this many InfoNCE/uniformity anchors per side and step "
                                "(0: every unique batch user and positive item, as the code)",
                             min=0)
    cdreg: float = option(1e-2, "embedding-level KD (InfoNCE, Eq. 6) weight", min=0)
    tempcd: float = option(0.1, "InfoNCE temperature", min=0, min_open=True)
    screg: float = option(1.0, "uniformity weight (the denominators of Eq. 9)", min=0)
    tempsc: float = option(1.0, "uniformity temperature", min=0, min_open=True)

    def loss_weights(self, emb_reg: float, weight_reg: float) -> LossWeights:
        """The ``LossWeights`` of these options (and of a subclass's, e.g. the subspace term's)."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(LossWeights)
                  if hasattr(self, f.name)}
        return LossWeights(**shared, reg=emb_reg, ereg=weight_reg)


@dataclass
class LightGNNIntermediateConfig(DistillConfig):
    teacher: str = option(None, "the lightgnn-teacher run to distil from (its directory or "
                                "checkpoint.pt)", kind=str, metavar="RUN")
    dim: int = option(64, "embedding size", min=1)
    layers: int = option(6, "propagation layers (the code's scripts: 6; the supplement: 2)", min=0)
    hops: int = option(1, "h of the closure I + A + ... + A^(h+1) the intermediate model "
                          "propagates on", min=0)
    emb_reg: float = option(1e-6, "weight decay on the whole embedding tables (the code's reg)",
                            min=0)
    weight_reg: float = option(1e-10, "weight decay on the per-entry weights (the code's ereg)",
                               min=0)

    def check_rules(self):
        if not self.teacher:
            raise ValueError("model lightgnn-intermediate: --teacher RUN (a lightgnn-teacher "
                             "run) is required")


@dataclass
class LightGNNStudentConfig(DistillConfig):
    intermediate: str = option(None, "the lightgnn-intermediate run to distil from (its "
                                     "directory or checkpoint.pt)", kind=str, metavar="RUN")
    start_from: str = option(None, "a pruned student state to start from (the previous pruning "
                                   "run's pruned.pt; default: a fresh student)", kind=str,
                             metavar="FILE")
    pruning_run: int = option(1, "index of this pruning run (1 = unpruned): sets the subspace "
                                 "constraint's slack delta (Eq. 10)", min=1)
    dim: int = option(64, "embedding size", min=1)
    layers: int = option(2, "propagation layers", min=0)
    emb_reg: float = option(5e-7, "weight decay on the whole embedding tables (the code's reg)",
                            min=0)
    weight_reg: float = option(1e-9, "weight decay on the per-entry weights (the code's ereg)",
                               min=0)
    subspace_from_run: int = option(2, "the subspace constraint (Eq. 9-10) is on from this "
                                       "pruning run", min=1)
    subspcreg: float = option(1e-4, "subspace constraint weight", min=0)
    tempsubsp: float = option(1.0, "subspace constraint temperature", min=0, min_open=True)
    beta1: float = option(1.0, "pruning importance weight of sigma(e_r . e_c) (Eq. 8, the "
                               "code's naming)", min=0)
    beta2: float = option(0.05, "pruning importance weight of the intermediate model's edge "
                                "weight (Eq. 8)", min=0)

    def check_rules(self):
        if not self.intermediate:
            raise ValueError("model lightgnn-student: --intermediate RUN (a "
                             "lightgnn-intermediate run) is required")

    def slack(self) -> int | None:
        if self.pruning_run < self.subspace_from_run:
            return None
        return SLACK_SCHEDULE[self.pruning_run] if self.pruning_run < len(SLACK_SCHEDULE) else 0


# delta of Eq. 10 per pruning run (index = run; the official hyper_contr_loosen_factor)
SLACK_SCHEDULE = (0, 0, 0, 2, 3, 4, 4, 3, 1, 0)
_ORDER = {"lightgnn-teacher": lambda cfg: 1, "lightgnn-intermediate": lambda cfg: cfg.hops + 1,
          "lightgnn-student": lambda cfg: 1}


def load_stage(run, model_name: str, ctx) -> tuple[PrunableLightGCN, dict]:
    """(the frozen model of a finished ``model_name`` run with its selected weights, on
    ``ctx.device``; its saved model options). The run must be on the same data as ``ctx``."""
    from ..checkpoint import load_checkpoint
    from ..models.registry import model_entry

    ckpt = load_checkpoint(run)
    if ckpt["model_name"] != model_name:
        raise ValueError(f"{run}: a {ckpt['model_name']!r} run, not {model_name!r}")
    info = ckpt["data_info"]
    if (info["users"], info["items"], info["train"]) != (ctx.num_users, ctx.num_items,
                                                         ctx.train.num_edges):
        raise ValueError(f"{run} was trained on other data ({info}) than this run's "
                         f"({ctx.num_users} users, {ctx.num_items} items, {ctx.train.num_edges} "
                         "training interactions)")
    if ckpt["best_model"] is None:
        raise ValueError(f"{run}: the run has no selected weights yet (not evaluated)")
    cfg = cfgmod.from_dict(model_entry(model_name).config, ckpt["config"]["model_config"])
    model = PrunableLightGCN(node_graph(ctx.train, _ORDER[model_name](cfg)), cfg.dim, cfg.layers,
                             learn_weights=model_name != "lightgnn-teacher")
    model.load_state_dict(ckpt["best_model"])
    return model.requires_grad_(False).to(ctx.device), ckpt["config"]["model_config"]


def _distill_source(run, model_name: str, cfg: DistillConfig, ctx) -> PrunableLightGCN:
    """The frozen model of the ``model_name`` run distilled from, checked against
    ``cfg.ekd_from_layer``."""
    source, _ = load_stage(run, model_name, ctx)
    if cfg.ekd_from_layer > source.num_layers:
        raise ValueError(f"ekd_from_layer = {cfg.ekd_from_layer} but the {model_name} run has "
                         f"{source.num_layers} layers")
    return source


@register_model("lightgnn-teacher", config=LightGNNTeacherConfig,
                summary="LightGNN's teacher: LightGCN on D^-1/2 (A + I) D^-1/2, sum readout, "
                        "8 layers (Chen et al., WSDM'25)")
def build_teacher(cfg: LightGNNTeacherConfig, ctx) -> PrunableLightGCN:
    model = PrunableLightGCN(node_graph(ctx.train, 1), cfg.dim, cfg.layers, learn_weights=False)
    model.loss_weights = LossWeights(reg=cfg.emb_reg, ereg=0.0)
    return model


@register_model("lightgnn-intermediate", config=LightGNNIntermediateConfig,
                summary="LightGNN's intermediate model: weighted LightGCN on the (h+1)-hop "
                        "closure, distilled from a lightgnn-teacher run")
def build_intermediate(cfg: LightGNNIntermediateConfig, ctx) -> PrunableLightGCN:
    teacher = _distill_source(cfg.teacher, "lightgnn-teacher", cfg, ctx)
    model = PrunableLightGCN(node_graph(ctx.train, cfg.hops + 1), cfg.dim, cfg.layers)
    model.loss_weights = cfg.loss_weights(cfg.emb_reg, cfg.weight_reg)
    model.teacher = TeacherView.of(teacher, cfg.ekd_from_layer)
    return model


@register_model("lightgnn-student", config=LightGNNStudentConfig,
                summary="LightGNN's student: a pruned, weighted LightGCN distilled from a "
                        "lightgnn-intermediate run (one pruning run)")
def build_student(cfg: LightGNNStudentConfig, ctx) -> PrunableLightGCN:
    inter = _distill_source(cfg.intermediate, "lightgnn-intermediate", cfg, ctx)
    graph = node_graph(ctx.train, 1)
    model = PrunableLightGCN(graph, cfg.dim, cfg.layers)
    if cfg.start_from:
        model.load_state_dict(torch.load(cfg.start_from, map_location="cpu", weights_only=True))
    model.loss_weights = cfg.loss_weights(cfg.emb_reg, cfg.weight_reg)  # + subspcreg, tempsubsp
    model.teacher = TeacherView.of(inter, cfg.ekd_from_layer)
    model.subspace_slack = cfg.slack()
    # Eq. 8 uses the intermediate model's final embeddings (its whole readout), whatever the KD side.
    model.importance = Importance(TeacherView.of(inter, 0), inter.graph.positions_of(graph),
                                  cfg.beta1, cfg.beta2)
    return model


__all__ = ["NodeGraph", "PrunableLightGCN", "TeacherView", "LossWeights", "Importance", "bpr",
           "prediction_kd", "info_nce", "lightgnn_loss", "edge_importance", "prune", "node_graph",
           "load_stage", "LightGNNTeacherConfig", "LightGNNIntermediateConfig",
           "LightGNNStudentConfig", "SLACK_SCHEDULE"]
