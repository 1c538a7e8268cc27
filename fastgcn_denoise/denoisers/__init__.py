"""Denoisers: methods that find and suppress noisy interactions, on top of a backbone.

SGCN's learned masks (``sgcn``: S-LightGCN / S-NGCF), the mask plug-in on any backbone
(``masks``), DGR's desmoothing plug-in (``dgr``), LightGNN's pruned and distilled models
(``lightgnn``), GRCN's refined graph (``grcn``), ADT's T-CE / R-CE (``tce``), RGCF (``rgcf``), the
detectors that need no training (``knn``, ``spectral``, ``topic``) and fixed soft weights
(``reweight``). The models and plug-ins register in ``models.registry``, so ``train --model
NAME`` / ``--PLUGIN`` finds them once this package is imported (the pipelines do).
"""

from . import dgr, grcn, lightgnn, masks, reweight, rgcf, sgcn, tce  # noqa: F401  (registers them)
from .dgr import DGR, DGRConfig
from .grcn import GRCN, GRCNConfig
from .sgcn import SGCN, SNGCF, SLightGCN

__all__ = ["DGR", "DGRConfig", "GRCN", "GRCNConfig", "SGCN", "SLightGCN", "SNGCF"]
