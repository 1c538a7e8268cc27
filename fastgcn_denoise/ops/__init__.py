"""Public ops. Each is an autograd-aware function dispatching to a backend (see ``_backend``)."""

from . import reference
from ._backend import BACKENDS, BackendUnavailable, availability, get_backend, resolve_name
from .all_pairs import AllPairsResult, all_pairs_interaction, pair_gates
from .arm_grad import ESTIMATORS, arm_grad
from .cooccurrence import LECNeighbors, item_cooccurrence, lec_neighbors
from .cosine_attention import cosine_attention
from .dot_logsumexp import dot_logsumexp
from .gates import gate, l0_probability
from .masked_spmm import layer_offset, masked_spmm, masked_spmm_dual, sample_mask
from .nuclear_norm import BACKWARDS, NuclearNormState, nuclear_norm
from .propagation_rows import propagation_rows
from .row_standardised_sddmm import row_standardised_sddmm
from .sddmm import sddmm
from .segment_topk import segment_topk
from .sign_noise import sign_noise
from .spgemm import CSRMatrix, power_sum, spgemm
from .truncated_svd import truncated_svd
from .weighted_spmm import CSRPattern, bipartite_operator, directed_spmm, weighted_spmm

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "availability",
    "get_backend",
    "resolve_name",
    "layer_offset",
    "masked_spmm",
    "masked_spmm_dual",
    "sample_mask",
    "reference",
    "ESTIMATORS",
    "arm_grad",
    "gate",
    "l0_probability",
    "sddmm",
    "row_standardised_sddmm",
    "truncated_svd",
    "BACKWARDS",
    "NuclearNormState",
    "nuclear_norm",
    "CSRPattern",
    "weighted_spmm",
    "bipartite_operator",
    "propagation_rows",
    "directed_spmm",
    "cosine_attention",
    "AllPairsResult",
    "all_pairs_interaction",
    "pair_gates",
    "segment_topk",
    "sign_noise",
    "item_cooccurrence",
    "lec_neighbors",
    "LECNeighbors",
    "dot_logsumexp",
    "CSRMatrix",
    "spgemm",
    "power_sum",
]
