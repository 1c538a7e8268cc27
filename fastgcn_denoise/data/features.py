"""Item content features: one float32 matrix per modality, row i = item i.

Sources:

- ``--features NAME=path.npy ...`` (``parse_feature_specs`` / ``load_features``): one ``.npy``
  file per modality, a 2-D numeric array with one row per item id;
- found beside a LightGCN ``train.txt``: every ``<name>_feat.npy`` there is modality ``<name>``
  (``find_features``; TikTok's ``image_feat.npy`` and ``audio_feat.npy``);
- the built-in generator (``synthetic_item_features``): each modality a noisy linear view of the
  items' topic profiles, of its own width and noise level.

``attach_features`` checks them against a data set (2-D, finite, the same number of rows in every
modality) and stores them in ``InteractionData.features``. Item ids are the feature rows: a data
set whose largest item id is below the row count has items without interactions (TikTok: 465 of
6,710), and its item count is raised to the rows so those items exist (they can be recommended
from content). Fewer rows than items is an error.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .dataset import InteractionData

FEATURE_SUFFIX = "_feat.npy"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# The built-in data's modalities: (name, width, noise level); see synthetic_item_features.
SYNTHETIC_MODALITIES = (("image", 64, 1.0), ("audio", 32, 2.0))


def _check_name(name: str, where: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"{where}: modality name {name!r} must start with a letter and hold only "
            "letters, digits, '_' or '-'"
        )
    return name


def parse_feature_specs(specs: Sequence[str]) -> dict[str, Path]:
    """``("image=/data/img.npy", "audio=a.npy")`` -> {name: path}, in the given order.

    Raises ValueError for a spec without ``=``, a bad or repeated name, or an empty path.
    """
    if isinstance(specs, str):
        specs = (specs,)
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = str(spec).partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not path:
            raise ValueError(
                f"--features {spec!r}: expected NAME=path.npy (e.g. image=image_feat.npy)"
            )
        _check_name(name, f"--features {spec!r}")
        if name in out:
            raise ValueError(f"--features: modality {name!r} is given twice")
        out[name] = Path(path)
    return out


def find_features(directory: str | os.PathLike) -> dict[str, Path]:
    """{name: path} for every ``<name>_feat.npy`` in ``directory`` (sorted by name; may be empty)."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    found = {}
    for path in sorted(directory.glob(f"*{FEATURE_SUFFIX}")):
        name = path.name[: -len(FEATURE_SUFFIX)]
        if _NAME.match(name):
            found[name] = path
    return found


def check_feature_matrix(name: str, matrix, where: str) -> np.ndarray:
    """``matrix`` as a C-contiguous float32 [rows, width] array; ValueError naming ``where``."""
    arr = np.asarray(matrix)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{where}: modality {name!r} must be a numeric array, got dtype {arr.dtype}"
        )
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{where}: modality {name!r} must be 2-D [items, width] with both sizes "
            f"> 0, got shape {tuple(arr.shape)}"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        row, colm = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"{where}: modality {name!r} has {int(bad.sum())} non-finite values "
            f"(NaN or inf), the first at item {row}, column {colm} "
            f"({arr[row, colm]}); a value larger than float32 holds counts as inf"
        )
    return arr


def load_features(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """{name: float32 [rows, width]} from {name: .npy path}; checked (``check_feature_matrix``)."""
    out = {}
    for name, path in paths.items():
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"features {name}={path}: no such file")
        try:
            raw = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"features {name}={path}: not a readable .npy array ({exc})") from None
        out[name] = check_feature_matrix(name, raw, f"features {name}={path}")
    return out


def attach_features(
    data: InteractionData, features: dict[str, np.ndarray], sources: dict[str, str] | None = None
) -> InteractionData:
    """A copy of ``data`` with ``features`` (checked, rows = item ids) and the item count raised
    to the feature rows when they cover items without interactions (module docstring).

    Data with remapped item ids (``item_ids``: a pairs file) take row ``item_ids[i]`` for item
    ``i``; those original ids must then be integers below the row count.
    """
    if not features:
        return data
    features = {
        _check_name(n, "features"): check_feature_matrix(n, f, "features")
        for n, f in features.items()
    }
    rows = {n: f.shape[0] for n, f in features.items()}
    if len(set(rows.values())) > 1:
        raise ValueError(
            "features: the modalities have different numbers of rows (items): "
            + ", ".join(f"{n} {r}" for n, r in rows.items())
        )
    num_rows = next(iter(rows.values()))
    num_items = data.num_items
    if data.item_ids is not None:
        ids = np.asarray(data.item_ids)
        if ids.dtype.kind not in "iu":
            raise ValueError(
                f"features: data {data.name!r} has non-integer item ids (e.g. "
                f"{ids[0]!r}), so feature rows cannot be matched to items"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= num_rows):
            bad = ids[(ids < 0) | (ids >= num_rows)][0]
            raise ValueError(
                f"features: item id {int(bad)} of data {data.name!r} has no feature "
                f"row (the features have {num_rows} rows)"
            )
        features = {n: np.ascontiguousarray(f[ids]) for n, f in features.items()}
    elif num_rows < num_items:
        raise ValueError(
            f"features: {num_rows} rows, but data {data.name!r} has {num_items} "
            f"items (ids 0..{num_items - 1}); every item id needs a feature row"
        )
    else:
        num_items = num_rows
    meta = dict(
        data.meta,
        features={
            n: {
                "width": int(f.shape[1]),
                **({"source": str(sources[n])} if sources and n in sources else {}),
            }
            for n, f in features.items()
        },
    )
    if num_items != data.num_items:
        meta["items_without_interactions_added"] = num_items - data.num_items
    return dataclasses.replace(data, num_items=num_items, features=features, meta=meta)


def resolve_features(
    data: InteractionData, specs: Sequence[str] = (), source: str | os.PathLike | None = None
) -> InteractionData:
    """``data`` with the features a run asks for: the ``NAME=path.npy`` ``specs`` when given,
    else the ``*_feat.npy`` files beside the source's ``train.txt``, else its own (the built-in
    data's), else none. The training config's ``features`` option calls this."""
    if specs:
        paths = parse_feature_specs(specs)
    elif source is not None and Path(source).is_dir():
        paths = find_features(source)
    else:
        return data
    if not paths:
        return data
    return attach_features(data, load_features(paths), {n: str(p) for n, p in paths.items()})


def synthetic_item_features(
    item_topics: np.ndarray, modalities=SYNTHETIC_MODALITIES, seed: int = 0
) -> dict[str, np.ndarray]:
    """{name: float32 [I, width]}: per modality ``q_i M + noise * N(0, 1)``.

    ``item_topics`` [I, K]: the items' topic profiles (rows sum to 1, mostly one topic). ``M``
    [K, width] has N(0, 1) entries, so each topic is a random direction and an item's signal has
    unit variance per entry when it is on one topic: two items of one topic then have an expected
    cosine of about 1 / (1 + noise^2), items of different topics about 0. ``modalities``: (name,
    width, noise level) triples; modality j draws from its own stream (``seed``, 3, j).
    """
    q = np.asarray(item_topics, dtype=np.float64)
    out = {}
    for j, (name, width, noise) in enumerate(modalities):
        _check_name(name, "synthetic features")
        if int(width) < 1 or not noise >= 0:
            raise ValueError(
                f"synthetic features: modality {name!r} needs width >= 1 and noise "
                f">= 0, got {width}, {noise}"
            )
        rng = np.random.default_rng([seed, 3, j])
        mixing = rng.standard_normal((q.shape[1], int(width)))
        out[name] = (q @ mixing + noise * rng.standard_normal((q.shape[0], int(width)))).astype(
            np.float32
        )
    return out


__all__ = [
    "FEATURE_SUFFIX",
    "SYNTHETIC_MODALITIES",
    "attach_features",
    "check_feature_matrix",
    "find_features",
    "load_features",
    "parse_feature_specs",
    "resolve_features",
    "synthetic_item_features",
]
