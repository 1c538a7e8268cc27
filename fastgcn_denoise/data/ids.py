"""Id maps shared by the readers and writers: contiguous ids from a file's own, and back."""

from __future__ import annotations

import numpy as np
import torch

from .dataset import InteractionData


def is_int(text: str) -> bool:
    """Whether ``text`` spells an integer (a leading minus allowed)."""
    return text.strip().lstrip("-").isdigit()


# An id space is remapped when a table indexed by id would be mostly unused rows: more than
# SPARSE_RATIO times the ids in use and over SPARSE_SLACK unused (one stray id 30,000,000 among
# ids < 50 would otherwise size a 30M-row embedding table).
SPARSE_RATIO = 4
SPARSE_SLACK = 100_000


def is_sparse(max_id: int, used: int) -> bool:
    """Whether ids in [0, max_id] of which ``used`` occur leave most of an id-indexed table empty."""
    size = int(max_id) + 1
    return size > SPARSE_RATIO * used and size - used > SPARSE_SLACK


def remap_ids(tokens: list) -> tuple[np.ndarray, np.ndarray]:
    """(contiguous ids int64, original ids): integer ids sort numerically, others as strings."""
    arr = np.array(tokens, dtype=str)
    if all(map(is_int, tokens)):
        try:
            as_int = arr.astype(np.int64)
        except OverflowError:  # ids beyond int64 stay strings
            as_int = None
        # Only canonical spellings, so that "007" and "7" stay distinct ids.
        if as_int is not None and np.array_equal(as_int.astype(str), arr):
            arr = as_int
    originals, contiguous = np.unique(arr, return_inverse=True)
    return contiguous.astype(np.int64).ravel(), originals


def as_ids(values, name: str, bound: int) -> np.ndarray:
    """``values`` (array or tensor) as int64 [n] ids in [0, bound); ValueError naming ``name``
    and the first bad entry."""
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"{name} must be a 1-D array of integer ids, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero((arr < 0) | (arr >= bound))
    if bad.size:
        raise ValueError(f"{name}[{int(bad[0])}] = {int(arr[bad[0]])} is outside [0, {bound})")
    return arr


def original_ids(data: InteractionData, users: np.ndarray, items: np.ndarray):
    """(users, items) given in contiguous ids, mapped back to the source's own ids."""
    return (
        users if data.user_ids is None else data.user_ids[users],
        items if data.item_ids is None else data.item_ids[items],
    )
