"""Feature graphs (L0-SIGN): one small graph per sample, its nodes the sample's features.

File format (the L0-SIGN data sets, e.g. ``../shared/data/l0sign/twitter.data``): one graph per
line, ``label node node ...``, whitespace separated. The label is 0 or 1 (written ``0.0``/``1.0``
in the published files); nodes are global, non-negative integer feature ids. A line may have no
nodes (an empty graph); blank lines are skipped. A feature may appear twice in one line (DBLP
does this for 3,859 of its graphs): each occurrence is a node of its own, as in the official
code, which builds one graph node per listed feature.

In memory a set of graphs is CSR-like: ``ptr`` [G + 1] (graph g's nodes are
``nodes[ptr[g]:ptr[g + 1]]``), ``nodes`` [N] feature ids, ``labels`` [G].
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .ids import is_sparse
from .text import BOM

SPLIT_FRACTIONS = (0.7, 0.15, 0.15)  # the paper's random train / valid / test split


@dataclass
class FeatureGraphBatch:
    """A batch of graphs as int64/float tensors on one device (the all-pairs op's input).

    ``ptr`` [B + 1], ``nodes`` [N] (feature ids), ``labels`` [B] float32 (0/1), ``index`` [B]
    the graphs' positions in the set they came from.
    """

    ptr: torch.Tensor
    nodes: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor

    @property
    def num_graphs(self) -> int:
        return int(self.ptr.shape[0]) - 1

    @functools.cached_property
    def num_pairs(self) -> int:
        """Pairs i <= j over the graphs, sum of k(k+1)/2 (once per batch, on the host)."""
        k = np.diff(self.ptr.cpu().numpy())
        return int((k * (k + 1) // 2).sum())

    def to(self, device) -> "FeatureGraphBatch":
        return FeatureGraphBatch(
            *(t.to(device) for t in (self.ptr, self.nodes, self.labels, self.index))
        )


@dataclass
class FeatureGraphs:
    """Graphs over a shared feature space ``[0, num_features)`` (numpy arrays)."""

    name: str
    ptr: np.ndarray  # int64 [G + 1]
    nodes: np.ndarray  # int64 [N]
    labels: np.ndarray  # float32 [G], 0 or 1
    num_features: int

    def __post_init__(self):
        ptr, nodes = self.ptr, self.nodes
        if (
            ptr.ndim != 1
            or ptr.shape[0] < 1
            or ptr[0] != 0
            or ptr[-1] != nodes.shape[0]
            or (np.diff(ptr) < 0).any()
        ):
            raise ValueError(
                f"{self.name}: ptr must start at 0, be non-decreasing and end at "
                f"the number of nodes ({nodes.shape[0]})"
            )
        if self.labels.shape != (ptr.shape[0] - 1,):
            raise ValueError(
                f"{self.name}: {self.labels.shape[0]} labels for {ptr.shape[0] - 1} graphs"
            )
        if nodes.size and (nodes.min() < 0 or nodes.max() >= self.num_features):
            raise ValueError(f"{self.name}: feature ids must lie in [0, {self.num_features})")

    @property
    def num_graphs(self) -> int:
        return int(self.ptr.shape[0]) - 1

    def sizes(self) -> np.ndarray:
        """int64 [G]: nodes per graph."""
        return np.diff(self.ptr)

    def subset(self, index, name: str | None = None) -> "FeatureGraphs":
        """The graphs ``index`` (int array, in that order) as a new set over the same features."""
        index = np.asarray(index, dtype=np.int64)
        ptr, nodes = _gather_segments(self.ptr, self.nodes, index)
        return FeatureGraphs(name or self.name, ptr, nodes, self.labels[index], self.num_features)

    def batch(self, index, device=None) -> FeatureGraphBatch:
        """The graphs ``index`` as a ``FeatureGraphBatch`` on ``device``."""
        index = np.asarray(index, dtype=np.int64)
        ptr, nodes = _gather_segments(self.ptr, self.nodes, index)
        return FeatureGraphBatch(
            torch.from_numpy(ptr),
            torch.from_numpy(nodes),
            torch.from_numpy(self.labels[index]),
            torch.from_numpy(index),
        ).to(device or "cpu")

    def batches(self, batch_size: int, order=None, device=None):
        """Yield ``FeatureGraphBatch`` es of ``batch_size`` graphs in ``order`` (default 0..G-1)."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        order = np.arange(self.num_graphs) if order is None else np.asarray(order, dtype=np.int64)
        for start in range(0, order.shape[0], batch_size):
            yield self.batch(order[start : start + batch_size], device)

    def split(self, seed: int, fractions=SPLIT_FRACTIONS) -> dict[str, "FeatureGraphs"]:
        """{'train', 'valid', 'test'}: a seeded random split (``split_indices``)."""
        return {
            name: self.subset(idx, f"{self.name}/{name}")
            for name, idx in split_indices(self.num_graphs, seed, fractions).items()
        }


def _gather_segments(ptr: np.ndarray, nodes: np.ndarray, index: np.ndarray):
    """(ptr, nodes) of the segments ``index`` of a CSR, concatenated in that order."""
    if index.size and (index.min() < 0 or index.max() >= ptr.shape[0] - 1):
        raise ValueError(f"graph index out of range [0, {ptr.shape[0] - 1})")
    sizes = ptr[index + 1] - ptr[index]
    new_ptr = np.zeros(index.shape[0] + 1, dtype=np.int64)
    np.cumsum(sizes, out=new_ptr[1:])
    # Position n of the result comes from ptr[graph] + (n - new_ptr[graph's slot]).
    shift = np.repeat(ptr[index] - new_ptr[:-1], sizes)
    return new_ptr, nodes[np.arange(new_ptr[-1], dtype=np.int64) + shift]


def split_indices(num_graphs: int, seed: int, fractions=SPLIT_FRACTIONS) -> dict[str, np.ndarray]:
    """A seeded random partition of ``range(num_graphs)`` into train / valid / test.

    The first two parts get ``round(fraction * G)`` graphs, the test part the rest; each part's
    indices are in their random order. The official code shuffles without a seed; ours is seeded.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(
            f"split fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    perm = np.random.default_rng(seed).permutation(num_graphs)
    n_train = int(round(fractions[0] * num_graphs))
    n_valid = min(int(round(fractions[1] * num_graphs)), num_graphs - n_train)
    return {
        "train": perm[:n_train],
        "valid": perm[n_train : n_train + n_valid],
        "test": perm[n_train + n_valid :],
    }


def load_feature_graphs(path, num_features: int | None = None) -> FeatureGraphs:
    """Read a ``label node node ...`` file (module docstring).

    ``num_features`` defaults to the largest feature id + 1. Feature ids far sparser than their
    count (``ids.is_sparse``: e.g. one id 1e11 among ids < 1000) are refused rather than sizing
    an embedding table with a row per id up to the largest; not remapped, because the ids are the
    features' names in the pair-gate exports and in other files over the same feature space.
    A UTF-8 BOM is skipped. Errors name the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (expected one graph per line: label node node ...)")
    labels, sizes, chunks, lines = [], [], [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            tokens = (raw.removeprefix(BOM) if number == 1 else raw).split()
            if not tokens:
                continue
            try:
                label = float(tokens[0])
            except ValueError:
                raise ValueError(
                    f"{path}, line {number}: label {tokens[0].decode(errors='replace')!r}"
                    " is not a number (expected 0 or 1)"
                ) from None
            if label not in (0.0, 1.0):
                raise ValueError(
                    f"{path}, line {number}: label {tokens[0].decode(errors='replace')!r}"
                    " is not 0 or 1 (binary classification)"
                )
            try:
                ids = np.array(tokens[1:], dtype=np.int64)
            except (ValueError, OverflowError):
                bad = next(t for t in tokens[1:] if not t.isdigit())
                raise ValueError(
                    f"{path}, line {number}: node {bad.decode(errors='replace')!r} is "
                    "not a non-negative integer feature id"
                ) from None
            if ids.size and ids.min() < 0:
                raise ValueError(
                    f"{path}, line {number}: node {int(ids.min())} is negative "
                    "(feature ids are non-negative integers)"
                )
            labels.append(label)
            lines.append(number)
            sizes.append(ids.shape[0])
            chunks.append(ids)
    if not labels:
        raise ValueError(f"{path}: no graphs (expected one graph per line: label node node ...)")
    ptr = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=ptr[1:])
    nodes = np.concatenate(chunks) if ptr[-1] else np.zeros(0, dtype=np.int64)
    largest = int(nodes.max()) + 1 if nodes.size else 0
    if num_features is None:
        used = np.unique(nodes).size
        if nodes.size and is_sparse(largest - 1, used):
            line = lines[int(np.searchsorted(ptr, int(np.argmax(nodes)), side="right")) - 1]
            raise ValueError(
                f"{path}, line {line}: feature id {largest - 1:,}, but only {used:,} "
                f"distinct features occur: a table indexed by id would need "
                f"{largest:,} rows; renumber the features 0..{used - 1}"
            )
        num_features = largest
    elif largest > num_features:
        raise ValueError(f"{path}: feature id {largest - 1} is outside [0, {num_features})")
    return FeatureGraphs(
        path.stem, ptr, nodes, np.asarray(labels, dtype=np.float32), int(num_features)
    )


__all__ = [
    "FeatureGraphBatch",
    "FeatureGraphs",
    "SPLIT_FRACTIONS",
    "load_feature_graphs",
    "split_indices",
]
