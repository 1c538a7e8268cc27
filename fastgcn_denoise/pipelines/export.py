"""The denoising export: keep scores, cleaned and dropped files that add up, counts.

Guarantees (tested on every input format):

* ``cleaned.*`` + ``dropped.*`` = exactly the interactions the user gave, each once: the training
  list of the input (its train file; the held-out validation pairs taken from it are in
  ``cleaned``, unjudged), and for a single interaction file the whole file (its test part, held
  out for the evaluation and not judged, is in ``cleaned``; ``denoise.json`` counts it). A pair
  repeated in the input is written once (the loader's warning says how many).
* Pairs injected by ``--noise`` are no data of the user's: never in ``cleaned`` nor ``dropped``
  (``keep_scores.csv`` marks them; ``denoise.json`` counts how many the rule dropped).
* Output files never replace an input file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..data import load_dataset
from ..data.loaders import default_format, original_ids, write_interactions
from ..data.noise import NOISE_TYPES

EXTENSIONS = {"lightgcn": "txt", "csv": "csv", "tsv": "tsv", "recbole": "inter"}
SCORES_FILE = "keep_probabilities.csv"


def given_pairs(config, data) -> tuple[np.ndarray, np.ndarray, dict]:
    """The interactions the user gave, in ``data``'s contiguous ids: (users, items, info).

    Reloaded from ``config.data`` without injected noise and keeping held-out pairs of unseen
    items (the run's own data drops those from test): the training list, plus for a single file
    its test part (``info["test_in_cleaned"]`` counts it).
    """
    generator = (
        {}
        if config.data is not None
        else {"clean_validation": config.valid_fraction if config.validation == "clean" else 0.0}
    )
    if config.min_rating is not None:
        generator["min_rating"] = config.min_rating
    source = load_dataset(config.data, seed=config.seed, unseen="keep", **generator)
    if source.num_users != data.num_users or source.num_items > data.num_items:
        raise ValueError(
            f"data {config.data!r} has {source.num_users} users x "
            f"{source.num_items} items, the run {data.num_users} x {data.num_items}: "
            "not the data the run was trained on"
        )
    users, items = (np.asarray(a, dtype=np.int64) for a in source.train)
    info = {"test_in_cleaned": 0}
    if "test_split" in source.meta:  # one file, split here: its test part is the user's too
        tu, ti = (np.asarray(a, dtype=np.int64) for a in source.test)
        users, items = np.concatenate([users, tu]), np.concatenate([items, ti])
        info["test_in_cleaned"] = int(tu.shape[0])
    return users, items, info


def refuse_overwrite(out: Path, source, names) -> None:
    """ValueError when writing ``names`` under ``out`` would replace a file of the input."""
    if source is None:
        return
    src = Path(source).resolve()
    inputs = {src} if src.is_file() else {p.resolve() for p in src.glob("*") if p.is_file()}
    for name in names:
        target = (Path(out) / name).resolve()
        if target in inputs:
            raise ValueError(
                f"--out {out}: writing {name} would overwrite the input file "
                f"{target}; choose another --out"
            )


def write_export(
    data,
    given: tuple,
    graph_pairs: tuple,
    keep: np.ndarray,
    dropped: np.ndarray,
    out,
    fmt: str | None,
    types: np.ndarray | None,
    weight: np.ndarray | None = None,
) -> dict:
    """Write keep_probabilities.csv, cleaned.<ext> and dropped.<ext>; return the counts.

    Args:
        data: the run's ``InteractionData`` (ids, format). given: (users, items) from
            ``given_pairs``. graph_pairs: (users, items) [E] of the scored training edges.
        keep: [K, E] keep scores. dropped: bool [E]. types: noise type codes [E] or None.
        weight: the training weight of each edge [E] (``denoise --action weight``) or None.
    """
    fmt = fmt or default_format(data)
    if fmt not in EXTENSIONS:
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(EXTENSIONS)}")
    ext = EXTENSIONS[fmt]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    users, items = graph_pairs
    gu, gi = given
    n_items = data.num_items
    edge_keys = users * n_items + items
    given_keys = gu * n_items + gi
    injected = ~np.isin(edge_keys, given_keys)
    gone = np.isin(given_keys, edge_keys[dropped])
    write_interactions(data, gu[~gone], gi[~gone], out / f"cleaned.{ext}", fmt)
    write_interactions(data, gu[gone], gi[gone], out / f"dropped.{ext}", fmt)

    out_users, out_items = original_ids(data, users, items)
    names = np.array(("clean",) + NOISE_TYPES)
    with open(out / SCORES_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        layers = [f"keep_layer{k + 1}" for k in range(keep.shape[0])] if keep.shape[0] > 1 else []
        writer.writerow(
            ["user", "item"]
            + layers
            + ["keep_mean", "dropped"]
            + ([] if weight is None else ["weight"])
            + ([] if types is None else ["noise"])
            + (["injected"] if injected.any() else [])
        )
        cols = [out_users.tolist(), out_items.tolist()]
        cols += [np.round(row, 6).tolist() for row in keep] if keep.shape[0] > 1 else []
        cols += [np.round(keep.mean(0), 6).tolist(), dropped.astype(int).tolist()]
        cols += [] if weight is None else [np.round(weight, 6).tolist()]
        cols += [] if types is None else [names[types].tolist()]
        cols += [injected.astype(int).tolist()] if injected.any() else []
        writer.writerows(zip(*cols))
    return {
        "format": fmt,
        "given": int(gu.shape[0]),
        "cleaned": int((~gone).sum()),
        "dropped_given": int(gone.sum()),
        "injected": int(injected.sum()),
        "injected_dropped": int((injected & dropped).sum()),
        "files": {"scores": SCORES_FILE, "cleaned": f"cleaned.{ext}", "dropped": f"dropped.{ext}"},
    }
