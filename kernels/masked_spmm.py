"""Triton backend of the masked, renormalised propagation (``ops.masked_spmm``).

The four backend primitives of ``fastgcn_denoise/ops/reference.py`` with the same signatures and
semantics, each a ``@triton.jit`` kernel followed by its launcher:

  edge_weights  w [M, E] = z_m(phi, u) * omega, u = tl.rand(seed, offset + e) (Philox, never stored)
  degree_rsqrt  r = d^-1/2 of the masked degrees: row-parallel segment sums on CSR(R) and CSR(R^T)
  spmm          y [M, R, d]: row-parallel CSR product, one program per (row, d tile)
  edge_grad     dL/dw [E]: per-edge dot products and the degree-renormalisation terms

Every reduction is a loop of one program over one CSR row: no atomics, results are deterministic.
Graph sizes are runtime arguments; only tile sizes, M (1 mode, or 2 for the dual ARM pass), the
modes and dtypes are compile-time, so a new graph or step does not recompile. Accumulation is in
float64 for float64 tensors and float32 otherwise (float16/bfloat16 included). On CPU tensors the
kernels run only under ``TRITON_INTERPRET=1`` (tests on tiny graphs): the interpreter has no
out-of-bounds protection, so every vector access is masked (the per-row scalars are in bounds by
the grid, one program per row).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# The helpers every Triton kernel module shares (kernels/_common.py); other kernel modules import
# some of them from here too.
from fastgcn_denoise.kernels._common import _acc_dtype, _check_device, _i64, _sigmoid
from fastgcn_denoise.kernels.gates import gate_eval
from fastgcn_denoise.modes import GATE_MODE0, MODE_ID, MODES

# The wrappers in ops/ may hand these kernels float16/bfloat16 embeddings with float32 weights.
READS_HALF = True

# Gathered elements per loop step of one program (4 warps): BLOCK_NZ * BLOCK_D. Sized from sm_90
# ptxas register counts (fp32, d = 64): spmm ~60 registers (~95 for the dual pass), edge_grad
# (two gathered tiles) ~65, no spills; twice these tiles need 125-255 registers and spill.
_SPMM_TILE = 1024
_GRAD_TILE = 512
_MAX_BLOCK_D = 128
_BLOCK_NZ_1D = 64  # nonzeros per step in the loops that reduce scalars per edge
_BLOCK_E = 1024  # edges per program in the element-wise edge_weights kernel
# Mode ids as compile-time constants for the kernels (the reference's numbering).
_ONES, _ARM_POS, _ARM_NEG, _BERNOULLI, _EXPECT = (
    tl.constexpr(MODE_ID[m]) for m in ("ones", "arm_pos", "arm_neg", "bernoulli", "expect")
)
_GATE_MODE0 = tl.constexpr(GATE_MODE0)


def _blocks(d: int, tile: int) -> tuple[int, int]:
    """(BLOCK_NZ, BLOCK_D): d tiles of the next power of two (capped), nonzeros to fill ``tile``."""
    block_d = min(triton.next_power_of_2(max(d, 1)), _MAX_BLOCK_D)
    return max(8, min(64, tile // block_d)), block_d


# --------------------------------------------------------------------------- edge_weights
@triton.jit
def _mask_value(MODE: tl.constexpr, phi, u, tau, gamma, zeta):
    """(z, dz/dphi) for one mode id (reference.mask_and_derivative), in phi's dtype.

    The gate modes (GATE_MODE0 + kind) are gate_eval's; dz is 0 outside expect and the gates.
    """
    dz = tl.zeros(u.shape, phi.dtype)
    if MODE >= _GATE_MODE0:
        z, dz = gate_eval(MODE - _GATE_MODE0, phi, u, tau, gamma, zeta)
    elif MODE == _ONES:
        z = tl.full(u.shape, 1.0, phi.dtype)
    elif MODE == _ARM_POS:  # 1[u > sigmoid(-phi)]
        z = (u.to(phi.dtype) > _sigmoid(-phi)).to(phi.dtype)
    elif MODE == _ARM_NEG or MODE == _BERNOULLI:  # 1[u < sigmoid(phi)]
        z = (u.to(phi.dtype) < _sigmoid(phi)).to(phi.dtype)
    elif MODE == _EXPECT:
        z = _sigmoid(phi)
        dz = z * (1.0 - z)
    else:  # hard: sigmoid(phi), clipped to 0 at or below 1/2
        p = _sigmoid(phi)
        z = tl.where(p > 0.5, p, 0.0)
    return z, dz


@triton.jit(do_not_specialize=["seed", "offset"])
def _edge_weights_kernel(
    logits_ptr,
    omega_ptr,
    w_ptr,
    dw_ptr,
    seed,
    offset,
    num_edges,
    tau,
    gamma,
    zeta,
    M: tl.constexpr,
    MODE0: tl.constexpr,
    MODE1: tl.constexpr,
    HAS_LOGITS: tl.constexpr,
    HAS_OMEGA: tl.constexpr,
    NEED_GRAD: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK_E: tl.constexpr,
):
    """w[m, e] = z(MODE_m, phi_e, u_e) * omega_e for M = 1 or 2 modes sharing the uniforms; with
    NEED_GRAD also dw[m, e] = omega_e dz/dphi.

    seed/offset are not specialised: they change every step and must not trigger recompiles.
    """
    e = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E).to(tl.int64)
    valid = e < num_edges
    # int64 counters: the Philox stream of reference.philox_uniform (both counter words).
    u = tl.rand(seed, offset.to(tl.int64) + e)
    if HAS_LOGITS:
        phi = tl.load(logits_ptr + e, mask=valid, other=0.0).to(COMPUTE)
    else:
        phi = tl.zeros([BLOCK_E], COMPUTE)
    if HAS_OMEGA:
        omega = tl.load(omega_ptr + e, mask=valid, other=0.0).to(COMPUTE)
    else:
        omega = tl.full([BLOCK_E], 1.0, COMPUTE)
    out_ty = w_ptr.dtype.element_ty
    z, dz = _mask_value(MODE0, phi, u, tau, gamma, zeta)
    tl.store(w_ptr + e, (z * omega).to(out_ty), mask=valid)
    if NEED_GRAD:
        tl.store(dw_ptr + e, (dz * omega).to(out_ty), mask=valid)
    if M == 2:
        z, dz = _mask_value(MODE1, phi, u, tau, gamma, zeta)
        tl.store(w_ptr + num_edges + e, (z * omega).to(out_ty), mask=valid)
        if NEED_GRAD:
            tl.store(dw_ptr + num_edges + e, (dz * omega).to(out_ty), mask=valid)


def edge_weights(
    logits, edge_weight, modes, seed, offset, num_edges, dtype, device, gate=None, need_grad=False
):
    """w [M, E] (``dtype``) = z_m(phi, u) * omega for each mode id in ``modes`` (1 or 2 of them);
    with ``need_grad`` the pair (w, dw/dphi). ``gate``: (temperature, gamma, zeta) of the gate
    modes."""
    modes = tuple(int(m) for m in modes)
    if len(modes) not in (1, 2):
        raise ValueError(f"triton edge_weights: 1 or 2 modes, got {len(modes)}")
    if not all(0 <= m < len(MODES) for m in modes):
        raise ValueError(f"triton edge_weights: mode ids {modes} outside 0..{len(MODES) - 1}")
    if logits is None and any(m != MODE_ID["ones"] for m in modes):
        raise ValueError("triton edge_weights: modes other than 'ones' need logits")
    # The mask is computed in ``dtype`` (the logits are cast to it, as in the reference), in
    # float32 for half types.
    compute = _acc_dtype(dtype)
    w = torch.empty(len(modes), num_edges, dtype=dtype, device=device)
    dw = torch.empty_like(w) if need_grad else None
    logits = None if logits is None else logits.to(device, dtype).contiguous()
    edge_weight = None if edge_weight is None else edge_weight.to(device, dtype).contiguous()
    _check_device(w)
    if num_edges:
        tau, gamma, zeta = gate or (1.0, 0.0, 0.0)  # ignored without a gate mode
        _edge_weights_kernel[(triton.cdiv(num_edges, _BLOCK_E),)](
            w if logits is None else logits,
            w if edge_weight is None else edge_weight,
            w,
            w if dw is None else dw,
            _i64(seed),
            _i64(offset),
            num_edges,
            float(tau),
            float(gamma),
            float(zeta),
            M=len(modes),
            MODE0=modes[0],
            MODE1=modes[-1],
            HAS_LOGITS=logits is not None,
            HAS_OMEGA=edge_weight is not None,
            NEED_GRAD=bool(need_grad),
            COMPUTE=compute,
            BLOCK_E=_BLOCK_E,
        )
    return (w, dw) if need_grad else w


# --------------------------------------------------------------------------- degree_rsqrt
@triton.jit
def _degree_rsqrt_kernel(
    rowptr_ptr,
    eid_ptr,
    w_ptr,
    r_ptr,
    num_rows,
    num_edges,
    M: tl.constexpr,
    HAS_EID: tl.constexpr,
    SELF_LOOP: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_NZ: tl.constexpr,
):
    """r[m, row] = (sum of w[m, e] over the row's edges (+1))^-1/2, 0 where the degree is 0."""
    row = tl.program_id(0).to(tl.int64)
    start = tl.load(rowptr_ptr + row)
    end = tl.load(rowptr_ptr + row + 1)
    m = tl.arange(0, M).to(tl.int64)
    # A [M, BLOCK_NZ] tile accumulated in the loop and reduced once after it: a reduction inside
    # the loop does not compile under Triton 3.6 for M = 2 with edge ids (an assertion in its
    # OptimizeThreadLocality pass).
    acc = tl.zeros([M, BLOCK_NZ], ACC)
    for k in range(start, end, BLOCK_NZ):
        pos = k + tl.arange(0, BLOCK_NZ).to(tl.int64)
        valid = pos < end
        if HAS_EID:
            e = tl.load(eid_ptr + pos, mask=valid, other=0)
        else:
            e = pos
        wt = tl.load(w_ptr + m[:, None] * num_edges + e[None, :], mask=valid[None, :], other=0.0)
        acc += wt.to(ACC)
    deg = tl.sum(acc, axis=1)
    if SELF_LOOP:
        deg += 1.0
    # As the reference: clamp to the smallest normal before rsqrt (subnormal degrees stay finite).
    # Correctly rounded square roots (tl.sqrt is approximate for float32 on GPU).
    if ACC == tl.float64:
        root = tl.sqrt(tl.maximum(deg, 2.2250738585072014e-308))
    else:
        root = tl.sqrt_rn(tl.maximum(deg, 1.1754943508222875e-38))
    r = tl.where(deg > 0, 1.0 / root, 0.0)
    tl.store(r_ptr + m * num_rows + row, r.to(r_ptr.dtype.element_ty), mask=m < M)


def _degree_side(rowptr, eid, w, self_loop):
    num_rows, m = rowptr.shape[0] - 1, w.shape[0]
    r = torch.empty(m, num_rows, dtype=w.dtype, device=w.device)
    if num_rows > 0:
        _degree_rsqrt_kernel[(num_rows,)](
            rowptr,
            w if eid is None else eid,
            w,
            r,
            num_rows,
            w.shape[1],
            M=m,
            HAS_EID=eid is not None,
            SELF_LOOP=bool(self_loop),
            ACC=_acc_dtype(w.dtype),
            BLOCK_NZ=_BLOCK_NZ_1D,
            num_warps=2,
        )
    return r


def degree_rsqrt(graph, w, self_loop):
    """(r_u [M, U], r_i [M, I]) in w's dtype: d^-1/2 of the weighted degrees (+1 with self-loops).

    Users sum their contiguous edge ids in CSR(R); items gather theirs through ``perm``.
    """
    w = w.contiguous()
    _check_device(w)
    return (
        _degree_side(graph.rowptr_u, None, w, self_loop),
        _degree_side(graph.rowptr_i, graph.perm, w, self_loop),
    )


# --------------------------------------------------------------------------- spmm
@triton.jit
def _spmm_kernel(
    rowptr_ptr,
    col_ptr,
    eid_ptr,
    w_ptr,
    r_row_ptr,
    r_col_ptr,
    x_ptr,
    x_self_ptr,
    y_ptr,
    num_rows,
    num_cols,
    num_edges,
    d,
    M: tl.constexpr,
    HAS_EID: tl.constexpr,
    NORM: tl.constexpr,
    HAS_SELF: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_NZ: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """y[m, row, tile] = r_row[m, row] sum_j w[m, eid_j] r_col[m, col_j] x[col_j, tile] (+ self).

    One program per (row, d tile). Each gathered x tile is loaded once and feeds all M outputs
    (the dual ARM pass), as a [M, BLOCK_NZ, BLOCK_D] broadcast product reduced over the nonzeros.
    """
    row = tl.program_id(0).to(tl.int64)
    cols_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    valid_d = cols_d < d
    start = tl.load(rowptr_ptr + row)
    end = tl.load(rowptr_ptr + row + 1)
    m = tl.arange(0, M).to(tl.int64)
    acc = tl.zeros([M, BLOCK_D], ACC)
    for k in range(start, end, BLOCK_NZ):
        pos = k + tl.arange(0, BLOCK_NZ).to(tl.int64)
        valid = pos < end
        col = tl.load(col_ptr + pos, mask=valid, other=0)
        if HAS_EID:
            e = tl.load(eid_ptr + pos, mask=valid, other=0)
        else:
            e = pos
        coef = tl.load(
            w_ptr + m[:, None] * num_edges + e[None, :], mask=valid[None, :], other=0.0
        ).to(ACC)
        if NORM:
            rc = tl.load(
                r_col_ptr + m[:, None] * num_cols + col[None, :], mask=valid[None, :], other=0.0
            )
            coef = coef * rc.to(ACC)
        xt = tl.load(
            x_ptr + col[:, None] * d + cols_d[None, :],
            mask=valid[:, None] & valid_d[None, :],
            other=0.0,
        ).to(ACC)
        acc += tl.sum(coef[:, :, None] * xt[None, :, :], axis=1)
    if NORM:  # r_row is constant along the row: applied once, after the sum
        rr = tl.load(r_row_ptr + m * num_rows + row, mask=m < M, other=0.0).to(ACC)
        acc = acc * rr[:, None]
    if HAS_SELF:
        xs = tl.load(x_self_ptr + row * d + cols_d, mask=valid_d, other=0.0).to(ACC)
        if NORM:
            acc += (rr * rr)[:, None] * xs[None, :]
        else:
            acc += xs[None, :]
    tl.store(
        y_ptr + (m[:, None] * num_rows + row) * d + cols_d[None, :],
        acc.to(y_ptr.dtype.element_ty),
        mask=valid_d[None, :],
    )


def spmm(rowptr, col, eid, w, r_row, r_col, x, x_self):
    """y [M, R, d] (x's dtype), y[m, r] = sum_j w[m, eid_j] r_row[m, r] r_col[m, col_j] x[col_j].

    ``eid`` None: CSR positions are edge ids. ``r_row``/``r_col`` None: no renormalisation.
    ``x_self`` [R, d] adds ``r_row^2 * x_self`` (``x_self`` without renormalisation).
    """
    w, x = w.contiguous(), x.contiguous()
    x_self = None if x_self is None else x_self.contiguous()
    norm = r_row is not None
    if norm:
        r_row, r_col = r_row.contiguous(), r_col.contiguous()
    _check_device(w, x)
    num_rows, (num_cols, d), m = rowptr.shape[0] - 1, x.shape, w.shape[0]
    y = torch.empty(m, num_rows, d, dtype=x.dtype, device=x.device)
    if num_rows == 0 or d == 0:
        return y
    block_nz, block_d = _blocks(d, _SPMM_TILE)
    grid = (num_rows, triton.cdiv(d, block_d))
    _spmm_kernel[grid](
        rowptr,
        col,
        col if eid is None else eid,
        w,
        r_row if norm else w,
        r_col if norm else w,
        x,
        x if x_self is None else x_self,
        y,
        num_rows,
        num_cols,
        w.shape[1],
        d,
        M=m,
        HAS_EID=eid is not None,
        NORM=norm,
        HAS_SELF=x_self is not None,
        ACC=_acc_dtype(x.dtype),
        BLOCK_NZ=block_nz,
        BLOCK_D=block_d,
        num_warps=4,
    )
    return y


# --------------------------------------------------------------------------- edge_grad
@triton.jit
def _row_dot(a_ptr, b_ptr, row, d, ACC: tl.constexpr, BLOCK_D: tl.constexpr):
    """<a[row], b[row]> over the d columns."""
    acc = tl.zeros([BLOCK_D], ACC)
    for d0 in range(0, d, BLOCK_D):
        cols_d = d0 + tl.arange(0, BLOCK_D)
        valid_d = cols_d < d
        a = tl.load(a_ptr + row * d + cols_d, mask=valid_d, other=0.0).to(ACC)
        b = tl.load(b_ptr + row * d + cols_d, mask=valid_d, other=0.0).to(ACC)
        acc += a * b
    return tl.sum(acc, axis=0)


@triton.jit
def _edge_grad_segment_kernel(
    rowptr_ptr,
    col_ptr,
    eid_ptr,
    w_ptr,
    r_row_ptr,
    r_col_ptr,
    x_row_ptr,
    gy_row_ptr,
    x_col_ptr,
    gy_col_ptr,
    g_ptr,
    half_ptr,
    d,
    HAS_EID: tl.constexpr,
    COMPUTE_G: tl.constexpr,
    NORM: tl.constexpr,
    SELF_LOOP: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_NZ: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One row of CSR(R) (users) or CSR(R^T) (items) in the edge gradient.

    COMPUTE_G: G_e = <gy_row[row], x_col[col_e]> + <gy_col[col_e], x_row[row]>, stored at g[e];
    otherwise G_e is read back from g. NORM: the row's segment sum
    s = r_row sum_e G_e w_e r_col[col_e] (+ 2 r_row^2 <gy_row, x_row> with self-loops),
    stored as half[row] = 1/2 r_row^2 s.
    """
    row = tl.program_id(0).to(tl.int64)
    start = tl.load(rowptr_ptr + row)
    end = tl.load(rowptr_ptr + row + 1)
    s = tl.zeros([BLOCK_NZ], ACC)
    for k in range(start, end, BLOCK_NZ):
        pos = k + tl.arange(0, BLOCK_NZ).to(tl.int64)
        valid = pos < end
        col = tl.load(col_ptr + pos, mask=valid, other=0)
        if HAS_EID:
            e = tl.load(eid_ptr + pos, mask=valid, other=0)
        else:
            e = pos
        if COMPUTE_G:
            g = tl.zeros([BLOCK_NZ], ACC)
            for d0 in range(0, d, BLOCK_D):
                cols_d = d0 + tl.arange(0, BLOCK_D)
                valid_d = cols_d < d
                tile = valid[:, None] & valid_d[None, :]
                gr = tl.load(gy_row_ptr + row * d + cols_d, mask=valid_d, other=0.0).to(ACC)
                xr = tl.load(x_row_ptr + row * d + cols_d, mask=valid_d, other=0.0).to(ACC)
                gather = col[:, None] * d + cols_d[None, :]
                xc = tl.load(x_col_ptr + gather, mask=tile, other=0.0).to(ACC)
                gc = tl.load(gy_col_ptr + gather, mask=tile, other=0.0).to(ACC)
                g += tl.sum(gr[None, :] * xc + gc * xr[None, :], axis=1)
            tl.store(g_ptr + e, g.to(g_ptr.dtype.element_ty), mask=valid)
        else:
            g = tl.load(g_ptr + e, mask=valid, other=0.0).to(ACC)
        if NORM:
            we = tl.load(w_ptr + e, mask=valid, other=0.0).to(ACC)
            rc = tl.load(r_col_ptr + col, mask=valid, other=0.0).to(ACC)
            s += g * we * rc
    if NORM:
        r = tl.load(r_row_ptr + row).to(ACC)
        total = tl.sum(s, axis=0) * r
        if SELF_LOOP:
            total += 2 * r * r * _row_dot(gy_row_ptr, x_row_ptr, row, d, ACC, BLOCK_D)
        tl.store(half_ptr + row, (0.5 * r * r * total).to(half_ptr.dtype.element_ty))


@triton.jit
def _edge_grad_finish_kernel(
    rowptr_ptr,
    col_ptr,
    r_row_ptr,
    r_col_ptr,
    g_ptr,
    half_row_ptr,
    half_col_ptr,
    out_ptr,
    ACC: tl.constexpr,
    BLOCK_NZ: tl.constexpr,
):
    """out[e] = r_u r_i G_e - half_u[u] - half_i[i] for the edges of one user row of CSR(R)."""
    row = tl.program_id(0).to(tl.int64)
    start = tl.load(rowptr_ptr + row)
    end = tl.load(rowptr_ptr + row + 1)
    r = tl.load(r_row_ptr + row).to(ACC)
    hr = tl.load(half_row_ptr + row).to(ACC)
    for k in range(start, end, BLOCK_NZ):
        pos = k + tl.arange(0, BLOCK_NZ).to(tl.int64)
        valid = pos < end
        col = tl.load(col_ptr + pos, mask=valid, other=0)
        g = tl.load(g_ptr + pos, mask=valid, other=0.0).to(ACC)
        rc = tl.load(r_col_ptr + col, mask=valid, other=0.0).to(ACC)
        hc = tl.load(half_col_ptr + col, mask=valid, other=0.0).to(ACC)
        tl.store(out_ptr + pos, (r * rc * g - hr - hc).to(out_ptr.dtype.element_ty), mask=valid)


def edge_grad(graph, w, r_u, r_i, x_u, x_i, gy_u, gy_i, self_loop):
    """dL/dw [E] (w's dtype) for one propagation; w [E], r_u [U], r_i [I] (None: no renormalising).

    G_e = <gy_u[u], x_i[i]> + <gy_i[i], x_u[u]>; with renormalisation
    dL/dw_e = r_u r_i G_e - 1/2 r_u^2 s_u - 1/2 r_i^2 t_i (see reference.edge_grad).
    Three row-parallel passes: users (G and s_u), items (t_i), users (the per-edge formula).
    """
    w, x_u, x_i, gy_u, gy_i = (t.contiguous() for t in (w, x_u, x_i, gy_u, gy_i))
    _check_device(w, x_u)
    norm = r_u is not None
    acc = _acc_dtype(w.dtype)
    num_edges, d = w.shape[0], x_u.shape[1]
    out = torch.empty(num_edges, dtype=w.dtype, device=w.device)
    block_nz, block_d = _blocks(d, _GRAD_TILE)
    consts = dict(ACC=acc, BLOCK_NZ=block_nz, BLOCK_D=block_d, num_warps=4)
    if not norm:  # dL/dw = G: the first pass writes it straight into the result
        _edge_grad_segment_kernel[(graph.num_users,)](
            graph.rowptr_u,
            graph.col_item,
            w,
            w,
            w,
            w,
            x_u,
            gy_u,
            x_i,
            gy_i,
            out,
            w,
            d,
            HAS_EID=False,
            COMPUTE_G=True,
            NORM=False,
            SELF_LOOP=False,
            **consts,
        )
        return out
    r_u, r_i = r_u.contiguous(), r_i.contiguous()
    # G is kept in the accumulation dtype between the passes.
    g = torch.empty(
        num_edges, dtype=torch.float64 if acc == tl.float64 else torch.float32, device=w.device
    )
    half_u = torch.empty(graph.num_users, dtype=g.dtype, device=w.device)
    half_i = torch.empty(graph.num_items, dtype=g.dtype, device=w.device)
    _edge_grad_segment_kernel[(graph.num_users,)](
        graph.rowptr_u,
        graph.col_item,
        w,
        w,
        r_u,
        r_i,
        x_u,
        gy_u,
        x_i,
        gy_i,
        g,
        half_u,
        d,
        HAS_EID=False,
        COMPUTE_G=True,
        NORM=True,
        SELF_LOOP=bool(self_loop),
        **consts,
    )
    _edge_grad_segment_kernel[(graph.num_items,)](
        graph.rowptr_i,
        graph.col_user,
        graph.perm,
        w,
        r_i,
        r_u,
        x_i,
        gy_i,
        x_u,
        gy_u,
        g,
        half_i,
        d,
        HAS_EID=True,
        COMPUTE_G=False,
        NORM=True,
        SELF_LOOP=bool(self_loop),
        **consts,
    )
    _edge_grad_finish_kernel[(graph.num_users,)](
        graph.rowptr_u,
        graph.col_item,
        r_u,
        r_i,
        g,
        half_u,
        half_i,
        out,
        ACC=acc,
        BLOCK_NZ=_BLOCK_NZ_1D,
        num_warps=2,
    )
    return out
