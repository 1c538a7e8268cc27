"""LightGNN's pruning (Eq. 8): edge importance from the student, the intermediate model's
embeddings and weights, and the global k-th-value cut of edges and embedding entries."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...ops.sddmm import sddmm_kernel
from .distill import TeacherView


@dataclass
class Importance:
    """What Eq. 8 takes from the intermediate model: its view (final embeddings, learned closure
    weights), where each student entry sits in the closure, and the two weights."""

    view: TeacherView
    closure_positions: torch.Tensor  # int64 [student nnz]
    beta1: float = 1.0  # on sigma(e_r . e_c)
    beta2: float = 0.05  # on the intermediate's weight w~


@torch.no_grad()
def edge_importance(student: nn.Module, imp: Importance) -> torch.Tensor:
    """[nnz] (w + beta1 sigma(e_r . e_c) + beta2 w~) * m over the student's entries: e the
    intermediate model's final embeddings (an SDDMM on the student pattern), w~ its learned
    weight on the same entry."""
    e = torch.cat([imp.view.user, imp.view.item]).contiguous()
    p = student.graph.pattern
    pred = sddmm_kernel(e.device, student.backend)(p.rowptr, p.col, e, e)
    w_tilde = imp.view.weights[imp.closure_positions]
    return (
        student.edge_weight + imp.beta1 * torch.sigmoid(pred) + imp.beta2 * w_tilde
    ) * student.edge_mask


def _smallest(values: torch.Tensor, alive: torch.Tensor, ratio: float) -> torch.Tensor:
    """Indices of the floor(ratio * #alive) alive entries of smallest |value| (global k-th value)."""
    idx = alive.nonzero().flatten()
    k = int(ratio * idx.numel())
    if k == 0:
        return idx[:0]
    return idx[torch.topk(values[idx].abs(), k, largest=False, sorted=False).indices]


@torch.no_grad()
def prune(
    student: nn.Module, importance: torch.Tensor, edge_ratio: float, emb_ratio: float
) -> dict:
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
