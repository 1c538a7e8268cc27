"""The bipartite user-item interaction graph.

Edge id ``e`` is the position of the interaction in CSR(R): user-major, items ascending within a
user. Every per-edge tensor in the project (mask logits, edge weights, exported keep
probabilities) is in this order. CSR(R^T) is kept too, with ``perm`` mapping its positions to edge
ids, so that both propagation directions (and each one's backward) are row-parallel.
"""
from __future__ import annotations

import os

import numpy as np
import torch

_INT_KINDS = "iu"


def _as_int_array(values, name: str) -> np.ndarray:
    """Convert ids to a 1-D int64 numpy array, refusing floats, bools and nested shapes."""
    if isinstance(values, torch.Tensor):
        if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer ids, got a tensor of dtype {values.dtype}")
        arr = values.detach().cpu().numpy()
    else:
        arr = np.asarray(values)
        if arr.dtype == object:
            raise ValueError(f"{name} must be a flat sequence of integer ids")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size and arr.dtype.kind not in _INT_KINDS:
        bad = ""
        if arr.dtype.kind == "f":
            frac = np.nonzero(arr != np.floor(arr))[0]
            if frac.size:
                bad = f" (first non-integer value {float(arr[frac[0]])} at position {int(frac[0])})"
        raise ValueError(f"{name} must hold integer ids, got dtype {arr.dtype}{bad}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds ids too large for int64")
    return arr.astype(np.int64, copy=False)


def _check_range(ids: np.ndarray, bound: int | None, name: str, count_name: str) -> int:
    neg = np.nonzero(ids < 0)[0]
    if neg.size:
        raise ValueError(f"{name}[{int(neg[0])}] = {int(ids[neg[0]])} is negative; ids must be >= 0")
    if bound is None:
        return int(ids.max()) + 1
    if bound <= 0:
        raise ValueError(f"{count_name} must be positive, got {bound}")
    over = np.nonzero(ids >= bound)[0]
    if over.size:
        raise ValueError(
            f"{name}[{int(over[0])}] = {int(ids[over[0]])} is out of range: {count_name} = {bound}")
    return int(bound)


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

    def __init__(self, user_ids, item_ids, num_users: int | None = None, num_items: int | None = None):
        users = _as_int_array(user_ids, "user_ids")
        items = _as_int_array(item_ids, "item_ids")
        if users.shape[0] != items.shape[0]:
            raise ValueError(
                f"user_ids has {users.shape[0]} entries but item_ids has {items.shape[0]}; "
                "they must pair up one interaction per position")
        if users.shape[0] == 0:
            raise ValueError("no interactions: user_ids and item_ids are empty")
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
        """Rebuild from CSR(R) (assumed valid: sorted, deduplicated), e.g. after ``load``."""
        rowptr_u = np.asarray(rowptr_u, dtype=np.int64)
        items = np.asarray(col_item, dtype=np.int64)
        users = np.repeat(np.arange(rowptr_u.shape[0] - 1, dtype=np.int64), np.diff(rowptr_u))
        g = cls.__new__(cls)
        g._build(users, items, rowptr_u.shape[0] - 1, num_items)
        return g

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
            torch.arange(self.num_users, device=self.device), self.deg_u, output_size=self.num_edges)

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
            path, rowptr_u=self.rowptr_u.cpu().numpy(), col_item=self.col_item.cpu().numpy(),
            num_items=np.int64(self.num_items), format=np.array("fastgcn_denoise.BipartiteGraph/1"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BipartiteGraph":
        with np.load(path, allow_pickle=False) as f:
            missing = {"rowptr_u", "col_item", "num_items"} - set(f.files)
            if missing:
                raise ValueError(f"{path}: not a BipartiteGraph file (missing {sorted(missing)})")
            return cls.from_csr(f["rowptr_u"], f["col_item"], int(f["num_items"]))

    def __repr__(self) -> str:
        return (f"BipartiteGraph(num_users={self.num_users}, num_items={self.num_items}, "
                f"num_edges={self.num_edges}, device={self.device})")
