"""Triton backend of ``ops.segment_topk``: per CSR row, its k best entries (positions, values).

One program per row makes k passes over it. Pass t finds the best entry strictly after the one
pass t - 1 found in the order (value desc, position asc) (``largest=False`` negates the values,
which is exact, so the same max-reductions serve both directions): per chunk of ``BLOCK``
entries a max over the values still eligible, then the lowest position holding that max, merged
into the pass's running best. O(k * row length) loads per row, no sort, no extra memory, exact in
any float dtype (no packing of values into integer keys), and the order is the reference's. Meant
for small k (neighbour lists: 10-30). Every load is masked (the interpreter has no bounds checks).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgcn_denoise.kernels.masked_spmm import _check_device

_BLOCK = 256
_NO_POS = tl.constexpr(2**62)  # past any position: "nothing found"


@triton.jit
def _segment_topk_kernel(
    rowptr_ptr, val_ptr, pos_ptr, out_ptr, k, SIGN: tl.constexpr, BLOCK: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    start = tl.load(rowptr_ptr + row)
    end = tl.load(rowptr_ptr + row + 1)
    offs = tl.arange(0, BLOCK).to(tl.int64)
    # The entry found by the previous pass (none yet: +inf at position -1 precedes everything).
    prev_v = tl.full([], float("inf"), val_ptr.dtype.element_ty)
    prev_p = tl.full([], -1, tl.int64)
    for t in range(0, k):
        best_v = tl.full([], float("-inf"), val_ptr.dtype.element_ty)
        best_p = tl.full([], _NO_POS, tl.int64)
        for j0 in range(start, end, BLOCK):
            pos = j0 + offs
            valid = pos < end
            v = tl.load(val_ptr + pos, mask=valid, other=0.0) * SIGN
            # Still eligible: after the previous pass's entry in the order.
            elig = valid & ((v < prev_v) | ((v == prev_v) & (pos > prev_p)))
            cv = tl.max(tl.where(elig, v, float("-inf")), axis=0)
            cp = tl.min(tl.where(elig & (v == cv), pos, _NO_POS), axis=0)
            take = (cp < _NO_POS) & ((cv > best_v) | ((cv == best_v) & (cp < best_p)))
            best_v = tl.where(take, cv, best_v)
            best_p = tl.where(take, cp, best_p)
        found = best_p < _NO_POS
        tl.store(pos_ptr + row * k + t, tl.where(found, best_p, -1))
        tl.store(out_ptr + row * k + t, tl.where(found, best_v * SIGN, 0.0))
        prev_v = best_v
        prev_p = best_p


def segment_topk(rowptr: torch.Tensor, values: torch.Tensor, k: int, largest: bool):
    """(pos int64 [R, k], val [R, k]) as ``ops.segment_topk``'s reference."""
    _check_device(rowptr, values)
    rows = rowptr.shape[0] - 1
    pos = torch.empty((rows, k), dtype=torch.int64, device=values.device)
    val = torch.empty((rows, k), dtype=values.dtype, device=values.device)
    if rows == 0 or k == 0:
        return pos, val
    _segment_topk_kernel[(rows,)](
        rowptr, values, pos, val, k, SIGN=1.0 if largest else -1.0, BLOCK=_BLOCK
    )
    return pos, val
