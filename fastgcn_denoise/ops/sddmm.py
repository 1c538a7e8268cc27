"""SDDMM on the interaction pattern: out[e] = <a[u_e], b[i_e]> for every edge e (edge-id order).

The sampled product (A B^T) restricted to the nonzeros of R, never forming A B^T. It is the exact
gradient of a sum of singular values (``nuclear_norm``: U_k V_k^T on the pattern) and the
per-edge score of a weighted propagation. Row-parallel over CSR(R), whose positions are edge ids.

Differentiable in ``a`` and ``b``: with g = dL/dout, dL/da = R_g b and dL/db = R_g^T a, the two
weighted products of the propagation backend (no renormalisation), each row-parallel.
Backends: ``reference`` (chunked torch), ``cpu`` (``_C.sddmm``), ``triton`` (kernels/sddmm.py).
Registered as ``fastgcn::sddmm`` (+ ``sddmm_backward``; ``_library``).
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _library as library
from ._backend import BackendUnavailable, get_backend, resolve_name

_CHUNK_ELEMENTS = 1 << 22  # reference: gathered elements per chunk (bounds its temporary memory)


def _reference(rowptr, col, a, b):
    rows = torch.repeat_interleave(
        torch.arange(rowptr.shape[0] - 1, device=a.device), rowptr.diff(), output_size=col.shape[0]
    )
    out = torch.empty(col.shape[0], dtype=a.dtype, device=a.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, a.shape[1]))
    for s in range(0, col.shape[0], step):
        out[s : s + step] = (a[rows[s : s + step]] * b[col[s : s + step]]).sum(-1)
    return out


def _cpu(rowptr, col, a, b):
    from .. import _C

    if not hasattr(_C, "sddmm"):
        raise BackendUnavailable(
            "fastgcn_denoise._C has no sddmm (built before it was added); "
            "rebuild the extension (pip install -e . or make build)"
        )
    return _C.sddmm(rowptr, col, a, b)


def _triton(rowptr, col, a, b):
    from fastgcn_denoise.kernels.sddmm import sddmm as kernel

    return kernel(rowptr, col, a, b)


_IMPLS = {"reference": _reference, "cpu": _cpu, "triton": _triton}


def sddmm_kernel(device: torch.device, backend: str | None = None):
    """The raw kernel ``f(rowptr, col, a, b) -> [nnz]`` of the chosen backend (no autograd)."""
    name = resolve_name(device, backend)
    if name not in _IMPLS:
        raise BackendUnavailable(f"sddmm has no {name!r} kernel; the triton backend covers GPUs")
    return _IMPLS[name]


# fastgcn::sddmm takes the whole graph (both CSRs) so that its backward finds the transpose.
def _sddmm_op(
    rowptr_u: torch.Tensor,
    col_item: torch.Tensor,
    rowptr_i: torch.Tensor,
    col_user: torch.Tensor,
    perm: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    backend: Optional[str],
) -> torch.Tensor:
    return sddmm_kernel(a.device, backend)(rowptr_u, col_item, a, b)


def _sddmm_backward_op(
    rowptr_u: torch.Tensor,
    col_item: torch.Tensor,
    rowptr_i: torch.Tensor,
    col_user: torch.Tensor,
    perm: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    g: torch.Tensor,
    need_a: bool,
    need_b: bool,
    backend: Optional[str],
) -> list[torch.Tensor]:
    """[dL/da or empty, dL/db or empty]: dL/da = R_g b and dL/db = R_g^T a."""
    be = get_backend(a.device, backend)
    w = g.contiguous().unsqueeze(0)
    ga = (
        be.spmm(rowptr_u, col_item, None, w, None, None, b, None)[0] if need_a else library.empty(a)
    )
    gb = (
        be.spmm(rowptr_i, col_user, perm, w, None, None, a, None)[0] if need_b else library.empty(b)
    )
    return [ga, gb]


_forward = library.define(
    "sddmm", _sddmm_op, lambda pu, ci, pi, cu, perm, a, b, backend: a.new_empty(ci.shape[0])
)
_backward = library.define(
    "sddmm_backward",
    _sddmm_backward_op,
    lambda pu, ci, pi, cu, perm, a, b, g, need_a, need_b, backend: [
        torch.empty_like(a) if need_a else library.empty(a),
        torch.empty_like(b) if need_b else library.empty(b),
    ],
)


def _setup(ctx, inputs, output):
    *graph, a, b, backend = inputs
    ctx.save_for_backward(*graph, a, b)
    ctx.backend = backend


def _grad(ctx, g):
    *graph, a, b = ctx.saved_tensors
    ga, gb = _backward(
        *graph, a, b, g, ctx.needs_input_grad[5], ctx.needs_input_grad[6], ctx.backend
    )
    return None, None, None, None, None, library.present(ga), library.present(gb), None


library.differentiable(_forward, _grad, _setup)


def check_inputs(graph, a: torch.Tensor, b: torch.Tensor) -> None:
    """ValueError unless a [U, k] and b [I, k] are float32/float64 of one dtype on the graph's
    device."""
    for name, x, n, what in (
        ("a", a, graph.num_users, "num_users"),
        ("b", b, graph.num_items, "num_items"),
    ):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] != n:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape [{what} = {n}, k], got {shape}")
        if x.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
        if x.device != graph.device:
            raise ValueError(f"{name} is on {x.device} but the graph is on {graph.device}")
    if a.shape[1] != b.shape[1] or a.dtype != b.dtype:
        raise ValueError(
            f"a ({a.shape[1]} columns, {a.dtype}) and b ({b.shape[1]} columns, {b.dtype}) "
            "must share k and dtype"
        )


def sddmm(graph, a: torch.Tensor, b: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """out [E] with out[e] = <a[u_e], b[i_e]>.

    Args:
        graph: ``BipartiteGraph`` on the tensors' device.
        a [U, k], b [I, k]: float32 or float64 (same dtype).
        backend: force a backend (default: FASTGCN_BACKEND or the best for the device).
    """
    check_inputs(graph, a, b)
    return _forward(*library.graph_args(graph), a.contiguous(), b.contiguous(), backend)


__all__ = ["sddmm", "sddmm_kernel", "check_inputs"]
