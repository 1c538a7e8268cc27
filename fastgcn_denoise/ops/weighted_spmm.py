"""Sparse products with one weight per stored entry and no degree normalisation.

    weighted_spmm(pattern, weight, x):  y[r] = sum_{e in row r} w_e x[col_e]            (any CSR)
    directed_spmm(graph, x_user, x_item, w_to_user, w_to_item):
        y_user[u] = sum_{e = (u, i)} w_to_user[e] x_item[i]
        y_item[i] = sum_{e = (u, i)} w_to_item[e] x_user[u]

``directed_spmm`` is the bipartite propagation with a separate weight per direction (GRCN's
attention weights alpha_{i->u} and alpha_{u->i}, LightGNN's per-directed-entry weights);
``masked_spmm(..., renormalize=False, edge_weight=w)`` is its case w_to_user = w_to_item = w.
``weighted_spmm`` is the same product on any sparse pattern with its transpose (``CSRPattern``),
e.g. a homogeneous (U + I)-node graph with user-user and item-item entries.

Gradients: dL/dx = A^T gy (the transpose's row-parallel product) and dL/dw_e = <gy[row_e],
x[col_e]> (an SDDMM on the pattern). Both run on the backend primitives of ``masked_spmm``
(``spmm``) and ``sddmm``: every backend, row-parallel, no atomics, deterministic. The cuda backend
has no SDDMM kernel: with it forced, the weight gradient runs on triton (the GPU default).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..graph import check_count, check_csr, check_ids, index_tensor
from . import _library as library
from ._backend import BackendUnavailable, get_backend, resolve_name
from .masked_spmm import _check_finite, check_edge_tensor
from .sddmm import sddmm_kernel


@dataclass(frozen=True)
class CSRPattern:
    """A sparse pattern [num_rows x num_cols] and its transpose, for products in both directions.

    Entry ``e`` is position ``e`` of CSR(A): ``rowptr`` [R + 1], ``col`` [nnz]; weights are in this
    order. CSR(A^T): ``t_rowptr`` [C + 1], ``t_col`` [nnz] (row ids), ``t_perm`` [nnz] (entry id of
    each position). All int64 on one device. Build with ``from_coo`` / ``from_csr``; a direct
    construction is checked too (``ValueError`` naming the first bad entry), since the kernels
    read the indices unchecked. ``t_perm`` None: the pattern is symmetric with entry ids as in
    CSR(A) (``pyg``).
    """

    rowptr: torch.Tensor
    col: torch.Tensor
    t_rowptr: torch.Tensor
    t_col: torch.Tensor
    t_perm: torch.Tensor
    num_rows: int
    num_cols: int

    def __post_init__(self):
        what = "CSRPattern"
        num_rows = check_count(what, "num_rows", self.num_rows)
        num_cols = check_count(what, "num_cols", self.num_cols)
        for name in ("rowptr", "col", "t_rowptr", "t_col") + (
            ("t_perm",) * (self.t_perm is not None)
        ):
            index_tensor(what, name, getattr(self, name), exact=True)
        for rowptr, col, rows, cols, names in (
            (self.rowptr, self.col, num_rows, num_cols, ("rowptr", "col")),
            (self.t_rowptr, self.t_col, num_cols, num_rows, ("t_rowptr", "t_col")),
        ):
            if rowptr.shape[0] != rows + 1:
                raise ValueError(
                    f"{what}: {names[0]} has {rowptr.shape[0]} entries, expected "
                    f"{rows + 1} (one per row + 1)"
                )
            check_csr(what, rowptr, col, cols, names)
        if self.t_col.shape[0] != self.col.shape[0]:
            raise ValueError(
                f"{what}: t_col has {self.t_col.shape[0]} entries but col has "
                f"{self.col.shape[0]}; the transpose holds the same entries"
            )
        if self.t_perm is not None:
            if self.t_perm.shape != self.col.shape:
                raise ValueError(
                    f"{what}: t_perm has {self.t_perm.shape[0]} entries, expected "
                    f"nnz = {self.col.shape[0]}"
                )
            check_ids(what, "t_perm", self.t_perm, self.col.shape[0])

    @classmethod
    def from_csr(cls, rowptr, col, num_cols: int) -> "CSRPattern":
        """From CSR arrays (columns need not be sorted within a row); builds the transpose."""
        what = "CSRPattern.from_csr"
        num_cols = check_count(what, "num_cols", num_cols)
        rowptr, col = index_tensor(what, "rowptr", rowptr), index_tensor(what, "col", col)
        check_csr(what, rowptr, col, num_cols)
        rowptr, col = rowptr.cpu().numpy(), col.cpu().numpy()
        num_rows = rowptr.shape[0] - 1
        rows = np.repeat(np.arange(num_rows, dtype=np.int64), np.diff(rowptr))
        perm = np.argsort(col, kind="stable")  # rows ascending within a column
        t_rowptr = np.zeros(num_cols + 1, dtype=np.int64)
        np.cumsum(np.bincount(col, minlength=num_cols), out=t_rowptr[1:])
        as_t = torch.from_numpy
        return cls(
            as_t(rowptr),
            as_t(col),
            as_t(t_rowptr),
            as_t(np.ascontiguousarray(rows[perm])),
            as_t(perm),
            int(num_rows),
            int(num_cols),
        )

    @classmethod
    def from_coo(
        cls, rows, cols, num_rows: int, num_cols: int
    ) -> tuple["CSRPattern", torch.Tensor]:
        """(pattern, order) from entry lists; entry e of the pattern is input entry ``order[e]``
        (row-major, columns ascending). Duplicate (row, col) entries are refused."""
        what = "CSRPattern.from_coo"
        num_rows = check_count(what, "num_rows", num_rows)
        num_cols = check_count(what, "num_cols", num_cols)
        rows = index_tensor(what, "rows", rows)
        cols = index_tensor(what, "cols", cols)
        if rows.shape != cols.shape:
            raise ValueError(
                f"{what}: rows has {rows.shape[0]} entries but cols has "
                f"{cols.shape[0]}; they must be of equal length"
            )
        check_ids(what, "rows", rows, num_rows)
        check_ids(what, "cols", cols, num_cols)
        rows, cols = rows.cpu().numpy(), cols.cpu().numpy()
        order = np.lexsort((cols, rows))
        keys = rows[order] * num_cols + cols[order]
        if keys.size > 1 and (np.diff(keys) == 0).any():
            dup = int(order[1:][np.diff(keys) == 0][0])
            raise ValueError(f"duplicate entry ({int(rows[dup])}, {int(cols[dup])})")
        rowptr = np.zeros(num_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=num_rows), out=rowptr[1:])
        return cls.from_csr(rowptr, cols[order], num_cols), torch.from_numpy(order)

    @property
    def nnz(self) -> int:
        return int(self.col.shape[0])

    @property
    def device(self) -> torch.device:
        return self.col.device

    def to(self, device) -> "CSRPattern":
        device = torch.device(device)
        if device == self.device:
            return self
        return CSRPattern(
            *(
                t.to(device)
                for t in (self.rowptr, self.col, self.t_rowptr, self.t_col, self.t_perm)
            ),
            self.num_rows,
            self.num_cols,
        )


# Per graph: {(dtype, normalize, self_loop): (pattern, weight)}, built once (a graph is immutable);
# with edge weights, {(..., id, version): (weakref to the weights, pattern, weight)}.
_OPERATORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def check_edge_weight(graph, edge_weight: torch.Tensor, where: str) -> None:
    """ValueError unless ``edge_weight`` is a float [E] tensor on the graph's device with finite
    values >= 0 and no gradient (``where`` names the caller)."""
    check_edge_tensor(graph, "edge_weight", edge_weight, f"{where}: ")
    if edge_weight.requires_grad:
        raise ValueError(f"{where}: edge_weight is fixed (no gradient); detach it")
    _check_finite(f"{where}: edge_weight", edge_weight)
    if bool((edge_weight < 0).any()):
        first = int((edge_weight < 0).nonzero()[0])
        raise ValueError(
            f"{where}: edge_weight must be finite and >= 0; edge {first} has "
            f"{float(edge_weight[first])}"
        )


def weighted_degrees(graph, edge_weight: torch.Tensor) -> torch.Tensor:
    """Each node's sum of its edges' weights, users then items (float64 [U + I])."""
    w = edge_weight.detach().to(torch.float64)
    users, items = graph.edges()
    degree = torch.zeros(graph.num_users + graph.num_items, dtype=torch.float64, device=w.device)
    return degree.index_add_(0, users, w).index_add_(0, items + graph.num_users, w)


def bipartite_operator(
    graph,
    dtype: torch.dtype = torch.float32,
    normalize: bool = True,
    self_loop: bool = False,
    edge_weight: torch.Tensor | None = None,
):
    """(pattern, weight): the bipartite graph's unmasked propagation as one homogeneous [N, N]
    product, N = U + I (users first), cached per graph (and per ``edge_weight`` tensor).

    ``weight`` [nnz] is r_u r_i with r = deg^-1/2 (``normalize``; computed in float64, then cast
    to ``dtype``) or ones. A is symmetric with symmetric values: its transpose is itself, entry
    for entry, so the backward product runs on the same CSR (``t_perm`` None: positions are entry
    ids) and reads the weights in order instead of through a permutation. ``weighted_spmm(pattern,
    weight, x)`` is then ``masked_spmm(graph, x[:U], x[U:])`` (renormalised or not) in one piece:
    no degree pass, no per-call mask buffer, no concatenation of the two sides.
    ``self_loop``: A + I (nnz = 2E + N, each row's diagonal entry in column order; with
    ``normalize`` r = (deg + 1)^-1/2), ``masked_spmm(..., self_loop=True)``.
    ``edge_weight`` [E] (edge-id order, >= 0, fixed): A ⊙ w, its degrees the weighted ones
    (r = (sum of the row's w)^-1/2, 0 for a row without weight): ``masked_spmm(...,
    edge_weight=w)``. The cache holds it while that tensor lives and is not modified in place.
    """
    cache = _OPERATORS.setdefault(graph, {})
    key = (dtype, bool(normalize), bool(self_loop))
    if edge_weight is not None:
        key += (id(edge_weight), edge_weight._version)
        hit = cache.get(key)
        if hit is not None and hit[0]() is edge_weight:
            return hit[1:]  # checked when it was built, unchanged since
        check_edge_weight(graph, edge_weight, "bipartite_operator")
        for stale in [k for k, v in cache.items() if len(k) > 3 and v[0]() is None]:
            del cache[stale]
    elif key in cache:
        return cache[key]
    device, e, u = graph.device, graph.num_edges, graph.num_users
    rowptr = torch.cat([graph.rowptr_u, graph.rowptr_i[1:] + e])
    col = torch.cat([graph.col_item + u, graph.col_user])
    n = u + graph.num_items
    rows = torch.repeat_interleave(torch.arange(n, device=device), rowptr.diff(), output_size=2 * e)
    if edge_weight is None:
        entry = None
        deg = torch.cat([graph.deg_u, graph.deg_i]).to(torch.float64)
    else:
        w = edge_weight.detach().to(torch.float64)
        entry = torch.cat([w, w[graph.perm]])  # user rows in edge order, item rows via perm
        deg = weighted_degrees(graph, w)
    if self_loop:
        # A user's columns (items, >= U) all follow it, an item's (users, < U) all precede
        # it: sorted by 3 row + (0 | 1 | 2), the diagonal comes first in user rows and last
        # in item rows, the stable sort keeps the edges' column order.
        diag = torch.arange(n, device=device)
        place = torch.cat([rows * 3 + 1, diag * 3 + (diag >= u).long() * 2])
        order = torch.argsort(place, stable=True)
        rows, col = torch.cat([rows, diag])[order], torch.cat([col, diag])[order]
        if entry is not None:
            entry = torch.cat([entry, torch.ones(n, dtype=torch.float64, device=device)])[order]
        rowptr = rowptr + torch.arange(n + 1, device=device)
        deg = deg + 1
    if normalize:
        # Weighted degrees may be below 1; a row of weight 0 has only zero entries.
        floor = 1.0 if edge_weight is None else torch.finfo(torch.float64).tiny
        r = torch.where(deg > 0, deg.clamp_min(floor).rsqrt(), torch.zeros_like(deg))
        weight = r[rows] * r[col]
        weight = (weight if entry is None else weight * entry).to(dtype)
    else:
        weight = (
            torch.ones(col.shape[0], dtype=dtype, device=device)
            if entry is None
            else entry.to(dtype)
        )
    pattern = CSRPattern(rowptr, col, rowptr, col, None, n, n)
    if edge_weight is None:
        cache[key] = (pattern, weight)
    else:
        cache[key] = (weakref.ref(edge_weight), pattern, weight)
    return pattern, weight


def csr_product(rowptr, col, eid, weight, x, backend=None) -> torch.Tensor:
    """y = A x for A = CSR (rowptr, col, eid | None) with entry weights ``weight`` [nnz]: the
    backend's ``spmm``, except on the cpu backend when positions are entry ids (``eid`` None),
    where ``_C.csr_spmm`` runs (values read in order, gathers fetched ahead across rows)."""
    if eid is None and resolve_name(x.device, backend) == "cpu":
        from .. import _C

        if not hasattr(_C, "csr_spmm"):
            raise BackendUnavailable(
                "fastgcn_denoise._C has no csr_spmm (built before it was added); "
                "rebuild the extension (pip install -e . or make build)"
            )
        return _C.csr_spmm(rowptr, col, weight, x)
    be = get_backend(x.device, backend)
    return be.spmm(rowptr, col, eid, weight.unsqueeze(0), None, None, x, None)[0]


def _weighted_spmm_op(
    rowptr: torch.Tensor,
    col: torch.Tensor,
    eid: Optional[torch.Tensor],
    t_rowptr: torch.Tensor,
    t_col: torch.Tensor,
    t_eid: Optional[torch.Tensor],
    weight: torch.Tensor,
    x: torch.Tensor,
    name: str,
    backend: Optional[str],
) -> torch.Tensor:
    """y = A x for A given as a CSR (rowptr, col, eid | None) and its transpose's; ``name`` is the
    weight's name for the value check (here, where the data is read)."""
    # One reduction on the hot path; the search for the first bad entry only on failure.
    if (
        weight.device.type == "cpu"
        and weight.numel()
        and not torch.isfinite(torch.stack(torch.aminmax(weight))).all()
    ):
        raise ValueError(
            f"{name} has non-finite values (first at entry "
            f"{int((~torch.isfinite(weight)).nonzero()[0])})"
        )
    return csr_product(rowptr, col, eid, weight, x, backend)


def _weighted_spmm_backward_op(
    rowptr: torch.Tensor,
    col: torch.Tensor,
    eid: Optional[torch.Tensor],
    t_rowptr: torch.Tensor,
    t_col: torch.Tensor,
    t_eid: Optional[torch.Tensor],
    weight: torch.Tensor,
    x: torch.Tensor,
    gy: torch.Tensor,
    need_w: bool,
    need_x: bool,
    backend: Optional[str],
) -> list[torch.Tensor]:
    """[dL/dw or empty, dL/dx or empty]: dL/dx = A^T gy, dL/dw_e = <gy[row_e], x[col_e]>."""
    gy = gy.contiguous()
    gw = gx = library.empty(x)
    if need_x:
        gx = csr_product(t_rowptr, t_col, t_eid, weight, gy, backend)
    if need_w:
        sddmm = sddmm_kernel(
            x.device, None if resolve_name(x.device, backend) == "cuda" else backend
        )
        # Computed on whichever CSR has positions = entry ids.
        gw = sddmm(rowptr, col, gy, x) if eid is None else sddmm(t_rowptr, t_col, x, gy)
    return [gw, gx]


def _weighted_spmm_fake(rowptr, col, eid, t_rowptr, t_col, t_eid, weight, x, name, backend):
    return x.new_empty(rowptr.shape[0] - 1, x.shape[1])


def _weighted_spmm_backward_fake(
    rowptr, col, eid, t_rowptr, t_col, t_eid, weight, x, gy, need_w, need_x, backend
):
    return [
        torch.empty_like(weight) if need_w else library.empty(x),
        torch.empty_like(x) if need_x else library.empty(x),
    ]


_forward = library.define("weighted_spmm", _weighted_spmm_op, _weighted_spmm_fake)
_backward = library.define(
    "weighted_spmm_backward", _weighted_spmm_backward_op, _weighted_spmm_backward_fake
)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:8])
    ctx.backend = inputs[9]


def _grad(ctx, gy):
    gw, gx = _backward(
        *ctx.saved_tensors, gy, ctx.needs_input_grad[6], ctx.needs_input_grad[7], ctx.backend
    )
    return (None,) * 6 + (library.present(gw), library.present(gx), None, None)


library.differentiable(_forward, _grad, _setup)


def _product(fwd, bwd, weight, x, name, backend):
    return _forward(*fwd, *bwd, weight.contiguous(), x.contiguous(), name, backend)


def _check_embeddings(name, x, rows, what, device):
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] != rows:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape [{what} = {rows}, d], got {shape}")
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
    if x.device != device:
        raise ValueError(f"{name} is on {x.device} but the pattern is on {device}")


def _check_weight(name, w, nnz, dtype, device):
    if not isinstance(w, torch.Tensor) or w.shape != (nnz,):
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise ValueError(f"{name} must have shape [{nnz}] (one weight per entry), got {shape}")
    if w.dtype != dtype:
        raise ValueError(f"{name} is {w.dtype} but the embeddings are {dtype}")
    if w.device != device:
        raise ValueError(f"{name} is on {w.device} but the pattern is on {device}")


def weighted_spmm(
    pattern: CSRPattern, weight: torch.Tensor, x: torch.Tensor, backend: str | None = None
) -> torch.Tensor:
    """y [num_rows, d] = A x with A_{row_e, col_e} = weight[e].

    Args:
        pattern: ``CSRPattern`` on x's device. weight [nnz]: entry weights (any sign).
        x [num_cols, d]: float32/float64, the dtype of ``weight``.
        backend: force a backend (default: FASTGCN_BACKEND or the best for the device).
    """
    _check_embeddings("x", x, pattern.num_cols, "num_cols", pattern.device)
    _check_weight("weight", weight, pattern.nnz, x.dtype, pattern.device)
    return _product(
        (pattern.rowptr, pattern.col, None),
        (pattern.t_rowptr, pattern.t_col, pattern.t_perm),
        weight,
        x,
        "weight",
        backend,
    )


def directed_spmm(
    graph,
    x_user: torch.Tensor,
    x_item: torch.Tensor,
    w_to_user: torch.Tensor,
    w_to_item: torch.Tensor,
    backend: str | None = None,
):
    """(y_user [U, d], y_item [I, d]): the bipartite product with one weight per edge and direction.

    Args:
        graph: ``BipartiteGraph``. x_user [U, d], x_item [I, d]: float32/float64.
        w_to_user [E]: weight of the message item -> user on edge e (edge-id order).
        w_to_item [E]: weight of the message user -> item on edge e.
    """
    _check_embeddings("x_user", x_user, graph.num_users, "num_users", graph.device)
    _check_embeddings("x_item", x_item, graph.num_items, "num_items", graph.device)
    if x_user.dtype != x_item.dtype or x_user.shape[1] != x_item.shape[1]:
        raise ValueError(
            f"x_user ({x_user.dtype}, d = {x_user.shape[1]}) and x_item "
            f"({x_item.dtype}, d = {x_item.shape[1]}) must share dtype and d"
        )
    _check_weight("w_to_user", w_to_user, graph.num_edges, x_user.dtype, graph.device)
    _check_weight("w_to_item", w_to_item, graph.num_edges, x_user.dtype, graph.device)
    by_user = (graph.rowptr_u, graph.col_item, None)
    by_item = (graph.rowptr_i, graph.col_user, graph.perm)
    y_user = _product(by_user, by_item, w_to_user, x_item, "w_to_user", backend)
    y_item = _product(by_item, by_user, w_to_item, x_user, "w_to_item", backend)
    return y_user, y_item


__all__ = ["CSRPattern", "weighted_spmm", "directed_spmm"]
