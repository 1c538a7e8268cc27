"""Triton backend of ``ops.cosine_attention``: the two fused row passes.

  attention_forward   per destination row: the cosine SDDMM (or the other direction's cosines,
                      read through ``eid``), the row softmax and the weighted aggregation of the
                      values; writes y [R, dv], alpha [E] and the cosines [E] (edge-id order)
  attention_backward  per row: d_e = <gy[r], v[col_e]> + g_alpha_e and the softmax backward
                      gs_e = alpha_e (d_e - sum_row alpha d)

One program per (row, value tile) in the forward, per row in the backward; the row's nonzeros are
walked in chunks of BLOCK_NZ. Scalars per edge are stored in a first sweep and re-read in a second
after a barrier (the row's maximum and sum must be known before the weights). A forward program of
a later value tile recomputes the cosines of its row (bit-identical values, so the duplicate
stores are benign). Every load is masked (the interpreter has no bounds checks).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgcn_denoise.kernels.masked_spmm import _acc_dtype, _blocks, _check_device
from fastgcn_denoise.kernels.sddmm import dot_blocks
from fastgcn_denoise.kernels.sddmm import row_dot as _row_dot

_TILE = 1024  # gathered elements per loop step of one program: BLOCK_NZ * max(BLOCK_K, BLOCK_D)


@triton.jit
def _chunk(j0, end, eid_ptr, HAS_EID: tl.constexpr, BLOCK_NZ: tl.constexpr):
    """(positions, in-row mask, edge ids) of the chunk of CSR positions starting at j0."""
    pos = j0 + tl.arange(0, BLOCK_NZ).to(tl.int64)
    valid = pos < end
    if HAS_EID:
        e = tl.load(eid_ptr + pos, mask=valid, other=0)
    else:
        e = pos
    return pos, valid, e


@triton.jit
def _forward_kernel(
    rowptr_ptr,
    col_ptr,
    eid_ptr,
    cos_ptr,
    k_row_ptr,
    k_col_ptr,
    v_ptr,
    y_ptr,
    alpha_ptr,
    inv_tau_ptr,
    dk,
    dv,
    HAS_EID: tl.constexpr,
    HAS_COS: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_NZ: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ONE_TILE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    dt = tl.program_id(1).to(tl.int64)
    start = tl.load(rowptr_ptr + row)
    end = tl.load(rowptr_ptr + row + 1)
    inv_tau = tl.load(inv_tau_ptr).to(ACC)  # a tensor: a float argument would be rounded to fp32
    # Sweep 1: the logits (stored as cosines, edge order) and the row maximum.
    m = tl.full([BLOCK_NZ], float("-inf"), ACC)
    for j0 in range(start, end, BLOCK_NZ):
        pos, valid, e = _chunk(j0, end, eid_ptr, HAS_EID, BLOCK_NZ)
        if HAS_COS:
            c = tl.load(cos_ptr + e, mask=valid, other=0.0).to(ACC)
        else:
            col = tl.load(col_ptr + pos, mask=valid, other=0)
            c = _row_dot(
                k_row_ptr, k_col_ptr, row, col, valid, dk, ACC, BLOCK_NZ, BLOCK_K, ONE_TILE
            )
            tl.store(cos_ptr + e, c.to(cos_ptr.dtype.element_ty), mask=valid)
        m = tl.maximum(m, tl.where(valid, c * inv_tau, float("-inf")))
    row_max = tl.max(m, axis=0)
    tl.debug_barrier()
    # Sweep 2: the softmax denominator.
    total = tl.zeros([BLOCK_NZ], ACC)
    for j0 in range(start, end, BLOCK_NZ):
        pos, valid, e = _chunk(j0, end, eid_ptr, HAS_EID, BLOCK_NZ)
        c = tl.load(cos_ptr + e, mask=valid, other=0.0).to(ACC)
        total += tl.exp(tl.where(valid, c * inv_tau - row_max, float("-inf")))
    # A non-empty row's sum is >= 1 (its maximum contributes exp(0)); an empty row's 0 stays finite.
    inv_total = 1.0 / tl.maximum(tl.sum(total, axis=0), 1.0)
    # Sweep 3: the weights and the aggregation of this program's value tile.
    d = dt * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)
    dm = d < dv
    acc = tl.zeros([BLOCK_D], ACC)
    for j0 in range(start, end, BLOCK_NZ):
        pos, valid, e = _chunk(j0, end, eid_ptr, HAS_EID, BLOCK_NZ)
        col = tl.load(col_ptr + pos, mask=valid, other=0)
        c = tl.load(cos_ptr + e, mask=valid, other=0.0).to(ACC)
        a = tl.exp(tl.where(valid, c * inv_tau - row_max, float("-inf"))) * inv_total
        if dt == 0:
            tl.store(alpha_ptr + e, a.to(alpha_ptr.dtype.element_ty), mask=valid)
        v = tl.load(
            v_ptr + col[:, None] * dv + d[None, :], mask=valid[:, None] & dm[None, :], other=0.0
        ).to(ACC)
        acc += tl.sum(v * a[:, None], axis=0)
    tl.store(y_ptr + row * dv + d, acc.to(y_ptr.dtype.element_ty), mask=dm)


@triton.jit
def _backward_kernel(
    rowptr_ptr,
    col_ptr,
    eid_ptr,
    alpha_ptr,
    g_alpha_ptr,
    gy_ptr,
    v_ptr,
    gs_ptr,
    dv,
    HAS_EID: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_NZ: tl.constexpr,
    BLOCK_K: tl.constexpr,
    ONE_TILE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    start = tl.load(rowptr_ptr + row)
    end = tl.load(rowptr_ptr + row + 1)
    total = tl.zeros([BLOCK_NZ], ACC)
    for j0 in range(start, end, BLOCK_NZ):
        pos, valid, e = _chunk(j0, end, eid_ptr, HAS_EID, BLOCK_NZ)
        col = tl.load(col_ptr + pos, mask=valid, other=0)
        d = _row_dot(gy_ptr, v_ptr, row, col, valid, dv, ACC, BLOCK_NZ, BLOCK_K, ONE_TILE)
        d += tl.load(g_alpha_ptr + e, mask=valid, other=0.0).to(ACC)
        a = tl.load(alpha_ptr + e, mask=valid, other=0.0).to(ACC)
        tl.store(gs_ptr + e, d.to(gs_ptr.dtype.element_ty), mask=valid)
        total += a * d  # 0 off the row (both loads masked to 0); a tl.where here spilled on sm_80
    row_total = tl.sum(total, axis=0)
    tl.debug_barrier()
    for j0 in range(start, end, BLOCK_NZ):
        pos, valid, e = _chunk(j0, end, eid_ptr, HAS_EID, BLOCK_NZ)
        d = tl.load(gs_ptr + e, mask=valid, other=0.0).to(ACC)
        a = tl.load(alpha_ptr + e, mask=valid, other=0.0).to(ACC)
        tl.store(gs_ptr + e, (a * (d - row_total)).to(gs_ptr.dtype.element_ty), mask=valid)


def attention_forward(rowptr, col, eid, cos, k_row, k_col, v_col, inv_tau):
    """(y [R, dv], alpha [E], cos [E]): see ``ops.cosine_attention._reference_forward``."""
    acc = _acc_dtype(v_col.dtype)
    _check_device(rowptr, col, eid, cos, k_row, k_col, v_col)
    rows, nnz, dk, dv = rowptr.shape[0] - 1, col.shape[0], k_row.shape[1], v_col.shape[1]
    y = torch.empty(rows, dv, dtype=v_col.dtype, device=v_col.device)
    alpha = torch.empty(nnz, dtype=v_col.dtype, device=v_col.device)
    cos_e = torch.empty(nnz, dtype=v_col.dtype, device=v_col.device) if cos is None else cos
    if rows == 0:
        return y, alpha, cos_e
    # The edge chunk gathers both a [BLOCK_NZ, BLOCK_K] key tile (sweep 1) and a
    # [BLOCK_NZ, BLOCK_D] value tile (sweep 3): sized by the wider of the two.
    block_nz, block_d = _blocks(dv, _TILE)
    block_nz_k, block_k = dot_blocks(dk)
    block_nz = min(block_nz, block_nz_k)
    grid = (rows, triton.cdiv(dv, block_d))
    inv_tau_t = torch.full((1,), float(inv_tau), dtype=v_col.dtype, device=v_col.device)
    _forward_kernel[grid](
        rowptr,
        col,
        col if eid is None else eid,
        cos_e,
        k_row,
        k_col,
        v_col,
        y,
        alpha,
        inv_tau_t,
        dk,
        dv,
        HAS_EID=eid is not None,
        HAS_COS=cos is not None,
        ACC=acc,
        BLOCK_NZ=block_nz,
        BLOCK_K=block_k,
        BLOCK_D=block_d,
        ONE_TILE=dk <= block_k,
    )
    return y, alpha, cos_e


def attention_backward(rowptr, col, eid, alpha, g_alpha, gy, v_col):
    """gs [E]: see ``ops.cosine_attention._reference_backward``."""
    acc = _acc_dtype(gy.dtype)
    _check_device(rowptr, col, eid, alpha, g_alpha, gy, v_col)
    rows, nnz, dv = rowptr.shape[0] - 1, col.shape[0], v_col.shape[1]
    gs = torch.empty(nnz, dtype=gy.dtype, device=gy.device)
    if rows == 0 or nnz == 0:
        return gs
    block_nz, block_k = dot_blocks(dv)
    _backward_kernel[(rows,)](
        rowptr,
        col,
        col if eid is None else eid,
        alpha,
        g_alpha,
        gy,
        v_col,
        gs,
        dv,
        HAS_EID=eid is not None,
        ACC=acc,
        BLOCK_NZ=block_nz,
        BLOCK_K=block_k,
        ONE_TILE=dv <= block_k,
    )
    return gs
