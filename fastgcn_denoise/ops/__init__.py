"""Public ops. Each is an autograd-aware function dispatching to a backend (see ``_backend``)."""
from . import reference
from ._backend import BACKENDS, BackendUnavailable, availability, get_backend, resolve_name
from .masked_spmm import layer_offset, masked_spmm, masked_spmm_dual, sample_mask

__all__ = [
    "BACKENDS", "BackendUnavailable", "availability", "get_backend", "resolve_name",
    "layer_offset", "masked_spmm", "masked_spmm_dual", "sample_mask", "reference",
]
