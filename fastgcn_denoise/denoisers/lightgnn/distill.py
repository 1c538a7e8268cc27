"""LightGNN's training objective: BPR, prediction and embedding KD, uniformity, the subspace
constraint (Eqs. 5-10; the package docstring says where we follow the official code)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...ops import dot_logsumexp


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
    def of(cls, model: nn.Module, ekd_from_layer: int) -> "TeacherView":
        layers = model.layer_outputs()
        if not 0 <= ekd_from_layer <= model.num_layers:
            raise ValueError(
                f"ekd_from_layer = {ekd_from_layer} is outside the teacher's layers "
                f"0..{model.num_layers}"
            )
        user, item = model.split(sum(layers))
        high_user, high_item = model.split(sum(layers[ekd_from_layer:]))
        return cls(user, item, high_user, high_item, model.edge_weight.detach().clone())


@dataclass
class LossWeights:
    """The loss terms' weights and temperatures (official defaults; LightGNN Eq. 11)."""

    softreg: float = 1.0  # prediction-level KD weight (lambda_1)
    tempsoft: float = 0.03  # its temperature
    kd_triples: int = 100_000  # random (u, i1, i2) triples per step
    cdreg: float = 1e-2  # embedding-level KD (InfoNCE) weight (lambda_2)
    tempcd: float = 0.1  # its temperature
    screg: float = 1.0  # uniformity weight (lambda_3)
    tempsc: float = 1.0  # its temperature
    subspcreg: float = 1e-4  # subspace constraint weight (pruning runs >= 2)
    tempsubsp: float = 1.0  # its temperature
    reg: float = 1e-6  # weight decay on the whole embedding tables (lambda_4)
    ereg: float = 1e-10  # weight decay on the per-entry weights
    kd_anchors: int = 0  # at most this many anchors per side and step (0: every unique
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


def lightgnn_loss(
    model: nn.Module,
    users,
    pos,
    neg,
    weights: LossWeights,
    teacher: TeacherView | None,
    generator: torch.Generator | None = None,
    subspace_slack: int | None = None,
) -> dict:
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
        triples = tuple(
            torch.randint(hi, (n,), generator=generator).to(dev)
            for hi in (model.num_users, model.num_items, model.num_items)
        )
        terms["pkd"] = weights.softreg * prediction_kd(
            (user, item), (teacher.user, teacher.item), triples, weights.tempsoft
        )
        ua, ia = (_sample(torch.unique(x), weights.kd_anchors, generator) for x in (users, pos))
        terms["ekd"] = weights.cdreg * (
            info_nce(teacher.high_user, user, ua, weights.tempcd, be)
            + info_nce(teacher.high_item, item, ia, weights.tempcd, be)
        )
        lse = {}
        for name, q, k in (
            ("ui", user[ua], item),
            ("iu", item[ia], user),
            ("uu", user[ua], user),
            ("ii", item[ia], item),
        ):
            lse[name] = dot_logsumexp(q, k, weights.tempsc, backend=be)
        terms["unif"] = weights.screg * sum(v.mean() for v in lse.values())
        if subspace_slack is not None:
            masks = model.split(model.emb_mask)
            sub = 0
            for name, side, mask, anchors in (
                ("uu", user, masks[0], ua),
                ("ii", item, masks[1], ia),
            ):
                q = side[anchors]
                every = (
                    lse[name]
                    if weights.tempsubsp == weights.tempsc
                    else dot_logsumexp(q, side, weights.tempsubsp, backend=be)
                )
                positive = dot_logsumexp(
                    q,
                    side,
                    weights.tempsubsp,
                    query_mask=mask[anchors],
                    key_mask=mask,
                    slack=subspace_slack,
                    backend=be,
                )
                sub = sub + (every - positive).mean()
            terms["subsp"] = weights.subspcreg * sub
    terms["loss"] = sum(terms.values())
    return terms
