"""Graph recommenders built on ``fastgcn_denoise.ops``.

Every model has ``forward(graph, mask_spec=None) -> (user_emb, item_emb)`` (score = dot product),
``loss(graph, users, pos, neg, decay) -> (total, bpr, reg)`` and ``hparams()`` (its constructor
arguments, stored in checkpoints). ``s-lightgcn`` / ``s-ngcf`` (SGCN) also take ``num_edges``:
their mask logits belong to one training graph.
"""
from .lightgcn import LightGCN, bpr_loss
from .ngcf import NGCF
from .sgcn import SGCN, SLightGCN, SNGCF

MODELS = {"lightgcn": LightGCN, "ngcf": NGCF, "s-lightgcn": SLightGCN, "s-ngcf": SNGCF}


def build_model(name: str, **hparams):
    """Instantiate a model by name (``MODELS``) with its constructor arguments."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](**hparams)


__all__ = ["LightGCN", "NGCF", "SGCN", "SLightGCN", "SNGCF", "MODELS", "build_model", "bpr_loss"]
