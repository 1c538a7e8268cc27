"""Backbones built on ``fastgcn_denoise.ops``, registered by name (``registry``).

Ranking models (``GraphRecommender``s) have ``forward(graph) -> (user_emb, item_emb)`` (score =
dot product) and ``loss(graph, batch) -> dict`` ({"loss": total, named terms...}). Importing a
model's module registers it; the denoisers (``fastgcn_denoise.denoisers``) register theirs in
the same registry.
"""

from . import l0sign, lightgcn, ngcf, simgcl, xsimgcl  # noqa: F401  (registers the backbones)
from .base import Batch, GraphRecommender, Plugin, bpr_loss
from .lightgcn import LightGCN, LightGCNConfig
from .ngcf import NGCF, NGCFConfig
from .registry import (
    MODELS,
    PLUGINS,
    ModelEntry,
    PluginEntry,
    model_entry,
    plugin_entry,
    register_model,
    register_plugin,
)
from .simgcl import SimGCL, SimGCLConfig
from .xsimgcl import XSimGCL, XSimGCLConfig

__all__ = [
    "Batch",
    "GraphRecommender",
    "Plugin",
    "bpr_loss",
    "LightGCN",
    "LightGCNConfig",
    "NGCF",
    "NGCFConfig",
    "MODELS",
    "PLUGINS",
    "ModelEntry",
    "PluginEntry",
    "model_entry",
    "plugin_entry",
    "register_model",
    "register_plugin",
    "SimGCL",
    "SimGCLConfig",
    "XSimGCL",
    "XSimGCLConfig",
]
