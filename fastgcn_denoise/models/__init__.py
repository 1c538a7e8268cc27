"""Models built on ``fastgcn_denoise.ops``, registered by name (``registry``).

Ranking models (``GraphRecommender``s and SGCN's wrappers) have ``forward(graph) -> (user_emb,
item_emb)`` (score = dot product) and ``loss(graph, batch) -> dict`` ({"loss": total, named
terms...}); denoisers also ``keep_scores(graph)``. Importing a model's module registers it.
"""
from . import (dgr, edge_masks, grcn, l0sign, lightgcn, lightgnn, ngcf, sgcn, simgcl,  # noqa: F401
               xsimgcl)
from .base import Batch, GraphRecommender, Plugin, bpr_loss
from .grcn import GRCN, GRCNConfig
from .lightgcn import LightGCN, LightGCNConfig
from .ngcf import NGCF, NGCFConfig
from .registry import (MODELS, PLUGINS, ModelEntry, PluginEntry, model_entry, plugin_entry,
                       register_model, register_plugin)
from .dgr import DGR, DGRConfig
from .sgcn import SGCN, SLightGCN, SNGCF
from .simgcl import SimGCL, SimGCLConfig
from .xsimgcl import XSimGCL, XSimGCLConfig

__all__ = ["Batch", "GraphRecommender", "Plugin", "bpr_loss", "GRCN", "GRCNConfig", "LightGCN", "LightGCNConfig", "NGCF",
           "NGCFConfig", "SGCN", "SLightGCN", "SNGCF", "MODELS", "PLUGINS", "ModelEntry",
           "PluginEntry", "model_entry", "plugin_entry", "register_model", "register_plugin",
           "DGR", "DGRConfig", "SimGCL", "SimGCLConfig", "XSimGCL", "XSimGCLConfig"]
