"""Data: loaders and writers, splits, noise injection, samplers, the synthetic benchmark."""

from .dataset import InteractionData
from .features import attach_features, load_features, parse_feature_specs, resolve_features
from .loaders import load_dataset, load_lightgcn, load_npz, load_pairs, save_npz, write_interactions
from .noise import inject_noise
from .sampling import sample_bpr
from .split import validation_split
from .synthetic import make_synthetic

__all__ = [
    "InteractionData",
    "inject_noise",
    "load_dataset",
    "load_lightgcn",
    "load_npz",
    "load_pairs",
    "make_synthetic",
    "sample_bpr",
    "save_npz",
    "validation_split",
    "write_interactions",
    "attach_features",
    "load_features",
    "parse_feature_specs",
    "resolve_features",
]
