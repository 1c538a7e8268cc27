"""Cosine attention on the bipartite graph: cosine SDDMM -> segment softmax -> weighted aggregation.

GRCN's graph refining step (Wei et al., ACM MM'20), as one op. For every edge e = (u, i):

    c_e = cos(k_user[u], k_item[i])  = <k^_user[u], k^_item[i]>,  k^ = k / max(|k|, 1e-12)
    s_e = c_e / temperature
    alpha_to_user[e] = exp(s_e) / sum_{e' = (u, .)} exp(s_e')     softmax over u's edges
    alpha_to_item[e] = exp(s_e) / sum_{e' = (., i)} exp(s_e')     softmax over i's edges
    y_user[u] = sum_{e = (u, i)} alpha_to_user[e] v_item[i]
    y_item[i] = sum_{e = (u, i)} alpha_to_item[e] v_user[u]

One pass per direction, row-parallel on the CSR whose rows are the destinations (CSR(R) for the
users, CSR(R^T) for the items; the item pass reads the user pass's cosines). The attention
weights exist only per edge ([E], edge-id order), never as a dense matrix; a node without edges
gets y = 0. Keys are normalised outside the kernels (``F.normalize``, so its backward is autograd's).

Backward (g = upstream gradients; the weights are outputs too, so g_alpha enters):
    d_e      = <gy_user[u], v_item[i]> + g_alpha_to_user[e]            (an SDDMM)
    gs_e     = alpha_to_user[e] (d_e - sum_{e' in row u} alpha_to_user[e'] d_e')
               + the same for the item direction on CSR(R^T)           (softmax backward)
    dk^_user = R_{gs / temperature} k^_item,   dk^_item = R^T_{gs / temperature} k^_user
    dv_item  = R^T_{alpha_to_user} gy_user,    dv_user  = R_{alpha_to_item} gy_item
The softmax backward (dot products and the row reduction) is one fused kernel per direction;
the four products run on the propagation's ``spmm`` primitive of the same backend.

Backends: ``reference`` (torch index ops, float64-capable), ``cpu`` (``_C.cosine_attention_*``,
OpenMP), ``triton`` (``kernels/cosine_attention.py``; CUDA, or CPU under TRITON_INTERPRET=1). The
cuda backend has no kernel of its own: forced, the fused passes run on triton (the GPU default).
``composition`` is the same computation written as plain autograd PyTorch on [E, d] gathers (the
tests' gradient truth and the benchmark's peer).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from . import _library as library
from ._backend import BackendUnavailable, get_backend, resolve_name

NORM_EPS = 1e-12  # F.normalize's default: a zero key has cosine 0 with everything


# --------------------------------------------------------------------------- reference primitives
def _rows_of(rowptr: torch.Tensor, nnz: int) -> torch.Tensor:
    return torch.repeat_interleave(
        torch.arange(rowptr.shape[0] - 1, device=rowptr.device), rowptr.diff(), output_size=nnz
    )


def segment_softmax(s: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """softmax of ``s`` [n] within the groups of equal ``index`` [n] (differentiable in s)."""
    m = torch.full((num_segments,), float("-inf"), dtype=s.dtype, device=s.device)
    m = m.scatter_reduce(0, index, s.detach(), "amax")  # a constant shift: no gradient needed
    p = torch.exp(s - m[index])
    total = torch.zeros(num_segments, dtype=s.dtype, device=s.device).index_add(0, index, p)
    return p / total[index]


def _reference_forward(rowptr, col, eid, cos, k_row, k_col, v_col, inv_tau):
    """(y [R, dv], alpha [E], cos [E]) for one direction; positions j of the CSR are edges
    ``eid[j]`` (None: j). ``cos`` [E] (edge order) is reused when given, else computed."""
    nnz = col.shape[0]
    rows = _rows_of(rowptr, nnz)
    pos = torch.arange(nnz, device=col.device) if eid is None else eid
    c = (k_row[rows] * k_col[col]).sum(-1) if cos is None else cos[pos]
    a = segment_softmax(c * inv_tau, rows, rowptr.shape[0] - 1)
    y = torch.zeros(rowptr.shape[0] - 1, v_col.shape[1], dtype=v_col.dtype, device=v_col.device)
    y.index_add_(0, rows, a.unsqueeze(-1) * v_col[col])
    alpha = torch.empty_like(a).index_copy_(0, pos, a)
    cos_e = torch.empty_like(c).index_copy_(0, pos, c) if cos is None else cos
    return y, alpha, cos_e


def _reference_backward(rowptr, col, eid, alpha, g_alpha, gy, v_col):
    """gs [E] (edge order): alpha_e (d_e - sum_row alpha d), d_e = <gy[row], v[col]> + g_alpha_e."""
    nnz = col.shape[0]
    rows = _rows_of(rowptr, nnz)
    pos = torch.arange(nnz, device=col.device) if eid is None else eid
    a = alpha[pos]
    d = (gy[rows] * v_col[col]).sum(-1) + g_alpha[pos]
    total = torch.zeros(rowptr.shape[0] - 1, dtype=d.dtype, device=d.device).index_add_(
        0, rows, a * d
    )
    return torch.empty_like(d).index_copy_(0, pos, a * (d - total[rows]))


def composition(graph, key_user, key_item, value_user, value_item, temperature: float = 1.0):
    """The same outputs as ``cosine_attention`` from plain autograd PyTorch on [E, d] gathers
    (the gradient truth of the tests and the benchmark's peer); both directions required."""
    users, items = graph.edges()
    k_u = F.normalize(key_user, dim=1, eps=NORM_EPS)
    k_i = F.normalize(key_item, dim=1, eps=NORM_EPS)
    s = (k_u[users] * k_i[items]).sum(-1) / temperature
    a_u = segment_softmax(s, users, graph.num_users)
    a_i = segment_softmax(s, items, graph.num_items)
    y_u = value_item.new_zeros(graph.num_users, value_item.shape[1]).index_add(
        0, users, a_u.unsqueeze(-1) * value_item[items]
    )
    y_i = value_user.new_zeros(graph.num_items, value_user.shape[1]).index_add(
        0, items, a_i.unsqueeze(-1) * value_user[users]
    )
    return y_u, y_i, a_u, a_i


# --------------------------------------------------------------------------- compiled / triton
def _cpu_ext():
    from .. import _C

    if not hasattr(_C, "cosine_attention_forward"):
        raise BackendUnavailable(
            "fastgcn_denoise._C has no cosine_attention (built before it was "
            "added); rebuild the extension (pip install -e .)"
        )
    return _C


def _cpu_forward(rowptr, col, eid, cos, k_row, k_col, v_col, inv_tau):
    y, alpha, cos_e = _cpu_ext().cosine_attention_forward(
        rowptr, col, eid, cos, k_row, k_col, v_col, float(inv_tau)
    )
    return y, alpha, cos_e


def _cpu_backward(rowptr, col, eid, alpha, g_alpha, gy, v_col):
    return _cpu_ext().cosine_attention_backward(rowptr, col, eid, alpha, g_alpha, gy, v_col)


def _triton_forward(*args):
    from fastgcn_denoise.kernels.cosine_attention import attention_forward

    return attention_forward(*args)


def _triton_backward(*args):
    from fastgcn_denoise.kernels.cosine_attention import attention_backward

    return attention_backward(*args)


_IMPLS = {
    "reference": (_reference_forward, _reference_backward),
    "cpu": (_cpu_forward, _cpu_backward),
    "triton": (_triton_forward, _triton_backward),
}


def attention_kernels(device: torch.device, backend: str | None = None):
    """(forward, backward) primitives of the chosen backend (no autograd); cuda -> triton."""
    name = resolve_name(device, backend)
    if name == "cuda":
        name = resolve_name(device, "triton")
    if name not in _IMPLS:
        raise BackendUnavailable(f"cosine_attention has no {name!r} kernel")
    return _IMPLS[name]


# --------------------------------------------------------------------------- autograd
# fastgcn::cosine_attention returns [y_user, y_item, alpha_to_user, alpha_to_item]; a skipped
# direction gives empty tensors (each its own: returns may not alias), the wrapper returns None.
def _cosine_attention_op(
    rowptr_u: torch.Tensor,
    col_item: torch.Tensor,
    rowptr_i: torch.Tensor,
    col_user: torch.Tensor,
    perm: torch.Tensor,
    inv_tau: float,
    k_user: torch.Tensor,
    k_item: torch.Tensor,
    v_user: Optional[torch.Tensor],
    v_item: Optional[torch.Tensor],
    backend: Optional[str],
) -> list[torch.Tensor]:
    fwd, _ = attention_kernels(k_user.device, backend)
    y_u = y_i = a_u = a_i = cos = None
    if v_item is not None:
        y_u, a_u, cos = fwd(rowptr_u, col_item, None, None, k_user, k_item, v_item, inv_tau)
    if v_user is not None:
        y_i, a_i, _ = fwd(rowptr_i, col_user, perm, cos, k_item, k_user, v_user, inv_tau)
    return [t if t is not None else library.empty(k_user) for t in (y_u, y_i, a_u, a_i)]


def _cosine_attention_fake(
    rowptr_u, col_item, rowptr_i, col_user, perm, inv_tau, k_user, k_item, v_user, v_item, backend
):
    e = col_item.shape[0]
    return [
        k_user.new_empty(rowptr_u.shape[0] - 1, v_item.shape[1])
        if v_item is not None
        else library.empty(k_user),
        k_user.new_empty(rowptr_i.shape[0] - 1, v_user.shape[1])
        if v_user is not None
        else library.empty(k_user),
        k_user.new_empty(e) if v_item is not None else library.empty(k_user),
        k_user.new_empty(e) if v_user is not None else library.empty(k_user),
    ]


def _cosine_attention_backward_op(
    rowptr_u: torch.Tensor,
    col_item: torch.Tensor,
    rowptr_i: torch.Tensor,
    col_user: torch.Tensor,
    perm: torch.Tensor,
    inv_tau: float,
    k_user: torch.Tensor,
    k_item: torch.Tensor,
    v_user: Optional[torch.Tensor],
    v_item: Optional[torch.Tensor],
    a_u: torch.Tensor,
    a_i: torch.Tensor,
    grads: list[torch.Tensor],
    needs: list[bool],
    backend: Optional[str],
) -> list[torch.Tensor]:
    """[dL/dk_user, dL/dk_item, dL/dv_user, dL/dv_item], empty where not needed or absent."""
    gy_u, gy_i, ga_u, ga_i = grads
    _, bwd = attention_kernels(k_user.device, backend)
    be = get_backend(
        k_user.device, None if resolve_name(k_user.device, backend) == "cuda" else backend
    )
    by_user = (rowptr_u, col_item, None)
    by_item = (rowptr_i, col_user, perm)

    def product(csr, w, x):  # y[r] = sum_{j in row r} w[edge(j)] x[col_j]
        return be.spmm(*csr, w.unsqueeze(0), None, None, x.contiguous(), None)[0]

    gs = gv_user = gv_item = None
    if v_item is not None:
        gs = bwd(*by_user, a_u, ga_u.contiguous(), gy_u.contiguous(), v_item)
        if needs[3]:
            gv_item = product(by_item, a_u, gy_u)
    if v_user is not None:
        g = bwd(*by_item, a_i, ga_i.contiguous(), gy_i.contiguous(), v_user)
        gs = g if gs is None else gs + g
        if needs[2]:
            gv_user = product(by_user, a_i, gy_i)
    gc = gs * inv_tau
    gk_user = product(by_user, gc, k_item) if needs[0] else None
    gk_item = product(by_item, gc, k_user) if needs[1] else None
    return [library.empty(k_user) if t is None else t for t in (gk_user, gk_item, gv_user, gv_item)]


def _cosine_attention_backward_fake(
    rowptr_u,
    col_item,
    rowptr_i,
    col_user,
    perm,
    inv_tau,
    k_user,
    k_item,
    v_user,
    v_item,
    a_u,
    a_i,
    grads,
    needs,
    backend,
):
    shapes = (k_user, k_item, v_user, v_item)
    return [
        torch.empty_like(t) if need and t is not None else library.empty(k_user)
        for t, need in zip(shapes, needs)
    ]


_forward = library.define("cosine_attention", _cosine_attention_op, _cosine_attention_fake)
_backward = library.define(
    "cosine_attention_backward", _cosine_attention_backward_op, _cosine_attention_backward_fake
)


def _setup(ctx, inputs, output):
    *graph, inv_tau, k_user, k_item, v_user, v_item, backend = inputs
    ctx.save_for_backward(*graph, k_user, k_item, v_user, v_item, output[2], output[3])
    ctx.inv_tau, ctx.backend = inv_tau, backend


def _grad(ctx, grads):
    *graph, k_user, k_item, v_user, v_item, a_u, a_i = ctx.saved_tensors
    out = _backward(
        *graph,
        ctx.inv_tau,
        k_user,
        k_item,
        v_user,
        v_item,
        a_u,
        a_i,
        list(grads),
        list(ctx.needs_input_grad[6:10]),
        ctx.backend,
    )
    return (None,) * 6 + tuple(library.present(t) for t in out) + (None,)


library.differentiable(_forward, _grad, _setup)


def _check_rows(name, x, rows, what, graph, dtype=None):
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] != rows:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape [{what} = {rows}, d], got {shape}")
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{name} is {x.dtype} but key_user is {dtype}; all inputs share a dtype")
    if x.device != graph.device:
        raise ValueError(f"{name} is on {x.device} but the graph is on {graph.device}")


def cosine_attention(
    graph,
    key_user: torch.Tensor,
    key_item: torch.Tensor,
    value_user: torch.Tensor | None,
    value_item: torch.Tensor | None,
    temperature: float = 1.0,
    backend: str | None = None,
):
    """(y_user [U, dv] | None, y_item [I, dv] | None, alpha_to_user [E] | None,
    alpha_to_item [E] | None): the module docstring's computation, differentiable in every input.

    Args:
        graph: ``BipartiteGraph`` on the tensors' device.
        key_user [U, k], key_item [I, k]: the vectors whose cosine scores each edge.
        value_user [U, dv]: aggregated into the items (None: skip the item direction, and its
            outputs are None). value_item [I, dv]: aggregated into the users (None: skip the
            user direction). float32/float64, one dtype for all inputs.
        temperature: softmax temperature (> 0); GRCN uses 1.
        backend: force a backend (default: FASTGCN_BACKEND or the best for the device).
    """
    _check_rows("key_user", key_user, graph.num_users, "num_users", graph)
    _check_rows("key_item", key_item, graph.num_items, "num_items", graph, key_user.dtype)
    if key_user.shape[1] != key_item.shape[1]:
        raise ValueError(
            f"key_user ({key_user.shape[1]} columns) and key_item "
            f"({key_item.shape[1]} columns) must have the same width"
        )
    if value_user is None and value_item is None:
        raise ValueError("value_user and value_item are both None: nothing to aggregate")
    if value_user is not None:
        _check_rows("value_user", value_user, graph.num_users, "num_users", graph, key_user.dtype)
    if value_item is not None:
        _check_rows("value_item", value_item, graph.num_items, "num_items", graph, key_user.dtype)
    temperature = float(temperature)
    if not temperature > 0 or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    k_user = F.normalize(key_user, dim=1, eps=NORM_EPS).contiguous()
    k_item = F.normalize(key_item, dim=1, eps=NORM_EPS).contiguous()
    out = _forward(
        *library.graph_args(graph),
        1.0 / temperature,
        k_user,
        k_item,
        None if value_user is None else value_user.contiguous(),
        None if value_item is None else value_item.contiguous(),
        backend,
    )
    y_u, y_i, a_u, a_i = out
    to_user, to_item = value_item is not None, value_user is not None
    return (
        y_u if to_user else None,
        y_i if to_item else None,
        a_u if to_user else None,
        a_i if to_item else None,
    )


__all__ = ["cosine_attention", "attention_kernels", "composition", "segment_softmax", "NORM_EPS"]
