"""The bipartite user-item interaction graph.

Edge id ``e`` is the position of the interaction in CSR(R): user-major, items ascending within a
user. Every per-edge tensor in the project (mask logits, edge weights, exported keep
probabilities) is in this order. CSR(R^T) is kept too, with ``perm`` mapping its positions to edge
ids, so that both propagation directions (and each one's backward) are row-parallel.
"""

from __future__ import annotations

import os
import zipfile
from typing import NamedTuple

import numpy as np
import torch

_INT_KINDS = "iu"


def _as_int_array(values, name: str) -> np.ndarray:
    """Convert ids to a 1-D int64 numpy array, refusing floats, bools and nested shapes."""
    if isinstance(values, torch.Tensor):
        if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
            raise ValueError(
                f"BipartiteGraph: {name} must hold integer ids, got a tensor of "
                f"dtype {values.dtype}"
            )
        arr = values.detach().cpu().numpy()
    else:
        arr = np.asarray(values)
        if arr.dtype == object:
            raise ValueError(f"BipartiteGraph: {name} must be a flat sequence of integer ids")
    if arr.ndim != 1:
        raise ValueError(f"BipartiteGraph: {name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size and arr.dtype.kind not in _INT_KINDS:
        bad = ""
        if arr.dtype.kind == "f":
            frac = np.nonzero(arr != np.floor(arr))[0]
            if frac.size:
                bad = f" (first non-integer value {float(arr[frac[0]])} at position {int(frac[0])})"
        raise ValueError(
            f"BipartiteGraph: {name} must hold integer ids, got dtype {arr.dtype}{bad}"
        )
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"BipartiteGraph: {name} holds ids too large for int64")
    return arr.astype(np.int64, copy=False)


def _check_range(ids: np.ndarray, bound: int | None, name: str, count_name: str) -> int:
    neg = np.nonzero(ids < 0)[0]
    if neg.size:
        raise ValueError(
            f"BipartiteGraph: {name}[{int(neg[0])}] = {int(ids[neg[0]])} is "
            "negative; ids must be >= 0"
        )
    if bound is None:
        return int(ids.max()) + 1
    if bound <= 0:
        raise ValueError(f"BipartiteGraph: {count_name} must be positive, got {bound}")
    over = np.nonzero(ids >= bound)[0]
    if over.size:
        raise ValueError(
            f"BipartiteGraph: {name}[{int(over[0])}] = {int(ids[over[0]])} is out of range: "
            f"{count_name} = {bound}"
        )
    return int(bound)


# ---------------------------------------------------------------------- index validation
# Every structure whose indices reach a compiled kernel (BipartiteGraph, ops.CSRPattern,
# ops.CSRMatrix) checks them here once, at construction, in O(E) vectorised passes; the kernels
# then trust them. Errors are one line naming the structure, the field and the first bad entry.
_TORCH_INTS = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def index_tensor(what: str, name: str, values, exact: bool = False) -> torch.Tensor:
    """``values`` (sequence, numpy array or tensor) as a 1-D int64 tensor (a tensor already int64
    is returned as is). ``exact``: refuse tensors of another integer dtype (fields the kernels
    read as int64) instead of converting them."""
    if isinstance(values, torch.Tensor):
        t = values
        if t.dtype not in _TORCH_INTS or (exact and t.dtype != torch.int64):
            need = "int64" if exact else "integer"
            raise ValueError(f"{what}: {name} must be an {need} tensor, got {t.dtype}")
    else:
        arr = np.asarray(values)
        if arr.dtype == object:
            raise ValueError(f"{what}: {name} must be a flat sequence of integers")
        if arr.size and arr.dtype.kind not in _INT_KINDS:
            raise ValueError(f"{what}: {name} must hold integers, got dtype {arr.dtype}")
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{what}: {name} holds values too large for int64")
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64))
    if t.dim() != 1:
        raise ValueError(f"{what}: {name} must be 1-D, got shape {tuple(t.shape)}")
    return t.to(torch.int64)


def check_count(what: str, name: str, value) -> int:
    """``value`` as a non-negative int (Python or numpy integer, or a 0-d integer array)."""
    if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what}: {name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_ids(what: str, name: str, ids: torch.Tensor, bound: int) -> None:
    """Every entry of ``ids`` (int64, 1-D) in [0, bound)."""
    if ids.numel():
        lo, hi = (int(v) for v in torch.aminmax(ids))
        if lo < 0 or hi >= bound:
            j = int(((ids < 0) | (ids >= bound)).nonzero()[0])
            raise ValueError(f"{what}: {name}[{j}] = {int(ids[j])} is outside [0, {bound})")


def check_csr(
    what: str,
    rowptr: torch.Tensor,
    col: torch.Tensor,
    num_cols: int,
    names=("rowptr", "col"),
    ascending: bool = False,
) -> None:
    """rowptr [R + 1] from 0, non-decreasing, to nnz = len(col); 0 <= col < num_cols; with
    ``ascending``, columns strictly increasing within each row (sorted, no duplicates)."""
    p, c = names
    if rowptr.numel() == 0:
        raise ValueError(f"{what}: {p} is empty; it needs num_rows + 1 >= 1 entries")
    if int(rowptr[0]) != 0:
        raise ValueError(f"{what}: {p}[0] = {int(rowptr[0])}, must be 0")
    steps = rowptr.diff()
    if steps.numel() and int(steps.min()) < 0:
        j = int((steps < 0).nonzero()[0]) + 1
        raise ValueError(
            f"{what}: {p}[{j}] = {int(rowptr[j])} is below {p}[{j - 1}] = "
            f"{int(rowptr[j - 1])}; {p} must be non-decreasing"
        )
    if int(rowptr[-1]) != col.shape[0]:
        raise ValueError(
            f"{what}: {p}[-1] = {int(rowptr[-1])} but {c} has {col.shape[0]} "
            "entries; they must match"
        )
    check_ids(what, c, col, num_cols)
    if ascending and col.shape[0] > 1:
        # Position j > 0 must exceed j - 1 unless a row starts at j.
        bad = col.diff() <= 0
        starts = rowptr[1:-1]
        bad[starts[(starts > 0) & (starts < col.shape[0])] - 1] = False
        if bool(bad.any()):
            j = int(bad.nonzero()[0]) + 1
            raise ValueError(
                f"{what}: {c}[{j}] = {int(col[j])} does not follow {c}[{j - 1}] = "
                f"{int(col[j - 1])} in its row; columns must be strictly ascending "
                "within a row (sorted, no duplicates)"
            )


class BipartiteGraph:
    """Deduplicated user-item interactions with CSR(R), CSR(R^T) and degrees.

    Args:
        user_ids, item_ids: equal-length integer sequences (list, numpy array or tensor), one
            entry per interaction; duplicates are merged.
        num_users, num_items: sizes of the id spaces (default: max id + 1). Ids outside
            ``[0, num)`` raise ``ValueError``.

    Attributes (int64 tensors on ``self.device``):
        rowptr_u [U+1], col_item [E]: CSR(R); edge ``e`` is position ``e`` here.
        rowptr_i [I+1], col_user [E], perm [E]: CSR(R^T); ``perm[j]`` is the edge id of position j.
        deg_u [U], deg_i [I]: unmasked degrees.
    """

    def __init__(
        self, user_ids, item_ids, num_users: int | None = None, num_items: int | None = None
    ):
        users = _as_int_array(user_ids, "user_ids")
        items = _as_int_array(item_ids, "item_ids")
        if users.shape[0] != items.shape[0]:
            raise ValueError(
                f"BipartiteGraph: user_ids has {users.shape[0]} entries but item_ids has "
                f"{items.shape[0]}; "
                "they must pair up one interaction per position"
            )
        if users.shape[0] == 0:
            raise ValueError("BipartiteGraph: no interactions: user_ids and item_ids are empty")
        num_users = _check_range(users, num_users, "user_ids", "num_users")
        num_items = _check_range(items, num_items, "item_ids", "num_items")
        # Sorting the combined key deduplicates and orders edges user-major, items ascending.
        keys = np.unique(users * num_items + items)
        self._build(keys // num_items, keys % num_items, num_users, num_items)

    def _build(self, users: np.ndarray, items: np.ndarray, num_users: int, num_items: int):
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        deg_u = np.bincount(users, minlength=num_users)
        deg_i = np.bincount(items, minlength=num_items)
        rowptr_u = np.zeros(num_users + 1, dtype=np.int64)
        np.cumsum(deg_u, out=rowptr_u[1:])
        rowptr_i = np.zeros(num_items + 1, dtype=np.int64)
        np.cumsum(deg_i, out=rowptr_i[1:])
        # Stable sort by item keeps users ascending within an item (edges are user-major).
        perm = np.argsort(items, kind="stable")
        self.rowptr_u = torch.from_numpy(rowptr_u)
        self.col_item = torch.from_numpy(np.ascontiguousarray(items, dtype=np.int64))
        self.rowptr_i = torch.from_numpy(rowptr_i)
        self.col_user = torch.from_numpy(np.ascontiguousarray(users[perm], dtype=np.int64))
        self.perm = torch.from_numpy(perm.astype(np.int64))
        self.deg_u = torch.from_numpy(deg_u.astype(np.int64))
        self.deg_i = torch.from_numpy(deg_i.astype(np.int64))

    _TENSORS = ("rowptr_u", "col_item", "rowptr_i", "col_user", "perm", "deg_u", "deg_i")

    @classmethod
    def from_csr(cls, rowptr_u, col_item, num_items: int) -> "BipartiteGraph":
        """Rebuild from CSR(R), e.g. after ``load``: rowptr_u [U + 1] non-decreasing from 0 to E,
        col_item [E] in [0, num_items), strictly ascending within each user (sorted,
        deduplicated). Anything else raises ``ValueError`` naming the first bad entry."""
        what = "BipartiteGraph.from_csr"
        num_items = check_count(what, "num_items", num_items)
        rowptr = index_tensor(what, "rowptr_u", rowptr_u)
        items = index_tensor(what, "col_item", col_item)
        check_csr(what, rowptr, items, num_items, ("rowptr_u", "col_item"), ascending=True)
        rowptr, items = rowptr.cpu().numpy(), items.cpu().numpy()
        users = np.repeat(np.arange(rowptr.shape[0] - 1, dtype=np.int64), np.diff(rowptr))
        g = cls.__new__(cls)
        g._build(users, items, rowptr.shape[0] - 1, num_items)
        return g

    # ------------------------------------------------------------------ PyTorch Geometric layouts
    @classmethod
    def from_edge_index(
        cls, edge_index, num_users: int | None = None, num_nodes: int | None = None
    ) -> "BipartiteGraph":
        """From a PyG ``edge_index`` [2, n] on the homogeneous (U + I)-node graph: users are nodes
        ``[0, U)``, items ``[U, U + I)``, every interaction stored in both directions (as PyG's
        LightGCN examples build it) or only user -> item. See ``parse_edge_index``."""
        return parse_edge_index(edge_index, num_users, num_nodes).graph

    def to_edge_index(self) -> torch.Tensor:
        """[2, 2E] int64 ``edge_index`` of the homogeneous graph (items shifted by num_users):
        the user -> item copies in edge-id order, then the item -> user copies in the same order."""
        users, items = self.edges()
        items = items + self.num_users
        return torch.stack([torch.cat([users, items]), torch.cat([items, users])])

    @classmethod
    def from_hetero_data(cls, data, edge_type: tuple | None = None) -> "BipartiteGraph":
        """From a PyG ``HeteroData`` whose ``edge_type`` (src, relation, dst) holds the user -> item
        ``edge_index`` (rows: src node ids, columns: dst node ids); sizes from
        ``data[src].num_nodes`` / ``data[dst].num_nodes``. ``edge_type`` None: the one edge type
        whose relation does not start with ``rev_`` (ToUndirected's reverse copies)."""
        if edge_type is None:
            types = [t for t in data.edge_types if not str(t[1]).startswith("rev_")]
            if len(types) != 1:
                raise ValueError(
                    f"data has edge types {list(data.edge_types)}: pass "
                    "edge_type=(user type, relation, item type) to pick one"
                )
            edge_type = types[0]
        elif edge_type not in data.edge_types:
            raise ValueError(
                f"edge type {edge_type} is not in data (it has {list(data.edge_types)})"
            )
        src, _, dst = edge_type
        edge_index = data[edge_type].edge_index
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(
                f"data[{edge_type}].edge_index must be [2, n], got {tuple(edge_index.shape)}"
            )
        return cls(edge_index[0], edge_index[1], data[src].num_nodes, data[dst].num_nodes)

    # ------------------------------------------------------------------ properties
    @property
    def num_edges(self) -> int:
        return int(self.col_item.shape[0])

    @property
    def device(self) -> torch.device:
        return self.col_item.device

    def edge_users(self) -> torch.Tensor:
        """[E] int64: the user of each edge id."""
        return torch.repeat_interleave(
            torch.arange(self.num_users, device=self.device), self.deg_u, output_size=self.num_edges
        )

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users [E], items [E]) in edge-id order."""
        return self.edge_users(), self.col_item

    def to(self, device) -> "BipartiteGraph":
        """A copy with every tensor on ``device`` (self if already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        g = self.__class__.__new__(self.__class__)
        g.num_users, g.num_items = self.num_users, self.num_items
        for name in self._TENSORS:
            setattr(g, name, getattr(self, name).to(device))
        return g

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write CSR(R) and the sizes to an ``.npz`` file."""
        np.savez_compressed(
            path,
            rowptr_u=self.rowptr_u.cpu().numpy(),
            col_item=self.col_item.cpu().numpy(),
            num_items=np.int64(self.num_items),
            format=np.array("fastgcn_denoise.BipartiteGraph/1"),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BipartiteGraph":
        """Read a file written by ``save``; a malformed file raises ``ValueError`` naming it."""
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = {"rowptr_u", "col_item", "num_items"} - set(f.files)
                if missing:
                    raise ValueError(f"not a BipartiteGraph file (missing {sorted(missing)})")
                return cls.from_csr(f["rowptr_u"], f["col_item"], f["num_items"])
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path}: {e}") from None

    def __repr__(self) -> str:
        return (
            f"BipartiteGraph(num_users={self.num_users}, num_items={self.num_items}, "
            f"num_edges={self.num_edges}, device={self.device})"
        )


class EdgeIndexLayout(NamedTuple):
    """How a homogeneous ``edge_index`` [2, n] maps onto a ``BipartiteGraph`` (``parse_edge_index``).

    ``user_to_item[e]`` / ``item_to_user[e]``: the edge_index column of edge e's user -> item /
    item -> user copy (int64 [E]; ``item_to_user`` None when the edge_index has one direction).
    ``interaction_order[e]``: the rank of that user -> item column among the user -> item columns,
    so a per-interaction tensor given in edge_index order maps to edge-id order as
    ``t[interaction_order]``.
    """

    graph: BipartiteGraph
    user_to_item: torch.Tensor
    item_to_user: torch.Tensor | None
    interaction_order: torch.Tensor


def _split_point(low: np.ndarray, high: np.ndarray, num_users: int | None, src, dst) -> int:
    """U such that every edge links a node < U with a node >= U (the edge's low and high end)."""
    if num_users is not None:
        bad = np.flatnonzero((low >= num_users) | (high < num_users))
        if bad.size:
            j = int(bad[0])
            side = "users" if high[j] < num_users else "items"
            raise ValueError(
                f"edge_index is not a user-item graph with num_users = {num_users}: "
                f"column {j} links nodes {int(src[j])} and {int(dst[j])}, both {side}"
            )
        return int(num_users)
    # The smallest valid U: isolated nodes between the last user and the first item go to items.
    split = int(low.max()) + 1
    if split > int(high.min()):
        j, k = int(np.argmax(low)), int(np.argmin(high))
        raise ValueError(
            "edge_index is not bipartite with the users first (nodes [0, U) users, [U, N) items): "
            f"no U separates the ends of both column {j} (nodes {int(src[j])}, {int(dst[j])}) and "
            f"column {k} (nodes {int(src[k])}, {int(dst[k])}); pass num_users if the split is known"
        )
    return split


def _sorted_keys(keys: np.ndarray, cols: np.ndarray, src, dst, what: str):
    """(order, sorted keys) of one direction's edge keys; duplicates are refused."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    dup = np.flatnonzero(sk[1:] == sk[:-1])
    if dup.size:
        a, b = int(cols[order[dup[0]]]), int(cols[order[dup[0] + 1]])
        raise ValueError(
            f"edge_index has the {what} edge {int(src[a])} -> {int(dst[a])} twice "
            f"(columns {a} and {b}); coalesce it first (torch_geometric.utils.coalesce)"
        )
    return order, sk


def parse_edge_index(
    edge_index, num_users: int | None = None, num_nodes: int | None = None
) -> EdgeIndexLayout:
    """The bipartite graph behind a homogeneous PyG ``edge_index`` [2, n] and its column mapping.

    Nodes ``[0, U)`` are users and ``[U, N)`` items (``N`` = ``num_nodes``, default the largest
    node id + 1; ``U`` = ``num_users``, default the smallest split that makes every edge a
    user-item edge). The edge_index holds each interaction once per direction, or only the
    user -> item copies. ``ValueError`` (naming a column) for a self-loop, an edge between two
    users or two items, a duplicate, or a copy whose reverse is missing.
    """
    if (
        not isinstance(edge_index, torch.Tensor)
        or edge_index.dim() != 2
        or edge_index.shape[0] != 2
    ):
        shape = (
            tuple(edge_index.shape)
            if isinstance(edge_index, torch.Tensor)
            else type(edge_index).__name__
        )
        raise ValueError(f"edge_index must be a [2, num_edges] tensor, got {shape}")
    if edge_index.is_floating_point() or edge_index.is_complex() or edge_index.dtype == torch.bool:
        raise ValueError(f"edge_index must hold integer node ids, got {edge_index.dtype}")
    if edge_index.shape[1] == 0:
        raise ValueError("edge_index has no edges")
    src, dst = edge_index.detach().cpu().to(torch.int64).numpy()
    low, high = np.minimum(src, dst), np.maximum(src, dst)
    if low.min() < 0:
        j = int(np.argmin(low))
        raise ValueError(
            f"edge_index column {j} has a negative node id ({int(src[j])}, {int(dst[j])})"
        )
    if num_nodes is None:
        num_nodes = int(high.max()) + 1
    elif high.max() >= num_nodes:
        j = int(np.argmax(high))
        raise ValueError(
            f"edge_index column {j} refers to node {int(high[j])}, but there are {num_nodes} nodes"
        )
    loops = np.flatnonzero(src == dst)
    if loops.size:
        raise ValueError(
            f"edge_index column {int(loops[0])} is a self-loop on node "
            f"{int(src[loops[0]])}; a user-item graph has none"
        )
    split = _split_point(low, high, num_users, src, dst)
    num_items = int(num_nodes) - split
    forward = np.flatnonzero(src < split)
    backward = np.flatnonzero(src >= split)
    order_f, keys_f = _sorted_keys(
        src[forward] * num_items + (dst[forward] - split), forward, src, dst, "user -> item"
    )
    item_to_user = None
    if backward.size:
        order_b, keys_b = _sorted_keys(
            dst[backward] * num_items + (src[backward] - split), backward, src, dst, "item -> user"
        )
        if not np.array_equal(keys_f, keys_b):
            missing_f = np.flatnonzero(~np.isin(keys_f, keys_b))
            if missing_f.size:
                j = int(forward[order_f[missing_f[0]]])
            else:
                j = int(backward[order_b[np.flatnonzero(~np.isin(keys_b, keys_f))[0]]])
            raise ValueError(
                f"edge_index is not symmetric: column {j} ({int(src[j])} -> "
                f"{int(dst[j])}) has no reverse copy; store every interaction in "
                "both directions (torch_geometric.utils.to_undirected) or only as "
                "user -> item"
            )
        item_to_user = torch.from_numpy(backward[order_b])
    graph = BipartiteGraph.__new__(BipartiteGraph)
    graph._build(keys_f // num_items, keys_f % num_items, split, num_items)
    return EdgeIndexLayout(
        graph, torch.from_numpy(forward[order_f]), item_to_user, torch.from_numpy(order_f)
    )
