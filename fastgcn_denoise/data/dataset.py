"""The in-memory form of a recommendation data set: id spaces, splits, planted/injected noise."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..graph import BipartiteGraph

# Noise types of the generator and of injection (per training pair, 0 = clean): data/noise.py.
NOISE_TYPES = ("popularity", "uniform", "near_topic")
NOISE_CODE = {kind: code for code, kind in enumerate(NOISE_TYPES, start=1)}  # 0 = clean


Pairs = tuple  # (users int64 [n], items int64 [n]) numpy arrays

# Fields holding one value per training pair (same order as ``train``): subsetting train
# subsets them too (``InteractionData.take_train``).
PER_TRAIN_PAIR = ("noise", "noise_type", "train_weight")


@dataclass
class InteractionData:
    """Train / valid / test interactions over contiguous ids ``[0, num_users) x [0, num_items)``.

    ``noise`` marks, per *training* pair (same order as ``train``), the interactions known to be
    noise (planted by the synthetic generator or injected by ``inject_noise``); None when unknown.
    ``noise_type`` (int8, same order, 0 = clean; ``noise.NOISE_CODE``) says which kind of noise
    each flagged pair is, when known (None: flags without types).
    ``user_ids`` / ``item_ids`` hold the original ids (index = contiguous id) when the source used
    arbitrary ids, so exports can be written back in the input's own ids.
    ``train_weight`` (float32, same order, >= 0) weighs each training pair, when set: a
    denoiser's soft keep scores, read by the ``edge-weights`` plug-in (``denoisers/reweight.py``).
    ``features`` maps a modality name to its item content matrix (float32 [num_items, width], row
    i = item i; see ``data/features.py``), or is None when the data set has no content.

    ``meta["warnings"]`` lists, as sentences, what the loaders and splits repaired or found
    suspicious (duplicates dropped, held-out pairs that could not be evaluated, ...; see
    ``data/checks.py``); ``meta["checks"]`` has the counts behind them. The trainer prints the
    warnings and writes them to metrics.json.
    """

    name: str
    num_users: int
    num_items: int
    train: Pairs
    test: Pairs
    valid: Pairs | None = None
    noise: np.ndarray | None = None
    noise_type: np.ndarray | None = None
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    features: dict | None = None
    train_weight: np.ndarray | None = None

    def take_train(self, keep: np.ndarray) -> InteractionData:
        """A copy whose ``train`` (and every per-training-pair field) is ``train[keep]``.

        ``keep``: bool [n_train] or int64 indices. ``meta`` is copied (not shared).
        """
        changes = {"train": (self.train[0][keep], self.train[1][keep]), "meta": dict(self.meta)}
        for name in PER_TRAIN_PAIR:
            values = getattr(self, name)
            if values is not None:
                changes[name] = np.asarray(values)[keep]
        return dataclasses.replace(self, **changes)

    def train_graph(self) -> BipartiteGraph:
        return BipartiteGraph(self.train[0], self.train[1], self.num_users, self.num_items)

    def split_graph(self, split: str) -> BipartiteGraph | None:
        """The ``valid`` or ``test`` interactions as a graph (None if the split is absent or empty)."""
        pairs = getattr(self, split)
        if pairs is None or len(pairs[0]) == 0:
            return None
        return BipartiteGraph(pairs[0], pairs[1], self.num_users, self.num_items)

    def _per_edge(self, values: np.ndarray) -> np.ndarray:
        """Per-training-pair ``values`` in the training graph's edge-id order (a duplicated
        pair keeps its first entry)."""
        key = self.train[0] * self.num_items + self.train[1]
        order = np.argsort(key, kind="stable")
        _, first = np.unique(key[order], return_index=True)
        return np.asarray(values)[order][first]

    def noise_per_edge(self, graph: BipartiteGraph) -> np.ndarray | None:
        """The noise flags in ``graph``'s edge-id order (bool [E]); None when unknown."""
        return None if self.noise is None else self._per_edge(self.noise).astype(bool)

    def weight_per_edge(self, graph: BipartiteGraph) -> np.ndarray | None:
        """``train_weight`` in ``graph``'s edge-id order (float32 [E]); None when unset."""
        return None if self.train_weight is None else self._per_edge(self.train_weight)

    def noise_types_per_edge(self, graph: BipartiteGraph) -> np.ndarray | None:
        """The noise type codes in ``graph``'s edge-id order (int8 [E], 0 = clean); None when the
        noise is unknown. Flags without recorded types count as ``uniform`` (``inject_noise``'s
        default kind)."""
        types = noise_types_of(self)
        return None if types is None else self._per_edge(types)


def noise_types_of(data: InteractionData) -> np.ndarray | None:
    """int8 [n_train] type codes of ``data``'s training pairs (``NOISE_CODE``, 0 = clean); None
    when the noise is unknown. Flags without recorded types count as ``uniform`` (what
    ``inject_noise`` adds by default)."""
    if data.noise is None:
        return None
    if data.noise_type is not None:
        return np.asarray(data.noise_type, dtype=np.int8)
    return np.where(np.asarray(data.noise, dtype=bool), NOISE_CODE["uniform"], 0).astype(np.int8)
