"""Triton backend of ``ops.sddmm``: out[j] = <a[row(j)], b[col[j]]> on a CSR pattern.

One program per CSR row: it loops over the row's nonzeros in chunks of ``BLOCK_NZ`` and over the
feature dimension in tiles of ``BLOCK_K``, reusing the row's own vector from cache. Row-parallel,
no atomics. Every load is masked (the interpreter has no bounds checks).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgcn_denoise.kernels.masked_spmm import _acc_dtype, _check_device

_TILE = 1024  # gathered elements per loop step: BLOCK_NZ * BLOCK_K


@triton.jit
def row_dot(
    a_ptr,
    b_ptr,
    row,
    col,
    valid,
    k,
    ACC: tl.constexpr,
    BLOCK_NZ: tl.constexpr,
    BLOCK_K: tl.constexpr,
    ONE_TILE: tl.constexpr = False,
):
    """[BLOCK_NZ]: <a[row], b[col_j]> for a chunk of a row's nonzeros (``valid`` masks the chunk),
    tiled over k (also the per-edge dot of ``cosine_attention``'s kernels). ``ONE_TILE`` (the
    caller knows k <= BLOCK_K) makes the loop over k a compile-time single step: a runtime loop
    nested in the caller's loop over nonzeros is what makes ptxas spill cosine_attention's kernels
    (a few bytes on sm_90 and sm_80, Triton 3.6 and 3.9)."""
    acc = tl.zeros([BLOCK_NZ], ACC)
    for t0 in range(0, BLOCK_K if ONE_TILE else k, BLOCK_K):
        t = t0 + tl.arange(0, BLOCK_K).to(tl.int64)
        tm = t < k
        a = tl.load(a_ptr + row * k + t, mask=tm, other=0.0).to(ACC)
        b = tl.load(
            b_ptr + col[:, None] * k + t[None, :], mask=valid[:, None] & tm[None, :], other=0.0
        ).to(ACC)
        acc += tl.sum(b * a[None, :], axis=1)
    return acc


@triton.jit
def _sddmm_kernel(
    rowptr_ptr,
    col_ptr,
    a_ptr,
    b_ptr,
    out_ptr,
    k,
    ACC: tl.constexpr,
    BLOCK_NZ: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    start = tl.load(rowptr_ptr + row)
    end = tl.load(rowptr_ptr + row + 1)
    for j0 in range(start, end, BLOCK_NZ):
        pos = j0 + tl.arange(0, BLOCK_NZ).to(tl.int64)
        valid = pos < end
        col = tl.load(col_ptr + pos, mask=valid, other=0)
        acc = row_dot(a_ptr, b_ptr, row, col, valid, k, ACC, BLOCK_NZ, BLOCK_K)
        tl.store(out_ptr + pos, acc.to(out_ptr.dtype.element_ty), mask=valid)


def dot_blocks(k: int) -> tuple[int, int]:
    """(BLOCK_NZ, BLOCK_K) for per-edge dot products of width k: k tiles of the next power of two
    (at most 128), nonzeros to fill ``_TILE`` gathered elements."""
    block_k = min(triton.next_power_of_2(max(k, 1)), 128)
    return max(16, min(64, _TILE // block_k)), block_k


def sddmm(
    rowptr: torch.Tensor, col: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """[nnz] in a's dtype; a [R, k] (R = rows of the CSR), b [C, k]."""
    acc = _acc_dtype(a.dtype)
    a, b = a.contiguous(), b.contiguous()
    _check_device(a, b, rowptr, col)
    out = torch.empty(col.shape[0], dtype=a.dtype, device=a.device)
    rows, k = rowptr.shape[0] - 1, a.shape[1]
    if rows == 0 or col.shape[0] == 0:
        return out
    block_nz, block_k = dot_blocks(k)
    _sddmm_kernel[(rows,)](rowptr, col, a, b, out, k, ACC=acc, BLOCK_NZ=block_nz, BLOCK_K=block_k)
    return out
