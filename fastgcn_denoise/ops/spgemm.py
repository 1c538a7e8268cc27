"""Sparse-sparse products (SpGEMM) and the power-sum graphs LightGNN builds with them.

    spgemm(a, b, plus_identity=False):  C = A B (+ I), CSR with sorted columns
    power_sum(graph, order):            C = I + A + A^2 + ... + A^order over the U + I nodes of the
                                        binary bipartite adjacency A = [[0, R], [R^T, 0]]

``power_sum(graph, 1)`` is A + I (LightGNN's teacher and student graph, self-loops as entries);
``power_sum(graph, h + 1)`` the (h+1)-hop closure of the intermediate model, whose values are
path counts (the diagonal is 1 + degree; A^2 adds user-user and item-item co-interaction counts).
It is built by Horner's rule, C_0 = I, C_m = A C_{m-1} + I: ``order`` products of the sparse A
with the growing sum, the identity added inside the product kernel.

Backends: ``cpu`` (csrc/cpu/spgemm.cpp: row-parallel Gustavson with a dense per-thread
accumulator, symbolic + numeric pass), ``reference`` (torch.sparse.mm on COO tensors), and on
GPUs torch.sparse.mm on CSR tensors (cuSPARSE) for ``triton``/``cuda``: a one-off preprocessing
step, where a Triton SpGEMM would not pay for itself. The products carry no autograd (graphs
are data, not parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..graph import check_count, check_csr, index_tensor
from ._backend import BackendUnavailable, resolve_name
from .weighted_spmm import CSRPattern


@dataclass(frozen=True)
class CSRMatrix:
    """A sparse matrix [num_rows x num_cols] in CSR: ``rowptr`` int64 [R + 1], ``col`` int64
    [nnz] (sorted within each row), ``val`` float [nnz]."""

    rowptr: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor
    num_rows: int
    num_cols: int

    def __post_init__(self):
        # The kernels read these indices unchecked: validate once, here (O(nnz)).
        what = "CSRMatrix"
        num_rows = check_count(what, "num_rows", self.num_rows)
        num_cols = check_count(what, "num_cols", self.num_cols)
        index_tensor(what, "rowptr", self.rowptr, exact=True)
        index_tensor(what, "col", self.col, exact=True)
        if self.rowptr.shape[0] != num_rows + 1:
            raise ValueError(
                f"{what}: rowptr has {self.rowptr.shape[0]} entries, expected "
                f"num_rows + 1 = {num_rows + 1}"
            )
        if not isinstance(self.val, torch.Tensor) or self.val.shape != self.col.shape:
            shape = tuple(self.val.shape) if isinstance(self.val, torch.Tensor) else type(self.val)
            raise ValueError(
                f"{what}: val must be a tensor of col's shape {tuple(self.col.shape)}, got {shape}"
            )
        check_csr(what, self.rowptr, self.col, num_cols)

    @property
    def nnz(self) -> int:
        return int(self.col.shape[0])

    @classmethod
    def identity(cls, n: int, dtype=torch.float64, device="cpu") -> "CSRMatrix":
        idx = torch.arange(n, dtype=torch.int64, device=device)
        return cls(
            torch.arange(n + 1, dtype=torch.int64, device=device),
            idx,
            torch.ones(n, dtype=dtype, device=device),
            n,
            n,
        )

    def to_dense(self) -> torch.Tensor:
        rows = torch.repeat_interleave(
            torch.arange(self.num_rows, device=self.col.device), self.rowptr.diff()
        )
        out = torch.zeros(
            self.num_rows, self.num_cols, dtype=self.val.dtype, device=self.val.device
        )
        out[rows, self.col] = self.val
        return out

    def pattern(self) -> CSRPattern:
        """The pattern with its transpose, for ``weighted_spmm`` (entry e = position e here)."""
        return CSRPattern.from_csr(
            self.rowptr.cpu().numpy(), self.col.cpu().numpy(), self.num_cols
        ).to(self.col.device)


def _from_coalesced(c: torch.Tensor, rows: int, cols: int) -> CSRMatrix:
    idx, val = c.indices(), c.values()
    rowptr = torch.zeros(rows + 1, dtype=torch.int64, device=val.device)
    rowptr[1:] = torch.cumsum(torch.bincount(idx[0], minlength=rows), 0)
    return CSRMatrix(rowptr, idx[1].contiguous(), val.contiguous(), rows, cols)


def _coo(m: CSRMatrix) -> torch.Tensor:
    rows = torch.repeat_interleave(torch.arange(m.num_rows, device=m.col.device), m.rowptr.diff())
    return torch.sparse_coo_tensor(
        torch.stack([rows, m.col]), m.val, (m.num_rows, m.num_cols), check_invariants=False
    )


def _reference(a: CSRMatrix, b: CSRMatrix, plus_identity: bool) -> CSRMatrix:
    c = torch.sparse.mm(_coo(a), _coo(b))
    if plus_identity:
        c = c + _coo(CSRMatrix.identity(a.num_rows, a.val.dtype, a.val.device))
    return _from_coalesced(c.coalesce(), a.num_rows, b.num_cols)


def _cusparse(a: CSRMatrix, b: CSRMatrix, plus_identity: bool) -> CSRMatrix:
    def csr(m):
        return torch.sparse_csr_tensor(m.rowptr, m.col, m.val, (m.num_rows, m.num_cols))

    prod = csr(a) @ csr(b)  # columns may come unsorted within rows: re-coalesce from COO
    c = _coo(
        CSRMatrix(prod.crow_indices(), prod.col_indices(), prod.values(), a.num_rows, b.num_cols)
    )
    if plus_identity:
        c = c + _coo(CSRMatrix.identity(a.num_rows, a.val.dtype, a.val.device))
    return _from_coalesced(c.coalesce(), a.num_rows, b.num_cols)


def _cpu(a: CSRMatrix, b: CSRMatrix, plus_identity: bool) -> CSRMatrix:
    from .. import _C

    if not hasattr(_C, "spgemm"):
        raise BackendUnavailable(
            "fastgcn_denoise._C has no spgemm (built before it was added); "
            "rebuild the extension (pip install -e .)"
        )
    rowptr, col, val = _C.spgemm(
        *(t.contiguous() for t in (a.rowptr, a.col, a.val, b.rowptr, b.col, b.val)),
        b.num_cols,
        plus_identity,
    )
    return CSRMatrix(rowptr, col, val, a.num_rows, b.num_cols)


_IMPLS = {"reference": _reference, "cpu": _cpu, "triton": _cusparse, "cuda": _cusparse}


def spgemm(
    a: CSRMatrix, b: CSRMatrix, plus_identity: bool = False, backend: str | None = None
) -> CSRMatrix:
    """C = A B (+ I): CSR with columns sorted in every row and every structural nonzero of the
    product kept (also entries that cancel to 0.0).

    Args:
        a [R x K], b [K x C]: ``CSRMatrix`` on one device, values of one float dtype.
        plus_identity: add the identity (needs a square product, R = C).
        backend: force a backend (default: FASTGCN_BACKEND or the best for the device).
    """
    if a.num_cols != b.num_rows:
        raise ValueError(
            f"spgemm: A is {a.num_rows} x {a.num_cols} but B is {b.num_rows} x {b.num_cols}"
        )
    if plus_identity and a.num_rows != b.num_cols:
        raise ValueError(
            f"spgemm: plus_identity needs a square product, got {a.num_rows} x {b.num_cols}"
        )
    if a.val.dtype != b.val.dtype or not a.val.is_floating_point():
        raise ValueError(
            f"spgemm: values must share one float dtype, got {a.val.dtype} and {b.val.dtype}"
        )
    if a.col.device != b.col.device:
        raise ValueError(f"spgemm: A is on {a.col.device} but B on {b.col.device}")
    return _IMPLS[resolve_name(a.col.device, backend)](a, b, plus_identity)


def bipartite_adjacency(graph, dtype=torch.float64) -> CSRMatrix:
    """A = [[0, R], [R^T, 0]] over nodes users 0..U-1, items U..U+I-1, all values 1."""
    U, E = graph.num_users, graph.num_edges
    rowptr = torch.cat([graph.rowptr_u, graph.rowptr_i[1:] + E])
    col = torch.cat([graph.col_item + U, graph.col_user])
    n = U + graph.num_items
    return CSRMatrix(rowptr, col, torch.ones(2 * E, dtype=dtype, device=col.device), n, n)


def power_sum(graph, order: int, backend: str | None = None) -> CSRMatrix:
    """C = sum_{k=0}^{order} A^k (float64 path counts) for the graph's bipartite adjacency A."""
    if int(order) != order or order < 0:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    adj = bipartite_adjacency(graph)
    c = CSRMatrix.identity(adj.num_rows, device=adj.col.device)
    for _ in range(int(order)):
        c = spgemm(adj, c, plus_identity=True, backend=backend)
    return c


__all__ = ["CSRMatrix", "spgemm", "bipartite_adjacency", "power_sum"]
