"""LightGNN's three registered ranking models (``lightgnn-teacher``, ``lightgnn-intermediate``,
``lightgnn-student``), their configs, and the loading of a finished stage."""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import torch

from ... import config as cfgmod
from ...config import option
from ...models.registry import register_model
from .distill import LossWeights, TeacherView
from .model import NodeGraph, PrunableLightGCN
from .prune import Importance

# Three ranking models for ``train --model`` (the ``lightgnn`` command runs them in turn, with the
# pruning between the student's runs). Defaults: the official code's Yelp settings.
_GRAPHS: "weakref.WeakKeyDictionary" = (
    weakref.WeakKeyDictionary()
)  # train graph -> {order: NodeGraph}


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
    emb_reg: float = option(
        1.5e-6, "weight decay on the whole embedding tables (the code's reg)", min=0
    )


@dataclass
class DistillConfig:
    """The distillation terms of the intermediate model and the student (``LossWeights``)."""

    ekd_from_layer: int = option(
        2,
        "InfoNCE teacher side: the sum of the teacher's layers from "
        "this one on (code: 2; the paper's Eq. 6: 0, the final "
        "embedding)",
        min=0,
    )
    softreg: float = option(1.0, "prediction-level KD weight (Eq. 5)", min=0)
    tempsoft: float = option(0.03, "prediction-level KD temperature", min=0, min_open=True)
    kd_triples: int = option(100_000, "random (user, item, item) triples per step for Eq. 5", min=1)
    kd_anchors: int = option(
        0,
        "at most this many InfoNCE/uniformity anchors per side and step "
        "(0: every unique batch user and positive item, as the code)",
        min=0,
    )
    cdreg: float = option(1e-2, "embedding-level KD (InfoNCE, Eq. 6) weight", min=0)
    tempcd: float = option(0.1, "InfoNCE temperature", min=0, min_open=True)
    screg: float = option(1.0, "uniformity weight (the denominators of Eq. 9)", min=0)
    tempsc: float = option(1.0, "uniformity temperature", min=0, min_open=True)

    def loss_weights(self, emb_reg: float, weight_reg: float) -> LossWeights:
        """The ``LossWeights`` of these options (and of a subclass's, e.g. the subspace term's)."""
        shared = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(LossWeights)
            if hasattr(self, f.name)
        }
        return LossWeights(**shared, reg=emb_reg, ereg=weight_reg)


@dataclass
class LightGNNIntermediateConfig(DistillConfig):
    teacher: str = option(
        None,
        "the lightgnn-teacher run to distil from (its directory or checkpoint.pt)",
        kind=str,
        metavar="RUN",
    )
    dim: int = option(64, "embedding size", min=1)
    layers: int = option(6, "propagation layers (the code's scripts: 6; the supplement: 2)", min=0)
    hops: int = option(
        1, "h of the closure I + A + ... + A^(h+1) the intermediate model propagates on", min=0
    )
    emb_reg: float = option(
        1e-6, "weight decay on the whole embedding tables (the code's reg)", min=0
    )
    weight_reg: float = option(
        1e-10, "weight decay on the per-entry weights (the code's ereg)", min=0
    )

    def check_rules(self):
        if not self.teacher:
            raise ValueError(
                "model lightgnn-intermediate: --teacher RUN (a lightgnn-teacher run) is required"
            )


@dataclass
class LightGNNStudentConfig(DistillConfig):
    intermediate: str = option(
        None,
        "the lightgnn-intermediate run to distil from (its directory or checkpoint.pt)",
        kind=str,
        metavar="RUN",
    )
    start_from: str = option(
        None,
        "a pruned student state to start from (the previous pruning "
        "run's pruned.pt; default: a fresh student)",
        kind=str,
        metavar="FILE",
    )
    pruning_run: int = option(
        1,
        "index of this pruning run (1 = unpruned): sets the subspace "
        "constraint's slack delta (Eq. 10)",
        min=1,
    )
    dim: int = option(64, "embedding size", min=1)
    layers: int = option(2, "propagation layers", min=0)
    emb_reg: float = option(
        5e-7, "weight decay on the whole embedding tables (the code's reg)", min=0
    )
    weight_reg: float = option(
        1e-9, "weight decay on the per-entry weights (the code's ereg)", min=0
    )
    subspace_from_run: int = option(
        2, "the subspace constraint (Eq. 9-10) is on from this pruning run", min=1
    )
    subspcreg: float = option(1e-4, "subspace constraint weight", min=0)
    tempsubsp: float = option(1.0, "subspace constraint temperature", min=0, min_open=True)
    beta1: float = option(
        1.0, "pruning importance weight of sigma(e_r . e_c) (Eq. 8, the code's naming)", min=0
    )
    beta2: float = option(
        0.05, "pruning importance weight of the intermediate model's edge weight (Eq. 8)", min=0
    )

    def check_rules(self):
        if not self.intermediate:
            raise ValueError(
                "model lightgnn-student: --intermediate RUN (a "
                "lightgnn-intermediate run) is required"
            )

    def slack(self) -> int | None:
        if self.pruning_run < self.subspace_from_run:
            return None
        return SLACK_SCHEDULE[self.pruning_run] if self.pruning_run < len(SLACK_SCHEDULE) else 0


# delta of Eq. 10 per pruning run (index = run; the official hyper_contr_loosen_factor)
SLACK_SCHEDULE = (0, 0, 0, 2, 3, 4, 4, 3, 1, 0)
_ORDER = {
    "lightgnn-teacher": lambda cfg: 1,
    "lightgnn-intermediate": lambda cfg: cfg.hops + 1,
    "lightgnn-student": lambda cfg: 1,
}


def load_stage(run, model_name: str, ctx) -> tuple[PrunableLightGCN, dict]:
    """(the frozen model of a finished ``model_name`` run with its selected weights, on
    ``ctx.device``; its saved model options). The run must be on the same data as ``ctx``."""
    from ...checkpoint import load_checkpoint
    from ...models.registry import model_entry

    ckpt = load_checkpoint(run)
    if ckpt["model_name"] != model_name:
        raise ValueError(f"{run}: a {ckpt['model_name']!r} run, not {model_name!r}")
    info = ckpt["data_info"]
    if (info["users"], info["items"], info["train"]) != (
        ctx.num_users,
        ctx.num_items,
        ctx.train.num_edges,
    ):
        raise ValueError(
            f"{run} was trained on other data ({info}) than this run's "
            f"({ctx.num_users} users, {ctx.num_items} items, {ctx.train.num_edges} "
            "training interactions)"
        )
    if ckpt["best_model"] is None:
        raise ValueError(f"{run}: the run has no selected weights yet (not evaluated)")
    cfg = cfgmod.from_dict(model_entry(model_name).config, ckpt["config"]["model_config"])
    model = PrunableLightGCN(
        node_graph(ctx.train, _ORDER[model_name](cfg)),
        cfg.dim,
        cfg.layers,
        learn_weights=model_name != "lightgnn-teacher",
    )
    model.load_state_dict(ckpt["best_model"])
    return model.requires_grad_(False).to(ctx.device), ckpt["config"]["model_config"]


def _distill_source(run, model_name: str, cfg: DistillConfig, ctx) -> PrunableLightGCN:
    """The frozen model of the ``model_name`` run distilled from, checked against
    ``cfg.ekd_from_layer``."""
    source, _ = load_stage(run, model_name, ctx)
    if cfg.ekd_from_layer > source.num_layers:
        raise ValueError(
            f"ekd_from_layer = {cfg.ekd_from_layer} but the {model_name} run has "
            f"{source.num_layers} layers"
        )
    return source


@register_model(
    "lightgnn-teacher",
    config=LightGNNTeacherConfig,
    summary="LightGNN's teacher: LightGCN on D^-1/2 (A + I) D^-1/2, sum readout, "
    "8 layers (Chen et al., WSDM'25)",
)
def build_teacher(cfg: LightGNNTeacherConfig, ctx) -> PrunableLightGCN:
    model = PrunableLightGCN(node_graph(ctx.train, 1), cfg.dim, cfg.layers, learn_weights=False)
    model.loss_weights = LossWeights(reg=cfg.emb_reg, ereg=0.0)
    return model


@register_model(
    "lightgnn-intermediate",
    config=LightGNNIntermediateConfig,
    summary="LightGNN's intermediate model: weighted LightGCN on the (h+1)-hop "
    "closure, distilled from a lightgnn-teacher run",
)
def build_intermediate(cfg: LightGNNIntermediateConfig, ctx) -> PrunableLightGCN:
    teacher = _distill_source(cfg.teacher, "lightgnn-teacher", cfg, ctx)
    model = PrunableLightGCN(node_graph(ctx.train, cfg.hops + 1), cfg.dim, cfg.layers)
    model.loss_weights = cfg.loss_weights(cfg.emb_reg, cfg.weight_reg)
    model.teacher = TeacherView.of(teacher, cfg.ekd_from_layer)
    return model


@register_model(
    "lightgnn-student",
    config=LightGNNStudentConfig,
    summary="LightGNN's student: a pruned, weighted LightGCN distilled from a "
    "lightgnn-intermediate run (one pruning run)",
)
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
    model.importance = Importance(
        TeacherView.of(inter, 0), inter.graph.positions_of(graph), cfg.beta1, cfg.beta2
    )
    return model
