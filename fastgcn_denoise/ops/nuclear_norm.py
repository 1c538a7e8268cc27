"""Truncated nuclear norm of the weighted interaction matrix: sum of the top-k singular values of R_w.

SGCN's low-rank penalty (paper Eq. 12, DESIGN.md "SGCN"): gamma * sum_k sum_{j<=n} sigma_j(R ⊙ sigmoid(Phi_k)),
on the user x item matrix R (the symmetric adjacency has every singular value twice). One call per
layer, each with its own ``NuclearNormState`` so that every step warm-starts from the last one.

Forward: ``truncated_svd`` (block Krylov), warm-started from ``state.v``.

Backward, two options:
  ``exact``            d sigma_j / d M_ui = U_uj V_ij, so d/dw_e = sum_{j<=k} U[u_e, j] V[i_e, j]:
                       U_k V_k^T sampled on the pattern (``sddmm``). No 1/(sigma_i - sigma_j) terms:
                       a sum of singular values has a stable gradient even for close values.
  ``power_iteration``  the paper's choice (Sec. 3.4, after Wang et al., NeurIPS'19). Our reading:
                       the forward value comes from the SVD; the gradient is that of a "shadow"
                       loss computed by power iteration started from the SVD's vectors. For
                       j = 1..k in turn, on the deflated matrix A_j = R_w - sum_{i<j} s_i u_i v_i^T
                       (deflated with the power iteration's own earlier outputs), start from v_j,
                       iterate ``pi_iters`` times u = A_j v / |A_j v|, v = A_j^T u / |A_j^T u|,
                       and take s_j = |A_j^T u| (= u^T A_j v for the final v). The shadow loss
                       sum_j s_j is differentiated through the unrolled iterations by autograd.
                       At converged vectors this equals the exact gradient (the derivative of
                       u^T A v is u v^T when u, v are unit singular vectors). It costs k * pi_iters
                       sequential pairs of sparse mat-vecs: offered for fidelity, not speed.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _library as library
from .masked_spmm import masked_spmm
from .sddmm import sddmm_kernel
from .truncated_svd import truncated_svd

BACKWARDS = ("exact", "power_iteration")


class NuclearNormState:
    """What ``nuclear_norm`` keeps between steps: the last right singular vectors (and values).

    Attributes: ``v`` [num_items, k] or None, ``s`` [k] or None. Keep one per penalised matrix.
    """

    def __init__(self):
        self.v = None
        self.s = None

    def __repr__(self) -> str:
        shape = None if self.v is None else tuple(self.v.shape)
        return f"NuclearNormState(v={shape})"


def _power_iteration_grad(graph, w, u0, s0, v0, iters, backend):
    """d(shadow loss)/dw [E]: the unrolled, deflated power iteration of the module docstring."""
    eps = torch.finfo(w.dtype).tiny
    with torch.enable_grad():
        w = w.detach().requires_grad_()
        zero_u = torch.zeros(graph.num_users, 1, dtype=w.dtype, device=w.device)
        zero_i = torch.zeros(graph.num_items, 1, dtype=w.dtype, device=w.device)

        def rw(x):  # R_w x  [I, 1] -> [U, 1]  (masked_spmm: no mask, no renormalisation)
            return masked_spmm(graph, zero_u, x, edge_weight=w, renormalize=False, backend=backend)[
                0
            ]

        def rw_t(y):  # R_w^T y  [U, 1] -> [I, 1]
            return masked_spmm(graph, y, zero_i, edge_weight=w, renormalize=False, backend=backend)[
                1
            ]

        us, ss, vs = [], [], []
        for j in range(v0.shape[1]):
            if s0[j] <= 0:  # a zero singular value: no direction to iterate on, no gradient
                continue
            defl_u = torch.cat(us, 1) if us else None
            defl_s = torch.stack(ss) if ss else None
            defl_v = torch.cat(vs, 1) if vs else None
            v, s = v0[:, j : j + 1], None
            for _ in range(iters):
                u = rw(v)
                if defl_u is not None:
                    u = u - defl_u @ (defl_s[:, None] * (defl_v.mT @ v))
                u = u / u.norm().clamp_min(eps)
                v = rw_t(u)
                if defl_v is not None:
                    v = v - defl_v @ (defl_s[:, None] * (defl_u.mT @ u))
                s = v.norm()
                v = v / s.clamp_min(eps)
            us.append(u)
            ss.append(s)
            vs.append(v)
        if not ss:
            return torch.zeros_like(w)
        (grad,) = torch.autograd.grad(torch.stack(ss).sum(), w)
    return grad


def _nuclear_norm_op(
    rowptr_u: torch.Tensor,
    col_item: torch.Tensor,
    rowptr_i: torch.Tensor,
    col_user: torch.Tensor,
    perm: torch.Tensor,
    w: torch.Tensor,
    k: int,
    init: Optional[torch.Tensor],
    n_iter: Optional[int],
    tol: Optional[float],
    oversample: Optional[int],
    mode: str,
    pi_iters: int,
    backend: Optional[str],
) -> list[torch.Tensor]:
    """``fastgcn::nuclear_norm``: [sum of the top-k singular values, U, S, V] (U, S, V are what
    the caller's state keeps and what backward needs; ``mode``, ``pi_iters``: the backward's)."""
    graph = library.graph_from(rowptr_u, col_item, rowptr_i, col_user, perm)
    u, s, v = truncated_svd(
        graph,
        k,
        w,
        init=init,
        dtype=w.dtype,
        backend=backend,
        n_iter=n_iter,
        tol=tol,
        oversample=oversample,
    )
    return [s.sum(), u, s, v]


def _nuclear_norm_fake(
    rowptr_u,
    col_item,
    rowptr_i,
    col_user,
    perm,
    w,
    k,
    init,
    n_iter,
    tol,
    oversample,
    mode,
    pi_iters,
    backend,
):
    new = w.new_empty
    return [new(()), new(rowptr_u.shape[0] - 1, k), new(k), new(rowptr_i.shape[0] - 1, k)]


def _nuclear_norm_backward_op(
    rowptr_u: torch.Tensor,
    col_item: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    backend: Optional[str],
) -> torch.Tensor:
    """The ``exact`` backward: g * (U_k V_k^T sampled on the pattern) [E]."""
    return g * sddmm_kernel(u.device, backend)(rowptr_u, col_item, u, v)


_forward = library.define("nuclear_norm", _nuclear_norm_op, _nuclear_norm_fake)
_backward = library.define(
    "nuclear_norm_backward",
    _nuclear_norm_backward_op,
    lambda rowptr_u, col_item, u, v, g, backend: u.new_empty(col_item.shape),
)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:5], *output[1:], inputs[5])
    ctx.mode, ctx.pi_iters, ctx.backend = inputs[11:14]


def _grad(ctx, grads):
    *graph, u, s, v, w = ctx.saved_tensors
    if ctx.mode == "exact":
        g_w = _backward(graph[0], graph[1], u, v, grads[0], ctx.backend)
    else:
        # Autograd through the unrolled power iteration: eager here in the backward pass (an op's
        # implementation runs below autograd), so this option is not traced by torch.compile.
        g_w = grads[0] * _power_iteration_grad(
            library.graph_from(*graph), w, u, s, v, ctx.pi_iters, ctx.backend
        )
    return (None,) * 5 + (g_w,) + (None,) * 8


library.differentiable(_forward, _grad, _setup)


def nuclear_norm(
    graph,
    edge_weight: torch.Tensor,
    k: int,
    state: NuclearNormState | None = None,
    backward: str = "exact",
    pi_iters: int = 3,
    n_iter: int | None = None,
    tol: float | None = None,
    oversample: int | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Sum of the top-k singular values of R_w (R binary on the pattern), differentiable in w.

    Args:
        graph: ``BipartiteGraph``.
        edge_weight [E]: float32/float64 weights (edge-id order), e.g. sigmoid(phi_k).
        k: number of singular values, 1 <= k <= min(num_users, num_items).
        state: a ``NuclearNormState`` kept by the caller: read for the warm start, updated.
        backward: ``"exact"`` (U_k V_k^T on the pattern) or ``"power_iteration"`` (see module doc).
        pi_iters: power-iteration steps per singular value for ``backward="power_iteration"``.
        n_iter, tol, oversample: passed to ``truncated_svd``.
        backend: force a backend for the sparse products and the SDDMM.

    Returns:
        A 0-d tensor in edge_weight's dtype.
    """
    if backward not in BACKWARDS:
        raise ValueError(f"unknown backward {backward!r}; choose one of {', '.join(BACKWARDS)}")
    if not isinstance(edge_weight, torch.Tensor) or edge_weight.dtype not in (
        torch.float32,
        torch.float64,
    ):
        what = (
            edge_weight.dtype
            if isinstance(edge_weight, torch.Tensor)
            else type(edge_weight).__name__
        )
        raise ValueError(f"edge_weight must be a float32 or float64 tensor, got {what}")
    if state is not None and not isinstance(state, NuclearNormState):
        raise ValueError(f"state must be a NuclearNormState or None, got {type(state).__name__}")
    if (
        state is not None
        and state.v is not None
        and (state.v.shape[0] != graph.num_items or state.v.device != graph.device)
    ):
        raise ValueError(
            f"state.v has shape {tuple(state.v.shape)} on {state.v.device}, but the graph "
            f"has {graph.num_items} items on {graph.device}: one state per matrix"
        )
    if not isinstance(pi_iters, int) or pi_iters < 1:
        raise ValueError(f"pi_iters must be a positive int, got {pi_iters!r}")
    init = None if state is None or state.v is None else state.v.detach()
    value, u, s, v = _forward(
        *library.graph_args(graph),
        edge_weight,
        k,
        init,
        n_iter,
        tol,
        oversample,
        backward,
        pi_iters,
        backend,
    )
    if state is not None:  # detached: the next call's warm start must not link the two graphs
        state.v, state.s = v.detach(), s.detach()
    return value


__all__ = ["nuclear_norm", "NuclearNormState", "BACKWARDS"]
