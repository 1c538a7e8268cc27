"""The data fingerprint: what a run was trained on, by content rather than by path or counts.

``data_fingerprint(prep)`` hashes a prepared run's data part by part (SHA-256, hex): for ranking
each split's interactions in canonical order (CSR: user-major, items ascending, deduplicated; the
injected noise and the validation split included, both seeded) with the user and item counts, and
each item content matrix; for classification each split's graphs (pointers, feature ids, labels).
The checkpoint stores it; ``--resume``, ``evaluate`` and ``denoise --checkpoint`` compare it
(``check_same_data``), so a data set that moved is recognised and one with the same counts but
other content is refused.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch

from ..tasks.classification import ClassificationData


def _digest(*arrays) -> str:
    """SHA-256 over the arrays' dtypes, shapes and bytes (ints are hashed as int64 scalars)."""
    h = hashlib.sha256()
    for a in arrays:
        if torch.is_tensor(a):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(np.asarray(a, dtype=np.int64) if isinstance(a, int) else a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def data_fingerprint(prep) -> dict[str, str]:
    """{part: hex digest} of a task's prepared data (module docstring)."""
    if isinstance(prep, ClassificationData):
        return {
            f"{name} graphs": _digest(g.num_features, g.ptr, g.nodes, g.labels)
            for name, g in prep.splits.items()
        }
    parts = {}
    for name in ("train", "valid", "test"):
        graph = getattr(prep, name)
        if graph is not None:
            parts[f"{name} interactions"] = _digest(
                graph.num_users, graph.num_items, *graph.edges()
            )
    for name, matrix in sorted((prep.data.features or {}).items()):
        parts[f"item features {name}"] = _digest(matrix)
    return parts


def check_same_data(saved_info: dict, saved_fingerprint: dict | None, prep, where: str) -> None:
    """ValueError unless ``prep`` is the data the checkpoint at ``where`` (its path) was trained
    on: the same counts, then the same content part by part."""
    info = prep.info
    if {k: saved_info[k] for k in saved_info if k != "name"} != {
        k: info.get(k) for k in saved_info if k != "name"
    }:
        raise ValueError(
            f"data {info['name']!r} ({info}) is not the data the checkpoint was "
            f"trained on ({saved_info}; {where}): another data set, or other "
            "--noise/--seed/--valid-fraction"
        )
    if saved_fingerprint is None:
        warnings.warn(
            f"checkpoint {where} predates data fingerprints: only the counts were checked",
            stacklevel=2,
        )
        return
    now = data_fingerprint(prep)
    differ = [
        part
        for part in sorted(set(saved_fingerprint) | set(now))
        if saved_fingerprint.get(part) != now.get(part)
    ]
    if differ:
        raise ValueError(
            f"data {info['name']!r} is not the data the checkpoint was trained on "
            f"({where}): same counts, other content ({', '.join(differ)} differ)"
        )
