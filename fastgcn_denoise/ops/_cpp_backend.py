"""The compiled backends (``cpu`` and ``cuda``): thin wrappers over ``fastgcn_denoise._C``.

Same primitives and signatures as ``ops/reference.py``; ``_C`` dispatches on the tensors' device.
"""

from __future__ import annotations

import torch

from .. import _C
from ..modes import GATE_KINDS, MODE_ID


def _i64(v: int) -> int:
    """Seeds and counters are 64-bit unsigned; pybind takes them as int64 (same bits)."""
    v = int(v) & 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


_NEEDS_P = {MODE_ID[m] for m in ("arm_neg", "bernoulli", "expect", "hard")}
_NEEDS_Q = {MODE_ID[m] for m in ("arm_pos", "concrete_st")}
_NEEDS_PHI = {MODE_ID[k] for k in GATE_KINDS}
# (temperature, gamma, zeta) when no gate mode is drawn (the kernel ignores them).
_NO_GATE = (1.0, 0.0, 0.0)


def edge_weights(
    logits, edge_weight, modes, seed, offset, num_edges, dtype, device, gate=None, need_grad=False
):
    # The sigmoids come from torch (vectorised, and the reference's own function, so binary masks
    # and expect/hard values match the reference bit for bit); the kernel adds the Philox draw and
    # the gates (csrc/gates.h, from phi).
    phi = p = q = None
    if logits is not None:
        logits = logits.to(dtype)
        p = torch.sigmoid(logits) if _NEEDS_P.intersection(modes) else None
        q = torch.sigmoid(-logits) if _NEEDS_Q.intersection(modes) else None
        phi = logits.contiguous() if _NEEDS_PHI.intersection(modes) else None
    out = _C.edge_weights(
        phi,
        p,
        q,
        edge_weight,
        list(modes),
        _i64(seed),
        _i64(offset),
        num_edges,
        dtype,
        torch.device(device),
        *(gate or _NO_GATE),
        bool(need_grad),
    )
    return (out[0], out[1]) if need_grad else out[0]


def degree_rsqrt(graph, w, self_loop):
    r_u, r_i = _C.degree_rsqrt(graph.rowptr_u, graph.rowptr_i, graph.perm, w, self_loop)
    return r_u, r_i


def spmm(rowptr, col, eid, w, r_row, r_col, x, x_self):
    return _C.spmm(rowptr, col, eid, w, r_row, r_col, x, x_self)


def _both_csrs(graph):
    """CSR(R) and CSR(Rᵀ) with its edge ids: what the kernels that walk both sides take."""
    return graph.rowptr_u, graph.col_item, graph.rowptr_i, graph.col_user, graph.perm


def spmm_backward(graph, w, r_u, r_i, x_u, x_i, gy_u, gy_i, self_loop, need_xu, need_xi):
    """(dL/dx_user | None, dL/dx_item | None, dL/dw [E]) of one propagation (w [E]), CPU tensors:
    ``spmm`` twice and ``edge_grad`` fused into two passes over the gathered rows."""
    return _C.spmm_backward(
        *_both_csrs(graph),
        w,
        r_u,
        r_i,
        x_u,
        x_i,
        gy_u,
        gy_i,
        self_loop,
        need_xu,
        need_xi,
    )


def edge_grad(graph, w, r_u, r_i, x_u, x_i, gy_u, gy_i, self_loop):
    return _C.edge_grad(
        *_both_csrs(graph),
        w,
        r_u,
        r_i,
        x_u,
        x_i,
        gy_u,
        gy_i,
        self_loop,
    )
