"""Masked, renormalised propagation on the bipartite graph (DESIGN.md, "the core kernel").

    w_e = z_e * omega_e,  d_u = sum_{e in u} w_e (+1),  r = d^-1/2 (0 where d = 0),
    A_ui = r_u w_ui r_i,  y_user = A x_item,  y_item = A^T x_user  (+ r^2 x with self-loops).

The mask z is generated inside the backend from the logits and a Philox stream keyed by
(seed, offset + edge id); the uniforms are never stored. Convention for per-layer logits of
shape [K, E]: layer k uses ``offset + k * E`` (see ``layer_offset``).

Gradients flow to ``x_user``, ``x_item``, ``edge_weight`` (all modes) and ``logits`` (``expect``
mode; the binary modes get their logit gradients from the ARM estimator, not from autograd).
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from . import _library as library
from . import reference
from ._backend import get_backend
from .reference import MODE_ID, MODES

_DUAL_MODES = (MODE_ID["arm_pos"], MODE_ID["arm_neg"])


def layer_offset(offset: int, layer: int, num_edges: int) -> int:
    """Philox counter base of layer ``layer`` when one step draws a [K, E] block of uniforms."""
    return int(offset) + int(layer) * int(num_edges)


def _validate_values() -> bool:
    # Value checks (NaN, negative weights) need a host sync on GPU: always on for CPU tensors,
    # opt-in with FASTGCN_VALIDATE=1 on GPU.
    return os.environ.get("FASTGCN_VALIDATE", "0") == "1"


def _check_inputs(graph, x_user, x_item, logits, edge_weight, mode, renormalize):
    if mode not in MODE_ID:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    for name, x, n, what in (("x_user", x_user, graph.num_users, "num_users"),
                             ("x_item", x_item, graph.num_items, "num_items")):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"{name} must be a 2-D tensor [n, d], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.shape[0] != n:
            raise ValueError(f"{name} has {x.shape[0]} rows but the graph has {what} = {n}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {x.dtype}")
        if x.device != graph.device:
            raise ValueError(f"{name} is on {x.device} but the graph is on {graph.device}; "
                             "use graph.to(device)")
    if x_user.shape[1] != x_item.shape[1]:
        raise ValueError(f"x_user has d = {x_user.shape[1]} but x_item has d = {x_item.shape[1]}")
    if x_user.dtype != x_item.dtype:
        raise ValueError(f"x_user is {x_user.dtype} but x_item is {x_item.dtype}")
    if mode != "ones" and logits is None:
        raise ValueError(f"mode {mode!r} needs logits (one per edge)")
    for name, t in (("logits", logits), ("edge_weight", edge_weight)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or t.shape != (graph.num_edges,):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must have shape [num_edges] = [{graph.num_edges}], got {shape}")
        if t.device != graph.device:
            raise ValueError(f"{name} is on {t.device} but the graph is on {graph.device}")


def _check_values(logits, edge_weight, renormalize):
    """The checks that read the values (in the op, where the data is; see ``_validate_values``)."""
    if edge_weight is None and logits is None:
        return
    if not ((logits if edge_weight is None else edge_weight).device.type == "cpu"
            or _validate_values()):
        return
    for name, t in (("logits", logits), ("edge_weight", edge_weight)):
        # min/max are NaN or inf exactly when some value is: one cheap reduction on the hot path,
        # the search for the first bad edge only on failure.
        if t is not None and not torch.isfinite(torch.stack(torch.aminmax(t))).all():
            first = int((~torch.isfinite(t)).nonzero()[0])
            raise ValueError(f"{name} has non-finite values (first at edge {first})")
    if renormalize and edge_weight is not None and (edge_weight < 0).any():
        first = int((edge_weight < 0).nonzero()[0])
        raise ValueError(f"edge_weight must be >= 0 with renormalize=True (negative at edge {first})")


# fastgcn::masked_spmm: M masks drawn from one set of uniforms; returns M [U, d], M [I, d], then
# what backward needs: w [M, E], r_u [M, U], r_i [M, I] (empty without renormalisation).
def _masked_spmm_op(rowptr_u: torch.Tensor, col_item: torch.Tensor, rowptr_i: torch.Tensor,
                    col_user: torch.Tensor, perm: torch.Tensor, x_user: torch.Tensor,
                    x_item: torch.Tensor, logits: Optional[torch.Tensor],
                    edge_weight: Optional[torch.Tensor], modes: list[int], seed: int, offset: int,
                    self_loop: bool, renormalize: bool,
                    backend: Optional[str]) -> list[torch.Tensor]:
    _check_values(logits, edge_weight, renormalize)
    graph = library.graph_from(rowptr_u, col_item, rowptr_i, col_user, perm)
    be = get_backend(x_user.device, backend)
    w = be.edge_weights(logits, edge_weight, tuple(modes), library.uint64(seed),
                        library.uint64(offset), graph.num_edges, x_user.dtype, x_user.device)
    if not renormalize:
        r_u = r_i = None
    elif modes == [MODE_ID["ones"]] and edge_weight is None:
        # Unit weights: the degrees are the graph's, r from rowptr in O(U + I) instead of a pass
        # over the E weights (the item side through perm): a sixth of the Gowalla forward.
        r_u, r_i = (_unit_rsqrt(graph.deg_u, self_loop, x_user.dtype)[None],
                    _unit_rsqrt(graph.deg_i, self_loop, x_user.dtype)[None])
    else:
        r_u, r_i = be.degree_rsqrt(graph, w, self_loop)
    y_u = be.spmm(rowptr_u, col_item, None, w, r_u, r_i, x_item, x_user if self_loop else None)
    y_i = be.spmm(rowptr_i, col_user, perm, w, r_i, r_u, x_user, x_item if self_loop else None)
    # Returns may not alias each other: mask 0 keeps the kernel's buffer, later masks are copied
    # out of it (the dual pass: one copy of one side's [U + I, d]).
    ys = [y[0] if m == 0 else y[m].clone() for y in (y_u, y_i) for m in range(y.shape[0])]
    return [*ys, w, library.empty(w) if r_u is None else r_u,
            library.empty(w) if r_i is None else r_i]


def _unit_rsqrt(deg: torch.Tensor, self_loop: bool, dtype: torch.dtype) -> torch.Tensor:
    """(deg + self_loop)^-1/2 with 0 for degree 0, the ``degree_rsqrt`` of unit weights."""
    d = deg.to(dtype) + (1 if self_loop else 0)
    return torch.where(d > 0, d.clamp_min(1).rsqrt(), torch.zeros_like(d))


def _masked_spmm_fake(rowptr_u, col_item, rowptr_i, col_user, perm, x_user, x_item, logits,
                      edge_weight, modes, seed, offset, self_loop, renormalize, backend):
    m, d = len(modes), x_user.shape[1]
    nu, ni = rowptr_u.shape[0] - 1, rowptr_i.shape[0] - 1
    new = x_user.new_empty
    return ([new(nu, d) for _ in range(m)] + [new(ni, d) for _ in range(m)]
            + [new(m, col_item.shape[0]), new(m, nu) if renormalize else new(0),
               new(m, ni) if renormalize else new(0)])


def _masked_spmm_backward_op(rowptr_u: torch.Tensor, col_item: torch.Tensor,
                             rowptr_i: torch.Tensor, col_user: torch.Tensor, perm: torch.Tensor,
                             w: torch.Tensor, r_u: torch.Tensor, r_i: torch.Tensor,
                             x_user: torch.Tensor, x_item: torch.Tensor,
                             logits: Optional[torch.Tensor], edge_weight: Optional[torch.Tensor],
                             grads: list[Optional[torch.Tensor]], modes: list[int], seed: int,
                             offset: int, self_loop: bool, needs: list[bool],
                             backend: Optional[str]) -> list[torch.Tensor]:
    """[dL/dx_user, dL/dx_item, dL/dlogits, dL/dedge_weight], each empty when not needed.

    ``grads``: one per output mask and side (None for an output unused downstream: the ARM half
    evaluated without grad costs nothing here); ``needs``: the four inputs' needs_input_grad.
    """
    g = library.graph_from(rowptr_u, col_item, rowptr_i, col_user, perm)
    be = get_backend(x_user.device, backend)
    r_u, r_i = library.present(r_u), library.present(r_i)
    need_xu, need_xi, need_phi, need_w = needs
    num_masks = w.shape[0]
    expect = [m for m in range(num_masks) if modes[m] == MODE_ID["expect"]]
    need_phi = need_phi and bool(expect)  # the binary modes get no autograd logit gradient
    gx_u = gx_i = g_phi = g_w = None
    gws = {}
    for m in range(num_masks):
        gy_u, gy_i = grads[m], grads[num_masks + m]
        if gy_u is None and gy_i is None:
            continue
        gy_u = torch.zeros_like(x_user) if gy_u is None else gy_u.contiguous()
        gy_i = torch.zeros_like(x_item) if gy_i is None else gy_i.contiguous()
        wm = w[m:m + 1]
        rum = None if r_u is None else r_u[m:m + 1]
        rim = None if r_i is None else r_i[m:m + 1]
        # The propagation is symmetric: d/dx_item = A^T gy_user is the item-side product.
        if need_xu:
            t = be.spmm(g.rowptr_u, g.col_item, None, wm, rum, rim, gy_i,
                        gy_u if self_loop else None)[0]
            gx_u = t if gx_u is None else gx_u + t
        if need_xi:
            t = be.spmm(g.rowptr_i, g.col_user, g.perm, wm, rim, rum, gy_u,
                        gy_i if self_loop else None)[0]
            gx_i = t if gx_i is None else gx_i + t
        if need_w or (need_phi and m in expect):
            gws[m] = be.edge_grad(g, w[m], None if r_u is None else r_u[m],
                                  None if r_i is None else r_i[m], x_user, x_item, gy_u, gy_i,
                                  self_loop)
    if need_w and gws:
        # z (mask without omega) is regenerated rather than stored: omega may be zero.
        z = be.edge_weights(logits, None, tuple(modes), library.uint64(seed),
                            library.uint64(offset), g.num_edges, w.dtype, w.device)
        g_w = sum(gw * z[m] for m, gw in gws.items())
    grads_expect = [gws[m] for m in expect if m in gws]
    if need_phi and grads_expect:
        # Only `expect` (z = sigmoid(phi)) is differentiable in phi; see module docstring.
        p = torch.sigmoid(logits)
        omega = 1 if edge_weight is None else edge_weight
        g_phi = sum(grads_expect) * omega * p * (1 - p)
    return [library.empty(w) if t is None else t for t in (gx_u, gx_i, g_phi, g_w)]


def _masked_spmm_backward_fake(rowptr_u, col_item, rowptr_i, col_user, perm, w, r_u, r_i, x_user,
                               x_item, logits, edge_weight, grads, modes, seed, offset, self_loop,
                               needs, backend):
    # Which gradients exist depends on the data only through `needs`, `modes` and which grads
    # are None, all known when tracing: the same rules as the implementation.
    num_masks = w.shape[0]
    used = [grads[m] is not None or grads[num_masks + m] is not None for m in range(num_masks)]
    expect = any(u and modes[m] == MODE_ID["expect"] for m, u in enumerate(used))
    out = [torch.empty_like(x_user), torch.empty_like(x_item),
           w.new_empty(w.shape[1]), w.new_empty(w.shape[1])]
    have = [needs[0] and any(used), needs[1] and any(used), needs[2] and expect,
            needs[3] and any(used)]
    return [t if h else library.empty(w) for t, h in zip(out, have)]


_forward = library.define("masked_spmm", _masked_spmm_op, _masked_spmm_fake)
_backward = library.define("masked_spmm_backward", _masked_spmm_backward_op,
                           _masked_spmm_backward_fake)


def _setup(ctx, inputs, output):
    (*graph, x_user, x_item, logits, edge_weight, modes, seed, offset, self_loop, _,
     backend) = inputs
    ctx.save_for_backward(*graph, *output[-3:], x_user, x_item, logits, edge_weight)
    ctx.modes, ctx.seed, ctx.offset, ctx.self_loop, ctx.backend = (modes, seed, offset,
                                                                   self_loop, backend)
    # One output per mask and side, so a mask whose outputs are unused downstream (the ARM
    # half evaluated without grad) gets None gradients and costs nothing in backward.
    ctx.set_materialize_grads(False)


def _grad(ctx, grads):
    saved = ctx.saved_tensors
    m = len(ctx.modes)
    out = _backward(*saved, list(grads[:2 * m]), ctx.modes, ctx.seed, ctx.offset, ctx.self_loop,
                    list(ctx.needs_input_grad[5:9]), ctx.backend)
    return (None,) * 5 + tuple(library.present(t) for t in out) + (None,) * 6


library.differentiable(_forward, _grad, _setup)


def _run(graph, x_user, x_item, logits, modes, seed, offset, edge_weight, self_loop, renormalize,
         backend):
    dtype = x_user.dtype
    if logits is not None and logits.dtype != dtype:
        logits = logits.to(dtype)
    if edge_weight is not None and edge_weight.dtype != dtype:
        edge_weight = edge_weight.to(dtype)
    out = _forward(*library.graph_args(graph), x_user.contiguous(), x_item.contiguous(),
                   None if logits is None else logits.contiguous(),
                   None if edge_weight is None else edge_weight.contiguous(), list(modes),
                   library.int64_bits(seed), library.int64_bits(offset), bool(self_loop),
                   bool(renormalize), backend)
    return tuple(out[:2 * len(modes)])


def masked_spmm(graph, x_user, x_item, logits=None, mode="ones", seed=0, offset=0,
                edge_weight=None, self_loop=False, renormalize=True, backend=None):
    """One masked, renormalised propagation in both directions.

    Args:
        graph: ``BipartiteGraph`` on the tensors' device.
        x_user [U, d], x_item [I, d]: float32 or float64 embeddings.
        logits [E]: mask logits phi (edge-id order); required unless ``mode="ones"``.
        mode: one of ``ones, arm_pos, arm_neg, bernoulli, expect, hard``.
        seed, offset: Philox key and counter base; edge e uses counter ``offset + e``.
        edge_weight [E]: optional learnable weight omega (>= 0 when renormalising).
        self_loop: add the identity to A before normalising (degree + 1).
        renormalize: False gives y = (A ⊙ w) x with no degree normalisation.
        backend: force a backend (default: FASTGCN_BACKEND or the best for the device).

    Returns:
        (y_user [U, d], y_item [I, d]) in x's dtype.
    """
    _check_inputs(graph, x_user, x_item, logits, edge_weight, mode, renormalize)
    return _run(graph, x_user, x_item, logits, (MODE_ID[mode],), seed, offset, edge_weight,
                self_loop, renormalize, backend)


def masked_spmm_dual(graph, x_user, x_item, logits, seed=0, offset=0, edge_weight=None,
                     self_loop=False, renormalize=True, backend=None):
    """The two antithetic ARM propagations (``arm_pos`` and ``arm_neg``, same uniforms) in one pass.

    Returns ((y_user_pos, y_item_pos), (y_user_neg, y_item_neg)), each as ``masked_spmm``'s.
    Gathered embedding rows are shared between the two halves.
    """
    _check_inputs(graph, x_user, x_item, logits, edge_weight, "arm_pos", renormalize)
    pos_u, neg_u, pos_i, neg_i = _run(graph, x_user, x_item, logits, _DUAL_MODES, seed, offset,
                                      edge_weight, self_loop, renormalize, backend)
    return (pos_u, pos_i), (neg_u, neg_i)


def sample_mask(graph, logits, mode="bernoulli", seed=0, offset=0, backend=None):
    """The mask z the propagation would use: [E] for logits [E], [K, E] for per-layer logits.

    Row k of [K, E] logits uses counters ``offset + k * E + e`` (``layer_offset``).
    """
    if mode not in MODE_ID:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if logits.shape[-1] != graph.num_edges or logits.dim() not in (1, 2):
        raise ValueError(f"logits must have shape [num_edges] or [K, num_edges] with num_edges = "
                         f"{graph.num_edges}, got {tuple(logits.shape)}")
    return _sample_mask(logits.detach().contiguous(), MODE_ID[mode], library.int64_bits(seed),
                        library.int64_bits(offset), backend)


def _sample_mask_op(logits: torch.Tensor, mode: int, seed: int, offset: int,
                    backend: Optional[str]) -> torch.Tensor:
    be = get_backend(logits.device, backend)
    num_edges = logits.shape[-1]
    rows = logits.reshape(-1, num_edges)
    dtype = logits.dtype if logits.is_floating_point() else torch.float32
    z = torch.stack([
        be.edge_weights(rows[k].contiguous(), None, (mode,), library.uint64(seed),
                        layer_offset(library.uint64(offset), k, num_edges), num_edges, dtype,
                        logits.device)[0]
        for k in range(rows.shape[0])])
    return z.reshape(logits.shape)


_sample_mask = library.define(
    "sample_mask", _sample_mask_op,
    lambda logits, mode, seed, offset, backend: torch.empty_like(
        logits, dtype=logits.dtype if logits.is_floating_point() else torch.float32))


__all__ = ["masked_spmm", "masked_spmm_dual", "sample_mask", "layer_offset", "reference"]
