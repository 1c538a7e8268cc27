"""The rows of the noise benchmark: every denoiser it judges, by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from fastgcn_denoise.denoisers.knn import item_knn_scores
from fastgcn_denoise.denoisers.spectral import spectral_scores


@dataclass(frozen=True)
class Denoiser:
    """One row of the benchmark: what to train (``model``, ``plugins``, ``options`` for
    ``make_config``) or a ``scorer`` ((training graph, data) -> keep scores [E]) that trains
    nothing. ``oracle``
    trains on the training pairs minus the known noise."""

    name: str
    summary: str
    model: str = "lightgcn"
    plugins: tuple = ()
    options: dict = field(default_factory=dict)
    oracle: bool = False
    scorer: Callable | None = None


DENOISERS = {
    d.name: d
    for d in [
        Denoiser("lightgcn", "LightGCN, no denoising"),
        Denoiser("oracle", "LightGCN trained with the known noise removed", oracle=True),
        Denoiser("holdout", "LightGCN with target-edge holdout only", plugins=("holdout",)),
        Denoiser(
            "sgcn", "S-LightGCN as the paper: ARM masks, beta = gamma = 1e-3", model="s-lightgcn"
        ),
        Denoiser(
            "mask",
            "--mask defaults: gumbel straight-through, score head a_k z_u(<f_u,f_i>) + "
            "b_k, holdout, keep 0.85, positives weighted by their keep probability",
            plugins=("mask",),
        ),
        Denoiser(
            "mask-score",
            "--mask with the positives unweighted (mask_targets off)",
            plugins=("mask",),
            options={"mask_targets": False},
        ),
        Denoiser(
            "mask-free",
            "--mask with free per-edge logits",
            plugins=("mask",),
            options={"mask_head": "free", "mask_head_lr": 0.05},
        ),
        Denoiser(
            "mask-linear",
            "--mask with the score + log-degree head",
            plugins=("mask",),
            options={"mask_head": "linear"},
        ),
        Denoiser(
            "mask-hc",
            "--mask with hard concrete gates",
            plugins=("mask",),
            options={"mask_estimator": "hard_concrete", "mask_temperature": 2 / 3},
        ),
        Denoiser(
            "mask-noholdout",
            "--mask without the target-edge holdout",
            plugins=("mask",),
            options={"mask_holdout": False},
        ),
        Denoiser(
            "dgr",
            "LightGCN + DGR (GMP + LEC); keep scores from the backbone's scores",
            plugins=("dgr",),
        ),
        Denoiser(
            "grcn",
            "GRCN: the refined graph's edge weights from item content (needs features)",
            model="grcn",
        ),
        Denoiser(
            "item-knn",
            "leave-user-out item-kNN similarity (no training)",
            scorer=lambda graph, data: item_knn_scores(graph),
        ),
        Denoiser(
            "spectral",
            "fit to a truncated SVD of the normalised graph, its rank chosen on validation "
            "(no training)",
            scorer=lambda graph, data: torch.from_numpy(
                spectral_scores(graph, data.split_graph("valid"))[0]
            ),
        ),
    ]
}
# grcn runs when named: it needs item content, which the real graphs here do not have.
DEFAULT_DENOISERS = (
    "lightgcn",
    "oracle",
    "holdout",
    "sgcn",
    "mask",
    "mask-free",
    "dgr",
    "item-knn",
    "spectral",
)
