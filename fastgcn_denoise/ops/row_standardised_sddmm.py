"""SDDMM scores standardised within each user's interactions (the mask heads' edge feature).

    s_e = <a[u_e], b[i_e]>,  out_e = (s_e - mean_u) / max(std_u, eps)

mean and (population) std over the edges of u, i.e. its CSR(R) row; a user with one interaction
gets 0. Edge-id order, [E], a's dtype. Not differentiable: the inputs are features (detached).

Backends: ``cpu`` (``_C.sddmm_row_standardised``: the dot products and both moments in one pass
over each row, the row's scores in cache), otherwise ``reference`` below (``sddmm`` on the device,
then segment sums from one float64 prefix sum).
"""

from __future__ import annotations

import torch

from ._backend import resolve_name
from .sddmm import check_inputs, sddmm


def standardise_rows(graph, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x [E] standardised within each CSR(R) row, from segment sums of one float64 prefix sum."""
    deg, rowptr = graph.deg_u, graph.rowptr_u

    def user_sums(values):
        c = torch.cat([values.new_zeros(1, dtype=torch.float64), values.double().cumsum(0)])
        return (c[rowptr[1:]] - c[rowptr[:-1]]).to(values.dtype)

    def per_edge(values):  # a user's value on each of its edges (edges are user-major)
        return torch.repeat_interleave(values, deg, output_size=x.shape[0])

    n = deg.to(x.dtype).clamp_min(1)
    centred = x - per_edge(user_sums(x) / n)
    return centred / per_edge((user_sums(centred * centred) / n).sqrt().clamp_min(eps))


def reference(graph, a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The definition in torch ops (any device, float64-capable)."""
    return standardise_rows(graph, sddmm(graph, a.detach(), b.detach(), "reference"), eps)


def row_standardised_sddmm(
    graph, a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6, backend: str | None = None
) -> torch.Tensor:
    """out [E] (module docstring) for a [U, k], b [I, k] (float32 or float64, one dtype)."""
    a, b = a.detach(), b.detach()
    if resolve_name(a.device, backend) != "cpu":
        return standardise_rows(graph, sddmm(graph, a, b, backend), eps)
    from .. import _C

    check_inputs(graph, a, b)
    return _C.sddmm_row_standardised(
        graph.rowptr_u, graph.col_item, a.contiguous(), b.contiguous(), float(eps)
    )


__all__ = ["row_standardised_sddmm", "reference"]
