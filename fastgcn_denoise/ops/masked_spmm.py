"""Masked, renormalised propagation on the bipartite graph (DESIGN.md, "the core kernel").

    w_e = z_e * omega_e,  d_u = sum_{e in u} w_e (+1),  r = d^-1/2 (0 where d = 0),
    A_ui = r_u w_ui r_i,  y_user = A x_item,  y_item = A^T x_user  (+ r^2 x with self-loops).

The mask z is generated inside the backend from the logits and a Philox stream keyed by
(seed, offset + edge id); the uniforms are never stored. Convention for per-layer logits of
shape [K, E]: layer k uses ``offset + k * E`` (see ``layer_offset``).

Modes: the binary masks ``arm_pos``, ``arm_neg``, ``bernoulli``; ``ones``; ``expect`` (sigmoid)
and ``hard`` (SGCN inference); and the relaxed gates of ``ops.gate`` (``concrete``,
``concrete_st``, ``hard_concrete``, ``hard_concrete_mean``, with ``temperature``, ``gamma``,
``zeta``), drawn from the same stream as ``ops.gate(logits, kind, seed, offset)``.

Gradients flow to ``x_user``, ``x_item``, ``edge_weight`` (all modes) and ``logits`` in the modes
differentiable in phi (``expect`` and the gates): dL/dphi_e = dL/dw_e * omega_e * dz_e/dphi_e, with
dz/dphi regenerated from the same uniforms in backward (``concrete_st``: the relaxed derivative,
straight-through). The binary modes get their logit gradients from the ARM estimator, not from
autograd; ``hard`` (inference) gets none.

Target-edge holdout: ``holdout`` (int64 edge ids, repeats allowed) gives those edges weight 0 in
this propagation (degrees renormalised on the rest), by zeroing their entries of the w buffer the
backend builds; the graph is not copied. A held-out edge's logit and weight get zero gradient.

Dtypes: float32 and float64 run as they are. float16 and bfloat16 embeddings are accepted on
every backend with one rule: masks, weights and degrees in float32, every sum accumulated in
float32, outputs and gradients in the embeddings' dtype (the triton kernels read half inputs
directly; the other backends compute on a float32 copy).
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from ..modes import DIFFERENTIABLE_MODES, GATE_KINDS, MODE_ID, MODES
from . import _library as library
from . import reference
from ._backend import get_backend
from .gates import HARD_CONCRETE_DEFAULTS, _check_params

_DUAL_MODES = (MODE_ID["arm_pos"], MODE_ID["arm_neg"])
_DIFFERENTIABLE = frozenset(MODE_ID[m] for m in DIFFERENTIABLE_MODES)
_HALF = (torch.float16, torch.bfloat16)
_FLOATS = _HALF + (torch.float32, torch.float64)


def layer_offset(offset: int, layer: int, num_edges: int) -> int:
    """Philox counter base of layer ``layer`` when one step draws a [K, E] block of uniforms."""
    return int(offset) + int(layer) * int(num_edges)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype masks, weights and degrees are computed in for embeddings of ``dtype``."""
    return torch.float32 if dtype in _HALF else dtype


def _validate_values() -> bool:
    # Value checks (NaN, negative weights) need a host sync on GPU: always on for CPU tensors,
    # opt-in with FASTGCN_VALIDATE=1 on GPU.
    return os.environ.get("FASTGCN_VALIDATE", "0") == "1"


def _check_finite(name: str, t: torch.Tensor, where: str = "edge") -> None:
    # min/max are NaN or inf exactly when some value is: one cheap reduction on the hot path, the
    # search for the first bad value only on failure.
    if t.numel() and not torch.isfinite(torch.stack(torch.aminmax(t.detach().reshape(-1)))).all():
        first = int((~torch.isfinite(t.detach().reshape(-1))).nonzero()[0])
        raise ValueError(f"{name} has non-finite values (first at {where} {first})")


def check_edge_tensor(graph, name: str, t, where: str = "") -> None:
    """ValueError unless ``t`` is a floating-point [num_edges] tensor on the graph's device
    (``where``: the caller, prefixed to the message)."""
    if not isinstance(t, torch.Tensor) or t.shape != (graph.num_edges,):
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(
            f"{where}{name} must have shape [num_edges] = [{graph.num_edges}], got {shape}"
        )
    if not t.is_floating_point():
        raise ValueError(f"{where}{name} must be floating point, got {t.dtype}")
    if t.device != graph.device:
        raise ValueError(f"{where}{name} is on {t.device} but the graph is on {graph.device}")


def _check_inputs(graph, x_user, x_item, logits, edge_weight, mode, renormalize, holdout):
    """Shapes, dtypes and devices (the values are checked in the op: ``_check_values``)."""
    if mode not in MODE_ID:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    for name, x, n, what in (
        ("x_user", x_user, graph.num_users, "num_users"),
        ("x_item", x_item, graph.num_items, "num_items"),
    ):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(
                f"{name} must be a 2-D tensor [n, d], got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        if x.shape[0] != n:
            raise ValueError(f"{name} has {x.shape[0]} rows but the graph has {what} = {n}")
        if x.dtype not in _FLOATS:
            raise ValueError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
        if x.device != graph.device:
            raise ValueError(
                f"{name} is on {x.device} but the graph is on {graph.device}; use graph.to(device)"
            )
    if x_user.shape[1] != x_item.shape[1]:
        raise ValueError(f"x_user has d = {x_user.shape[1]} but x_item has d = {x_item.shape[1]}")
    if x_user.dtype != x_item.dtype:
        raise ValueError(f"x_user is {x_user.dtype} but x_item is {x_item.dtype}")
    if mode != "ones" and logits is None:
        raise ValueError(f"mode {mode!r} needs logits (one per edge)")
    for name, t in (("logits", logits), ("edge_weight", edge_weight)):
        if t is not None:
            check_edge_tensor(graph, name, t)
    if holdout is not None:
        if (
            not isinstance(holdout, torch.Tensor)
            or holdout.dim() != 1
            or holdout.dtype not in (torch.int64, torch.int32)
        ):
            what = (
                f"a {holdout.dim()}-D {holdout.dtype} tensor"
                if isinstance(holdout, torch.Tensor)
                else type(holdout).__name__
            )
            raise ValueError(f"holdout must be a 1-D int64 tensor of edge ids, got {what}")
        if holdout.device != graph.device:
            raise ValueError(f"holdout is on {holdout.device} but the graph is on {graph.device}")


def _check_values(num_edges, logits, edge_weight, holdout, renormalize):
    """The checks that read the values: in the op, where the data is (``_validate_values``)."""
    first = next((t for t in (logits, edge_weight, holdout) if t is not None), None)
    if first is None or not (first.device.type == "cpu" or _validate_values()):
        return
    for name, t in (("logits", logits), ("edge_weight", edge_weight)):
        if t is not None:
            _check_finite(name, t)
    if renormalize and edge_weight is not None and (edge_weight < 0).any():
        first = int((edge_weight < 0).nonzero()[0])
        raise ValueError(
            f"edge_weight must be >= 0 with renormalize=True (negative at edge {first})"
        )
    if holdout is not None and holdout.numel():
        bad = (holdout < 0) | (holdout >= num_edges)
        if bad.any():
            first = int(bad.nonzero()[0])
            raise ValueError(
                f"holdout[{first}] = {int(holdout[first])} is not an edge id "
                f"(0 <= id < num_edges = {num_edges})"
            )


def _compute_inputs(be, dtype, x_user, x_item):
    # Backends without half kernels compute on float32 copies; outputs and gradients are cast
    # back to the embeddings' dtype in the ops.
    if x_user.dtype != dtype and not getattr(be, "READS_HALF", False):
        return x_user.to(dtype), x_item.to(dtype)
    return x_user, x_item


def _unit_rsqrt(deg: torch.Tensor, self_loop: bool, dtype: torch.dtype) -> torch.Tensor:
    """(deg + self_loop)^-1/2 with 0 for degree 0, the ``degree_rsqrt`` of unit weights."""
    d = deg.to(dtype) + (1 if self_loop else 0)
    return torch.where(d > 0, d.clamp_min(1).rsqrt(), torch.zeros_like(d))


# fastgcn::masked_spmm: M masks drawn from one set of uniforms; returns M [U, d], M [I, d] (x's
# dtype), then what backward needs: w [M, E], r_u [M, U], r_i [M, I] (``compute_dtype``; r empty
# without renormalisation), dw/dphi [M, E] when ``keep_grad`` (the logits need a gradient: drawn
# with w instead of a second Philox and gate pass in backward; else empty). ``gate``:
# (temperature, gamma, zeta); ``holdout``: int64 edge ids with weight 0, or None.
def _masked_spmm_op(
    rowptr_u: torch.Tensor,
    col_item: torch.Tensor,
    rowptr_i: torch.Tensor,
    col_user: torch.Tensor,
    perm: torch.Tensor,
    x_user: torch.Tensor,
    x_item: torch.Tensor,
    logits: Optional[torch.Tensor],
    edge_weight: Optional[torch.Tensor],
    holdout: Optional[torch.Tensor],
    modes: list[int],
    seed: int,
    offset: int,
    gate: list[float],
    self_loop: bool,
    renormalize: bool,
    keep_grad: bool,
    backend: Optional[str],
) -> list[torch.Tensor]:
    num_edges = col_item.shape[0]
    _check_values(num_edges, logits, edge_weight, holdout, renormalize)
    graph = library.graph_from(rowptr_u, col_item, rowptr_i, col_user, perm)
    be = get_backend(x_user.device, backend)
    out_dtype = x_user.dtype
    dtype = compute_dtype(out_dtype)
    x_user, x_item = _compute_inputs(be, dtype, x_user, x_item)
    w = be.edge_weights(
        logits,
        edge_weight,
        tuple(modes),
        library.uint64(seed),
        library.uint64(offset),
        num_edges,
        dtype,
        x_user.device,
        tuple(gate),
        need_grad=keep_grad,
    )
    w, dw = w if keep_grad else (w, None)
    if holdout is not None:
        w.index_fill_(1, holdout, 0)  # the buffer is the backend's own: no graph copy
    if not renormalize:
        r_u = r_i = None
    elif modes == [MODE_ID["ones"]] and edge_weight is None and holdout is None:
        # Unit weights: the degrees are the graph's, r from rowptr in O(U + I) instead of a pass
        # over the E weights (the item side through perm): a sixth of the Gowalla forward.
        r_u, r_i = (
            _unit_rsqrt(graph.deg_u, self_loop, dtype)[None],
            _unit_rsqrt(graph.deg_i, self_loop, dtype)[None],
        )
    else:
        r_u, r_i = be.degree_rsqrt(graph, w, self_loop)
    y_u = be.spmm(rowptr_u, col_item, None, w, r_u, r_i, x_item, x_user if self_loop else None)
    y_i = be.spmm(rowptr_i, col_user, perm, w, r_i, r_u, x_user, x_item if self_loop else None)
    # Returns may not alias each other: mask 0 keeps the kernel's buffer, later masks are copied
    # out of it (the dual pass: one copy of one side's [U + I, d]).
    ys = [
        y[0] if m == 0 else y[m].clone()
        for y in (y_u.to(out_dtype), y_i.to(out_dtype))
        for m in range(y.shape[0])
    ]
    return [
        *ys,
        w,
        library.empty(w) if r_u is None else r_u,
        library.empty(w) if r_i is None else r_i,
        library.empty(w) if dw is None else dw,
    ]


def _masked_spmm_fake(
    rowptr_u,
    col_item,
    rowptr_i,
    col_user,
    perm,
    x_user,
    x_item,
    logits,
    edge_weight,
    holdout,
    modes,
    seed,
    offset,
    gate,
    self_loop,
    renormalize,
    keep_grad,
    backend,
):
    m, d = len(modes), x_user.shape[1]
    nu, ni = rowptr_u.shape[0] - 1, rowptr_i.shape[0] - 1
    w = x_user.new_empty(m, col_item.shape[0], dtype=compute_dtype(x_user.dtype))
    return (
        [x_user.new_empty(nu, d) for _ in range(m)]
        + [x_user.new_empty(ni, d) for _ in range(m)]
        + [
            w,
            w.new_empty(m, nu) if renormalize else library.empty(w),
            w.new_empty(m, ni) if renormalize else library.empty(w),
            torch.empty_like(w) if keep_grad else library.empty(w),
        ]
    )


def _grads_present(modes, grads, needs) -> list[bool]:
    """Which of [dL/dx_user, dL/dx_item, dL/dlogits, dL/dedge_weight] the backward forms.

    Known when tracing (from ``needs``, the modes and which output gradients are None), so the
    implementation, its fake and the autograd formula share it; an absent one is a placeholder.
    """
    num_masks = len(modes)
    used = [grads[m] is not None or grads[num_masks + m] is not None for m in range(num_masks)]
    differentiable = any(u and modes[m] in _DIFFERENTIABLE for m, u in enumerate(used))
    return [
        needs[0] and any(used),
        needs[1] and any(used),
        needs[2] and differentiable,
        needs[3] and any(used),
    ]


def _masked_spmm_backward_op(
    rowptr_u: torch.Tensor,
    col_item: torch.Tensor,
    rowptr_i: torch.Tensor,
    col_user: torch.Tensor,
    perm: torch.Tensor,
    w: torch.Tensor,
    r_u: torch.Tensor,
    r_i: torch.Tensor,
    dw: torch.Tensor,
    x_user: torch.Tensor,
    x_item: torch.Tensor,
    logits: Optional[torch.Tensor],
    edge_weight: Optional[torch.Tensor],
    holdout: Optional[torch.Tensor],
    grads: list[Optional[torch.Tensor]],
    modes: list[int],
    seed: int,
    offset: int,
    gate: list[float],
    self_loop: bool,
    renormalize: bool,
    needs: list[bool],
    backend: Optional[str],
) -> list[torch.Tensor]:
    """[dL/dx_user, dL/dx_item (x's dtype), dL/dlogits, dL/dedge_weight (w's dtype)].

    ``grads``: one per output mask and side (None for an output unused downstream: the ARM half
    evaluated without grad costs nothing here); ``needs``: the four inputs' needs_input_grad;
    ``dw``: dw/dphi [M, E] from the forward, or empty (then regenerated here).
    """
    g = library.graph_from(rowptr_u, col_item, rowptr_i, col_user, perm)
    be = get_backend(x_user.device, backend)
    out_dtype = x_user.dtype
    x_user, x_item = _compute_inputs(be, w.dtype, x_user, x_item)
    if not renormalize:
        r_u = r_i = None
    need_xu, need_xi, need_phi, need_w = _grads_present(modes, grads, needs)
    num_masks = w.shape[0]
    differentiable = [m for m in range(num_masks) if modes[m] in _DIFFERENTIABLE]
    gx_u = gx_i = g_phi = g_w = None
    gws = {}
    # The CPU backend forms both products and the edge gradient in one fused kernel.
    fused = getattr(be, "spmm_backward", None) if x_user.device.type == "cpu" else None
    for m in range(num_masks):
        gy_u, gy_i = grads[m], grads[num_masks + m]
        if gy_u is None and gy_i is None:
            continue
        gy_u = torch.zeros_like(x_user) if gy_u is None else gy_u.to(x_user.dtype).contiguous()
        gy_i = torch.zeros_like(x_item) if gy_i is None else gy_i.to(x_item.dtype).contiguous()
        wm = w[m : m + 1]
        rum = None if r_u is None else r_u[m : m + 1]
        rim = None if r_i is None else r_i[m : m + 1]
        ru1, ri1 = (None if r is None else r[0] for r in (rum, rim))  # row m, 1-D
        need_gw = need_w or (need_phi and m in differentiable)
        if need_gw and fused is not None:
            t_u, t_i, gw = fused(
                g,
                w[m],
                ru1,
                ri1,
                x_user,
                x_item,
                gy_u,
                gy_i,
                self_loop,
                need_xu,
                need_xi,
            )
        else:
            # The propagation is symmetric: d/dx_item = A^T gy_user is the item-side product.
            t_u = t_i = gw = None
            if need_xu:
                t_u = be.spmm(
                    g.rowptr_u, g.col_item, None, wm, rum, rim, gy_i, gy_u if self_loop else None
                )[0]
            if need_xi:
                t_i = be.spmm(
                    g.rowptr_i, g.col_user, g.perm, wm, rim, rum, gy_u, gy_i if self_loop else None
                )[0]
            if need_gw:
                gw = be.edge_grad(
                    g,
                    w[m],
                    ru1,
                    ri1,
                    x_user,
                    x_item,
                    gy_u,
                    gy_i,
                    self_loop,
                )
        if t_u is not None:
            gx_u = t_u if gx_u is None else gx_u + t_u
        if t_i is not None:
            gx_i = t_i if gx_i is None else gx_i + t_i
        if gw is not None:
            if holdout is not None:  # w = 0 there whatever z and omega: no gradient to them
                gw.index_fill_(0, holdout, 0)
            gws[m] = gw
    dw = library.present(dw)
    if need_phi and dw is not None:  # kept by the forward: omega dz/dphi
        g_phi = sum(gws[m] * dw[m] for m in differentiable if m in gws)
        need_phi = False
    if need_w or need_phi:
        # z (mask without omega) and dz/dphi are regenerated from the same uniforms rather than
        # stored (omega may be zero; the uniforms are never stored).
        out = be.edge_weights(
            logits,
            None,
            tuple(modes),
            library.uint64(seed),
            library.uint64(offset),
            g.num_edges,
            w.dtype,
            w.device,
            tuple(gate),
            need_grad=need_phi,
        )
        z, dz = out if need_phi else (out, None)
        if need_w:
            g_w = sum(gw * z[m] for m, gw in gws.items())
        if need_phi:
            g_phi = sum(gws[m] * dz[m] for m in differentiable if m in gws)
            if edge_weight is not None:
                g_phi = g_phi * edge_weight
    return [
        library.empty(w) if t is None else t.to(dt)
        for t, dt in ((gx_u, out_dtype), (gx_i, out_dtype), (g_phi, w.dtype), (g_w, w.dtype))
    ]


def _masked_spmm_backward_fake(
    rowptr_u,
    col_item,
    rowptr_i,
    col_user,
    perm,
    w,
    r_u,
    r_i,
    dw,
    x_user,
    x_item,
    logits,
    edge_weight,
    holdout,
    grads,
    modes,
    seed,
    offset,
    gate,
    self_loop,
    renormalize,
    needs,
    backend,
):
    out = [
        torch.empty_like(x_user),
        torch.empty_like(x_item),
        w.new_empty(w.shape[1]),
        w.new_empty(w.shape[1]),
    ]
    return [t if h else library.empty(w) for t, h in zip(out, _grads_present(modes, grads, needs))]


_forward = library.define("masked_spmm", _masked_spmm_op, _masked_spmm_fake)
_backward = library.define(
    "masked_spmm_backward", _masked_spmm_backward_op, _masked_spmm_backward_fake
)


def _setup(ctx, inputs, output):
    (
        *graph,
        x_user,
        x_item,
        logits,
        edge_weight,
        holdout,
        modes,
        seed,
        offset,
        gate,
        self_loop,
        renormalize,
        keep_grad,
        backend,
    ) = inputs
    ctx.save_for_backward(*graph, *output[-4:], x_user, x_item, logits, edge_weight, holdout)
    ctx.args = (modes, seed, offset, gate, self_loop, renormalize)
    ctx.backend = backend
    # One output per mask and side, so a mask whose outputs are unused downstream (the ARM
    # half evaluated without grad) gets None gradients and costs nothing in backward.
    ctx.set_materialize_grads(False)


def _grad(ctx, grads):
    modes = ctx.args[0]
    grads, needs = list(grads[: 2 * len(modes)]), list(ctx.needs_input_grad[5:9])
    out = _backward(*ctx.saved_tensors, grads, *ctx.args, needs, ctx.backend)
    # An absent gradient is None (not its placeholder: an empty graph's real [0] gradient looks
    # the same).
    have = _grads_present(modes, grads, needs)
    return (None,) * 5 + tuple(t if h else None for t, h in zip(out, have)) + (None,) * 9


library.differentiable(_forward, _grad, _setup)


def _run(
    graph,
    x_user,
    x_item,
    logits,
    modes,
    seed,
    offset,
    edge_weight,
    self_loop,
    renormalize,
    backend,
    gate,
    holdout,
):
    dtype = compute_dtype(x_user.dtype)
    if logits is not None and logits.dtype != dtype:
        logits = logits.to(dtype)
    if edge_weight is not None and edge_weight.dtype != dtype:
        edge_weight = edge_weight.to(dtype)
    if holdout is not None:
        holdout = holdout.to(torch.int64).contiguous() if holdout.numel() else None
    keep_grad = (
        logits is not None
        and logits.requires_grad
        and torch.is_grad_enabled()
        and any(m in _DIFFERENTIABLE for m in modes)
    )
    out = _forward(
        *library.graph_args(graph),
        x_user.contiguous(),
        x_item.contiguous(),
        None if logits is None else logits.contiguous(),
        None if edge_weight is None else edge_weight.contiguous(),
        holdout,
        list(modes),
        library.int64_bits(seed),
        library.int64_bits(offset),
        [float(v) for v in gate],
        bool(self_loop),
        bool(renormalize),
        keep_grad,
        backend,
    )
    return tuple(out[: 2 * len(modes)])


def masked_spmm(
    graph,
    x_user,
    x_item,
    logits=None,
    mode="ones",
    seed=0,
    offset=0,
    edge_weight=None,
    self_loop=False,
    renormalize=True,
    backend=None,
    *,
    temperature=2.0 / 3.0,
    gamma=-0.1,
    zeta=1.1,
    holdout=None,
):
    """One masked, renormalised propagation in both directions (the op ``fastgcn::masked_spmm``).

    Args:
        graph: ``BipartiteGraph`` on the tensors' device.
        x_user [U, d], x_item [I, d]: float32 or float64 embeddings (float16/bfloat16: module
            docstring).
        logits [E]: mask logits phi (edge-id order); required unless ``mode="ones"``.
        mode: one of ``ones, arm_pos, arm_neg, bernoulli, expect, hard, concrete, concrete_st,
            hard_concrete, hard_concrete_mean`` (module docstring).
        seed, offset: Philox key and counter base; edge e uses counter ``offset + e``.
        edge_weight [E]: optional learnable weight omega (>= 0 when renormalising).
        self_loop: add the identity to A before normalising (degree + 1).
        renormalize: False gives y = (A ⊙ w) x with no degree normalisation.
        backend: force a backend (default: FASTGCN_BACKEND or the best for the device).
        temperature, gamma, zeta: the gate modes' temperature (hard concrete's beta) and stretch
            interval (``ops.gate``); ignored by the other modes.
        holdout: optional int64 edge ids (repeats allowed) held out of this propagation: weight
            0, degrees from the remaining edges, zero gradient to their logits and weights.

    Returns:
        (y_user [U, d], y_item [I, d]) in x's dtype.
    """
    _check_inputs(graph, x_user, x_item, logits, edge_weight, mode, renormalize, holdout)
    if mode in GATE_KINDS:
        _check_params(mode, temperature, gamma, zeta)
    return _run(
        graph,
        x_user,
        x_item,
        logits,
        (MODE_ID[mode],),
        seed,
        offset,
        edge_weight,
        self_loop,
        renormalize,
        backend,
        (temperature, gamma, zeta),
        holdout,
    )


def masked_spmm_dual(
    graph,
    x_user,
    x_item,
    logits,
    seed=0,
    offset=0,
    edge_weight=None,
    self_loop=False,
    renormalize=True,
    backend=None,
    *,
    holdout=None,
):
    """The two antithetic ARM propagations (``arm_pos`` and ``arm_neg``, same uniforms) in one pass.

    Returns ((y_user_pos, y_item_pos), (y_user_neg, y_item_neg)), each as ``masked_spmm``'s.
    Gathered embedding rows are shared between the two halves. ``holdout`` as ``masked_spmm``'s,
    in both halves.
    """
    _check_inputs(graph, x_user, x_item, logits, edge_weight, "arm_pos", renormalize, holdout)
    pos_u, neg_u, pos_i, neg_i = _run(
        graph,
        x_user,
        x_item,
        logits,
        _DUAL_MODES,
        seed,
        offset,
        edge_weight,
        self_loop,
        renormalize,
        backend,
        tuple(HARD_CONCRETE_DEFAULTS.values()),
        holdout,
    )
    return (pos_u, pos_i), (neg_u, neg_i)


def sample_mask(
    graph,
    logits,
    mode="bernoulli",
    seed=0,
    offset=0,
    backend=None,
    *,
    temperature=2.0 / 3.0,
    gamma=-0.1,
    zeta=1.1,
):
    """The mask z the propagation would use: [E] for logits [E], [K, E] for per-layer logits.

    Row k of [K, E] logits uses counters ``offset + k * E + e`` (``layer_offset``), i.e. the
    flat index: the gate modes equal ``ops.gate(logits, mode, seed, offset, ...)``. In logits'
    dtype (computed in float32 for float16/bfloat16). The op ``fastgcn::sample_mask``.
    """
    if mode not in MODE_ID:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode in GATE_KINDS:
        _check_params(mode, temperature, gamma, zeta)
    if (
        not isinstance(logits, torch.Tensor)
        or logits.dim() not in (1, 2)
        or logits.shape[-1] != graph.num_edges
    ):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"logits must have shape [num_edges] or [K, num_edges] with num_edges = "
            f"{graph.num_edges}, got {shape}"
        )
    if logits.device != graph.device:
        raise ValueError(f"logits is on {logits.device} but the graph is on {graph.device}")
    return _sample_mask(
        logits.detach().contiguous(),
        MODE_ID[mode],
        library.int64_bits(seed),
        library.int64_bits(offset),
        [float(temperature), float(gamma), float(zeta)],
        backend,
    )


def _sample_mask_dtype(logits: torch.Tensor) -> torch.dtype:
    return logits.dtype if logits.is_floating_point() else torch.float32


def _sample_mask_op(
    logits: torch.Tensor,
    mode: int,
    seed: int,
    offset: int,
    gate: list[float],
    backend: Optional[str],
) -> torch.Tensor:
    if logits.is_floating_point() and (logits.device.type == "cpu" or _validate_values()):
        _check_finite("logits", logits, "flat index")
    be = get_backend(logits.device, backend)
    out_dtype = _sample_mask_dtype(logits)
    dtype = compute_dtype(out_dtype)
    # Counter offset + k E + e is offset + the flat index: one draw over the flattened logits.
    z = be.edge_weights(
        logits.reshape(-1).to(dtype).contiguous(),
        None,
        (mode,),
        library.uint64(seed),
        library.uint64(offset),
        logits.numel(),
        dtype,
        logits.device,
        tuple(gate),
    )[0]
    return z.reshape(logits.shape).to(out_dtype)


_sample_mask = library.define(
    "sample_mask",
    _sample_mask_op,
    lambda logits, mode, seed, offset, gate, backend: torch.empty_like(
        logits, dtype=_sample_mask_dtype(logits)
    ),
)


__all__ = [
    "masked_spmm",
    "masked_spmm_dual",
    "sample_mask",
    "layer_offset",
    "compute_dtype",
    "reference",
]
