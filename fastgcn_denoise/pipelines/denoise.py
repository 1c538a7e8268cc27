"""Export what a denoiser judged to be noise: per-interaction keep scores and a cleaned list.

Every denoiser reports ``keep_scores(graph)`` (one score per training interaction and layer,
higher = keep; SGCN's and the mask plug-in's are keep probabilities). Rule (in ``--help`` too):
an interaction is **judged noise** when its keep score is <= ``threshold`` in *every* layer (the
trained model's deterministic masks then never propagate through it: SGCN's ``hard`` masks and
the gumbel mask both drop an edge at keep probability <= 1/2). Interactions held out for
validation were never masked, so they are not judged and stay in the cleaned list.

Files written to ``out``:
    keep_probabilities.csv   user, item (the input's ids), keep_layer1..K, keep_mean, dropped
                             (0/1) and, when the noise is known, noise (its type, or "clean");
                             one row per training interaction the model saw, in edge-id order
    cleaned.<ext>            the training interactions minus the dropped ones, in the input's
                             format and ids (LightGCN ``train.txt`` layout, csv/tsv pairs, or
                             a RecBole ``.inter`` file)
    dropped.<ext>            the dropped interactions, same format
    denoise.json             counts, the rule, warnings, and (when the noise is known, as on the
                             built-in data or with ``--noise``) ROC AUC of 1 - keep_mean against
                             it, the precision/recall of the dropped set, and per noise type its
                             count, how many were dropped and the AUC against the clean ones
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..data.loaders import default_format, original_ids, write_interactions
from ..data.noise import NOISE_CODE, NOISE_TYPES
from .train import restore_run

_EXTENSIONS = {"lightgcn": "txt", "csv": "csv", "tsv": "tsv", "recbole": "inter"}


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count one half).

    The Mann-Whitney form: the probability that a random positive outscores a random negative.
    NaN when one class is absent.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average ranks over runs of equal scores.
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _by_type(keep_mean: np.ndarray, dropped: np.ndarray, types: np.ndarray) -> dict:
    """Per noise type present (and "clean"): its count, how many were dropped, and (types) the ROC
    AUC of 1 - keep_mean against the clean interactions."""
    clean = types == 0
    out = {"clean": {"count": int(clean.sum()), "dropped": int((dropped & clean).sum())}}
    for kind, code in NOISE_CODE.items():
        mine = types == code
        if mine.any():
            sel = clean | mine
            out[kind] = {"count": int(mine.sum()), "dropped": int((dropped & mine).sum()),
                         "roc_auc": roc_auc(1.0 - keep_mean[sel], mine[sel])}
    return out


def denoise_checkpoint(path, out, threshold: float = 0.5, weights: str = "best",
                       fmt: str | None = None, data: str | None = None,
                       device: str | None = None, drop_fraction: float | None = None) -> dict:
    """Write the export described in the module docstring for a denoiser's checkpoint; returns
    the summary (also written as ``out/denoise.json``).

    ``data`` replaces the saved data source (the same data set elsewhere); ``fmt`` the output
    format (default: the input's); ``weights`` "best" (validation-selected) or "last".
    ``drop_fraction`` replaces the threshold rule: the ``round(drop_fraction * E)`` interactions
    with the lowest mean keep score are dropped (for scores that are not calibrated
    probabilities, or to drop an expected noise rate).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if drop_fraction is not None and not 0.0 <= drop_fraction < 1.0:
        raise ValueError(f"drop_fraction must be in [0, 1), got {drop_fraction}")
    if fmt is not None and fmt not in _EXTENSIONS:
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(_EXTENSIONS)}")
    ckpt, _, prep, model = restore_run(path, data, device, weights)
    scores = model.keep_scores(prep.train) if hasattr(model, "keep_scores") else None
    if scores is None:
        raise ValueError(f"checkpoint {str(path)!r} holds a {ckpt['model_name']!r} model, "
                         "which reports no keep scores: train a denoiser (--mask, or s-lightgcn / "
                         "s-ngcf)")
    keep = scores.detach().double().cpu().numpy().reshape(-1, prep.train.num_edges)  # [K, E]
    keep_mean = keep.mean(axis=0)
    if drop_fraction is None:
        dropped = (keep <= threshold).all(axis=0)              # [E]
        rule = f"dropped = keep score <= {threshold} in all {keep.shape[0]} layers"
    else:
        dropped = np.zeros(keep_mean.shape[0], dtype=bool)
        dropped[np.argsort(keep_mean, kind="stable")[:round(drop_fraction * dropped.size)]] = True
        rule = f"dropped = the {drop_fraction:g} of the interactions with the lowest mean keep score"
    users, items = (t.cpu().numpy() for t in prep.train.edges())
    noise = prep.data.noise_per_edge(prep.train)
    types = prep.data.noise_types_per_edge(prep.train)
    warnings = []
    if drop_fraction is not None:
        pass  # the fraction is what was asked for
    elif dropped.all():
        warnings.append(f"threshold {threshold} drops every one of the {dropped.size} training "
                        f"interactions (the highest keep score is {keep.max():.3g}): cleaned.* "
                        "is empty; use a lower --threshold")
    elif not dropped.any():
        warnings.append(f"threshold {threshold} drops no interaction (every interaction scores "
                        f"above it in some layer; the lowest such score is "
                        f"{keep.max(axis=0).min():.3g}); raise --threshold to drop the "
                        "lowest-scored ones")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_ = prep.data
    fmt = fmt or default_format(data_)
    ext = _EXTENSIONS[fmt]
    out_users, out_items = original_ids(data_, users, items)
    with open(out / "keep_probabilities.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        header = ["user", "item"] + [f"keep_layer{k + 1}" for k in range(keep.shape[0])] + \
            ["keep_mean", "dropped"] + ([] if noise is None else ["noise"])
        writer.writerow(header)
        names = np.array(("clean",) + NOISE_TYPES)
        cols = [out_users.tolist(), out_items.tolist()] + \
            [np.round(row, 6).tolist() for row in keep] + \
            [np.round(keep_mean, 6).tolist(), dropped.astype(int).tolist()] + \
            ([] if noise is None else [names[types].tolist()])
        writer.writerows(zip(*cols))

    # The cleaned list: every training interaction of the input minus the dropped ones. When the
    # validation split was taken from train, its (unjudged) interactions belong to the input's
    # training list and are kept; a source's own valid split is not part of it.
    held_out = "validation_split" in data_.meta
    all_u, all_i = data_.train
    if held_out:
        all_u = np.concatenate([all_u, data_.valid[0]])
        all_i = np.concatenate([all_i, data_.valid[1]])
    drop_keys = users[dropped] * data_.num_items + items[dropped]
    keep_rows = ~np.isin(all_u * data_.num_items + all_i, drop_keys)
    write_interactions(data_, all_u[keep_rows], all_i[keep_rows], out / f"cleaned.{ext}", fmt)
    write_interactions(data_, users[dropped], items[dropped], out / f"dropped.{ext}", fmt)

    summary = {
        "checkpoint": str(path), "weights": weights, "model": ckpt["model_name"],
        "data": prep.info["name"], "rule": rule,
        "threshold": None if drop_fraction is not None else threshold,
        "drop_fraction": drop_fraction, "scored": int(len(users)), "dropped": int(dropped.sum()),
        "held_out_for_validation": int(len(data_.valid[0])) if held_out else 0,
        "cleaned": int(keep_rows.sum()), "format": fmt,
        "keep_mean": {"mean": float(keep_mean.mean()), "min": float(keep_mean.min()),
                      "max": float(keep_mean.max())},
        "warnings": warnings,
    }
    if noise is not None:
        hits = int((dropped & noise).sum())
        summary["planted_noise"] = {
            "count": int(noise.sum()),
            "roc_auc": roc_auc(1.0 - keep_mean, noise),
            "roc_auc_per_layer": [roc_auc(1.0 - row, noise) for row in keep],
            "dropped_precision": hits / max(int(dropped.sum()), 1),
            "dropped_recall": hits / max(int(noise.sum()), 1),
            "by_type": _by_type(keep_mean, dropped, types),
        }
    (out / "denoise.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
