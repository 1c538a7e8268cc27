"""Segmented top-k / bottom-k: per CSR row, the k largest (or smallest) stored values.

    pos, val = segment_topk(rowptr, values, k, largest=True)

For row r (positions ``rowptr[r] <= j < rowptr[r + 1]`` of ``values``), ``pos[r, :]`` holds the
positions of its min(k, length) best entries, best first, and ``val[r, :]`` their values; a row
shorter than k is padded with position -1 and value 0 (an empty row is all padding). Order:
larger value first (smaller with ``largest=False``), ties to the lower position, so the result is
one exact, total order, the same on every backend. Positions are global (index ``col[pos]`` for
column ids); with columns ascending within a row, ties go to the lower column.

It is a selection, not differentiable (gather ``values[pos]`` for a differentiable copy). NaN
values are refused (they have no place in an order); +-inf are ordinary values.

Backends (one primitive each, ``f(rowptr, values, k, largest) -> (pos, val)``):
  reference  two stable sorts of all entries (by value, then by row): the sort-based truth;
  cpu        ``_C.segment_topk``: row-parallel (OpenMP), nth_element + sort of the k best;
  triton     ``kernels/segment_topk.py``: one program per row, k max-reduction passes over it.
Used by DGR's LEC neighbour lists (``ops.cooccurrence.lec_neighbors``).
"""

from __future__ import annotations

import torch

from ._backend import BackendUnavailable, resolve_name

_DTYPES = (torch.float32, torch.float64)


def _reference(rowptr, values, k, largest):
    num_rows = rowptr.shape[0] - 1
    device = values.device
    pos = torch.full((num_rows, k), -1, dtype=torch.int64, device=device)
    val = torch.zeros((num_rows, k), dtype=values.dtype, device=device)
    if values.numel() == 0 or k == 0:
        return pos, val
    rows = torch.repeat_interleave(
        torch.arange(num_rows, device=device), rowptr.diff(), output_size=values.shape[0]
    )
    # Stable sorts: by value (ties keep the position order), then by row (keeps the value order).
    by_value = torch.sort(values, descending=largest, stable=True).indices
    order = by_value[torch.sort(rows[by_value], stable=True).indices]
    rank = torch.arange(values.shape[0], device=device) - rowptr[rows[order]]
    keep = rank < k
    sel, r = order[keep], rows[order][keep]
    pos[r, rank[keep]] = sel
    val[r, rank[keep]] = values[sel]
    return pos, val


def _cpu(rowptr, values, k, largest):
    from .. import _C

    if not hasattr(_C, "segment_topk"):
        raise BackendUnavailable(
            "fastgcn_denoise._C has no segment_topk (built before it was "
            "added); rebuild the extension (pip install -e .)"
        )
    pos, val = _C.segment_topk(rowptr, values, k, largest)
    return pos, val


def _triton(rowptr, values, k, largest):
    from fastgcn_denoise.kernels.segment_topk import segment_topk as kernel

    return kernel(rowptr, values, k, largest)


_IMPLS = {"reference": _reference, "cpu": _cpu, "triton": _triton}


def segment_topk_kernel(device: torch.device, backend: str | None = None):
    """The raw primitive ``f(rowptr, values, k, largest) -> (pos, val)`` of the chosen backend."""
    name = resolve_name(device, backend)
    if name not in _IMPLS:
        raise BackendUnavailable(
            f"segment_topk has no {name!r} kernel; the triton backend covers GPUs"
        )
    return _IMPLS[name]


def segment_topk(
    rowptr: torch.Tensor,
    values: torch.Tensor,
    k: int,
    largest: bool = True,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pos int64 [R, k], val [R, k]): each CSR row's k largest (``largest=False``: smallest)
    values, best first, ties to the lower position; pads are position -1, value 0.

    Args:
        rowptr: int64 [R + 1], non-decreasing from 0 to nnz.
        values: float32/float64 [nnz], no NaN.
        k: entries kept per row (>= 0).
        backend: force a backend (default: FASTGCN_BACKEND or the best for the device).
    """
    if (
        not isinstance(rowptr, torch.Tensor)
        or rowptr.dtype != torch.int64
        or rowptr.dim() != 1
        or rowptr.numel() == 0
    ):
        raise ValueError("rowptr must be a 1-D int64 tensor [R + 1]")
    if not isinstance(values, torch.Tensor) or values.dim() != 1 or values.dtype not in _DTYPES:
        raise ValueError(
            "values must be a 1-D float32 or float64 tensor [nnz], got "
            + (
                f"{values.dtype} {tuple(values.shape)}"
                if isinstance(values, torch.Tensor)
                else type(values).__name__
            )
        )
    if values.device != rowptr.device:
        raise ValueError(f"values is on {values.device} but rowptr is on {rowptr.device}")
    k = int(k)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if rowptr.device.type == "cpu":  # value checks need a host sync: CPU tensors only
        if int(rowptr[0]) != 0 or int(rowptr[-1]) != values.shape[0] or (rowptr.diff() < 0).any():
            raise ValueError(
                f"invalid rowptr: it must start at 0, be non-decreasing and end at "
                f"nnz = {values.shape[0]}"
            )
        if values.numel() and torch.isnan(values).any():
            raise ValueError(
                f"values has NaN (first at position {int(torch.isnan(values).nonzero()[0])})"
            )
    return segment_topk_kernel(values.device, backend)(
        rowptr.contiguous(), values.contiguous(), k, bool(largest)
    )


__all__ = ["segment_topk", "segment_topk_kernel"]
