"""The in-memory form of a recommendation data set: id spaces, splits, planted/injected noise."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..graph import BipartiteGraph

Pairs = tuple  # (users int64 [n], items int64 [n]) numpy arrays


@dataclass
class InteractionData:
    """Train / valid / test interactions over contiguous ids ``[0, num_users) x [0, num_items)``.

    ``noise`` marks, per *training* pair (same order as ``train``), the interactions known to be
    noise (planted by the synthetic generator or injected by ``inject_noise``); None when unknown.
    ``user_ids`` / ``item_ids`` hold the original ids (index = contiguous id) when the source used
    arbitrary ids, so exports can be written back in the input's own ids.
    ``features`` maps a modality name to its item content matrix (float32 [num_items, width], row
    i = item i; see ``data/features.py``), or is None when the data set has no content.
    """

    name: str
    num_users: int
    num_items: int
    train: Pairs
    test: Pairs
    valid: Pairs | None = None
    noise: np.ndarray | None = None
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    features: dict | None = None

    def train_graph(self) -> BipartiteGraph:
        return BipartiteGraph(self.train[0], self.train[1], self.num_users, self.num_items)

    def split_graph(self, split: str) -> BipartiteGraph | None:
        """The ``valid`` or ``test`` interactions as a graph (None if the split is absent or empty)."""
        pairs = getattr(self, split)
        if pairs is None or len(pairs[0]) == 0:
            return None
        return BipartiteGraph(pairs[0], pairs[1], self.num_users, self.num_items)

    def noise_per_edge(self, graph: BipartiteGraph) -> np.ndarray | None:
        """The noise flags in ``graph``'s edge-id order (bool [E]); None when unknown."""
        if self.noise is None:
            return None
        key = self.train[0] * self.num_items + self.train[1]
        order = np.argsort(key, kind="stable")
        uniq, first = np.unique(key[order], return_index=True)
        return np.asarray(self.noise)[order][first].astype(bool)
