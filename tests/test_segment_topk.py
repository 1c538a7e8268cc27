"""ops.segment_topk on every backend present, against a sort per row in plain Python."""

import math

import numpy as np
import pytest
import torch
from conftest import DEVICE

from fastgcn_denoise import ops

# Segment_topk has reference, cpu and triton kernels; on GPUs the triton one
# runs (no CUDA C++ kernel).
_AVAIL = ops.availability(DEVICE)
BACKEND = [
    pytest.param(
        name, marks=pytest.mark.skipif(_AVAIL[name] is not None, reason=f"{name}: {_AVAIL[name]}")
    )
    for name in ("reference", "cpu", "triton")
]


def random_csr(lengths, seed, levels=4, dtype=torch.float64):
    """rowptr and values whose rows have the given lengths; few distinct values (many ties)."""
    rng = np.random.default_rng(seed)
    rowptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = rng.integers(-levels, levels, size=int(rowptr[-1])).astype(np.float64) / 2
    return (torch.from_numpy(rowptr).to(DEVICE), torch.from_numpy(values).to(DEVICE, dtype))


def by_sorting(rowptr, values, k, largest):
    """The truth: each row's (position, value) pairs sorted by (better value, lower position)."""
    rowptr, values = rowptr.cpu().tolist(), values.cpu().double().tolist()
    pos = np.full((len(rowptr) - 1, k), -1, dtype=np.int64)
    val = np.zeros((len(rowptr) - 1, k))
    for r in range(len(rowptr) - 1):
        entries = sorted(
            range(rowptr[r], rowptr[r + 1]), key=lambda j: (-values[j] if largest else values[j], j)
        )[:k]
        pos[r, : len(entries)] = entries
        val[r, : len(entries)] = [values[j] for j in entries]
    return torch.from_numpy(pos), torch.from_numpy(val)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("k", [0, 1, 3, 7])
def test_matches_sorting_with_ties_short_and_empty_rows(backend, dtype, largest, k):
    # Empty rows (first, middle, last), rows shorter than, equal to and longer than k, one longer
    # than the Triton kernel's chunk (256).
    lengths = [0, 1, 3, 7, 0, 12, 2, 300, 5, 0]
    rowptr, values = random_csr(lengths, seed=k + 10 * largest, dtype=dtype)
    pos, val = ops.segment_topk(rowptr, values, k, largest, backend=backend)
    want_pos, want_val = by_sorting(rowptr, values, k, largest)
    assert pos.shape == (len(lengths), k) and pos.dtype == torch.int64 and val.dtype == dtype
    assert torch.equal(pos.cpu(), want_pos)
    assert torch.equal(val.cpu().double(), want_val)
    if k:
        assert (pos[0] == -1).all() and (val[0] == 0).all()  # an empty row is all padding


@pytest.mark.parametrize("backend", BACKEND)
def test_infinities_and_signed_zeros_are_ordinary_values(backend):
    values = torch.tensor(
        [0.0, -math.inf, math.inf, -0.0, 1.0, -math.inf, math.inf],
        dtype=torch.float64,
        device=DEVICE,
    )
    rowptr = torch.tensor([0, 7], device=DEVICE)
    for largest in (True, False):
        pos, val = ops.segment_topk(rowptr, values, 7, largest, backend=backend)
        want_pos, want_val = by_sorting(rowptr, values, 7, largest)
        # -0.0 == 0.0: the tie goes to the lower position, as for any equal values.
        assert torch.equal(pos.cpu(), want_pos), (largest, pos)
        assert torch.equal(val.cpu(), want_val)


@pytest.mark.parametrize("backend", BACKEND)
def test_no_rows_and_no_entries(backend):
    pos, val = ops.segment_topk(
        torch.zeros(1, dtype=torch.int64, device=DEVICE),
        torch.zeros(0, device=DEVICE),
        3,
        backend=backend,
    )
    assert pos.shape == (0, 3) and val.shape == (0, 3)
    pos, val = ops.segment_topk(
        torch.zeros(4, dtype=torch.int64, device=DEVICE),
        torch.zeros(0, device=DEVICE),
        2,
        backend=backend,
    )
    assert (pos == -1).all() and (val == 0).all() and pos.shape == (3, 2)


def test_bad_input():
    rowptr = torch.tensor([0, 2, 3], device=DEVICE)
    with pytest.raises(ValueError, match="rowptr must be a 1-D int64"):
        ops.segment_topk(rowptr.int(), torch.zeros(3, device=DEVICE), 1)
    with pytest.raises(ValueError, match="values must be a 1-D float32 or float64"):
        ops.segment_topk(rowptr, torch.zeros(3, dtype=torch.int64, device=DEVICE), 1)
    with pytest.raises(ValueError, match="k must be >= 0"):
        ops.segment_topk(rowptr, torch.zeros(3, device=DEVICE), -1)
    if DEVICE.type == "cpu":
        with pytest.raises(ValueError, match="invalid rowptr"):
            ops.segment_topk(torch.tensor([0, 3, 2]), torch.zeros(2), 1)
        with pytest.raises(ValueError, match=r"values has NaN \(first at position 1\)"):
            ops.segment_topk(rowptr, torch.tensor([0.0, math.nan, 1.0]), 1)
    if _AVAIL["cuda"] is None:
        with pytest.raises(ops.BackendUnavailable, match="triton backend covers GPUs"):
            ops.segment_topk(rowptr, torch.zeros(3, device=DEVICE), 1, backend="cuda")
