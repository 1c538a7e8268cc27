"""LightGNN's one model class for its three stages: the node graph and ``PrunableLightGCN``
(formulas and the code-vs-paper decisions: the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...ops import CSRPattern, power_sum, weighted_spmm
from .distill import LossWeights, TeacherView, lightgnn_loss
from .prune import Importance, edge_importance


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
        rows = torch.repeat_interleave(
            torch.arange(c.num_rows, device=c.val.device), c.rowptr.diff()
        )
        deg = torch.zeros(c.num_rows, dtype=torch.float64, device=c.val.device).index_add_(
            0, rows, c.val
        )
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
        return torch.repeat_interleave(
            torch.arange(self.num_nodes, device=self.values.device),
            self.pattern.rowptr.diff(),
            output_size=self.nnz,
        )

    def keys(self) -> torch.Tensor:
        """int64 [nnz] row * N + col, ascending (CSR order)."""
        return self.entry_rows() * self.num_nodes + self.pattern.col

    def positions_of(self, other: "NodeGraph") -> torch.Tensor:
        """int64 [other.nnz]: where each entry of ``other`` sits in this graph (other ⊂ self)."""
        mine, theirs = self.keys(), other.keys()
        pos = torch.searchsorted(mine, theirs).clamp_(max=max(self.nnz - 1, 0))
        if other.nnz and not torch.equal(mine[pos], theirs):
            raise ValueError(
                f"the order-{other.order} graph is not contained in the order-{self.order} graph"
            )
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
        return NodeGraph(
            self.pattern.to(device),
            self.values.to(device),
            self.counts.to(device),
            self.num_users,
            self.num_items,
            self.order,
        )


class PrunableLightGCN(nn.Module):
    """LightGCN over a ``NodeGraph`` with per-entry weights and masks (module docstring).

    Args:
        graph: the ``NodeGraph`` it propagates on (not a parameter; keep it to rebuild).
        dim, num_layers: embedding width, propagation layers.
        learn_weights: whether the per-entry weights W are trained (False: W = 1, the teacher).
        backend: force a ``weighted_spmm`` backend.
    """

    def __init__(
        self,
        graph: NodeGraph,
        dim: int = 64,
        num_layers: int = 2,
        learn_weights: bool = True,
        backend: str | None = None,
    ):
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
        self.teacher: TeacherView | None = None  # the frozen model distilled from
        self.subspace_slack: int | None = None  # delta of Eq. 10 (None: no subspace term)
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
        return x[: self.num_users], x[self.num_users :]

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
            raise ValueError(
                f"graph has {graph.num_users} users x {graph.num_items} items but the "
                f"model was built for {self.num_users} x {self.num_items}"
            )

    def param_groups(self, lr: float) -> list[dict]:
        """Adam's groups: the trainable parameters only (the teacher's weights W stay 1)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def add_plugin(self, plugin):
        raise ValueError(
            "the LightGNN models take no plug-ins: they propagate on their own node "
            "graph (weighted_spmm), where the masked_spmm seams do not apply"
        )

    def loss(self, graph, batch) -> dict:
        """``lightgnn_loss`` of a batch (users, pos, neg) with the builder's settings."""
        self._check_graph(graph)
        users, pos, neg = batch
        return lightgnn_loss(
            self,
            users,
            pos,
            neg,
            self.loss_weights,
            self.teacher,
            subspace_slack=self.subspace_slack,
        )

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
        return {
            "embedding_entries": int(self.emb_mask.sum()),
            "graph_entries": int(self.edge_mask.sum()),
            "total": int(self.emb_mask.sum()) + int(self.edge_mask.sum()),
        }

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
        pattern = CSRPattern.from_csr(
            rowptr.cpu().numpy(), g.pattern.col[keep].cpu().numpy(), g.num_nodes
        ).to(rows.device)
        small = NodeGraph(
            pattern,
            self.entry_weights()[keep].contiguous(),
            g.counts[keep],
            g.num_users,
            g.num_items,
            g.order,
        )
        out = PrunableLightGCN(
            small, self.dim, self.num_layers, learn_weights=False, backend=self.backend
        ).to(rows.device)
        out.user_emb.copy_(self.user_emb * self.emb_mask[: self.num_users])
        out.item_emb.copy_(self.item_emb * self.emb_mask[self.num_users :])
        return out.requires_grad_(False)
