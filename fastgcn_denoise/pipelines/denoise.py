"""Denoising that pays off: detect -> clean -> retrain, and the export of what was judged noise.

The pipeline (``denoise``, the default of ``fastgcn-denoise denoise``):

1. **baseline**: the backbone (``config``: LightGCN by default) trained on the data as given
   (noise included); its validation and test metrics are the "before";
2. **detect**: a detector (``detect.DETECTORS``) gives every training interaction a keep score;
3. **clean + retrain**, by ``action``:
   - ``weight`` (default): every training pair gets the rank r of its keep score among its
     user's pairs, in (0, 1] (``denoisers.ranking.within_user``), and the backbone is retrained
     once per ``Weighting`` of ``weightings``: weight min(1, r / knee) in its propagation
     (``denoisers.reweight``, plug-in ``edge-weights``), and with ``loss`` in its BPR loss too
     (each triple weighs its positive pair's weight), or the posterior weight 1 - P(noise | the
     pair's keep score) (``detect.noise_posterior``, from the auto detector's calibration). The
     defaults (``default_weightings``): the ramp of knee 0.5 (the upper half of each user's
     pairs at 1) and the posterior weights, each in both the propagation and the loss;
   - ``drop``: for each drop fraction of ``grid``, the lowest-scored interactions are dropped
     (``clean.lowest_k``: seeded tie order, per-user/per-item floor) and the backbone is
     retrained on the cleaned graph;
   the candidate with the best *validation* metrics wins (``validation_choice``: recall and
   NDCG at every k, each relative to the candidates' mean, summed), the baseline included, so a
   graph the action does not help is left alone. Never test, never the known noise. A fixed
   ``drop_fraction`` skips the choice;
4. **export** (``export.write_export``): keep scores, cleaned.* and dropped.* in the input's
   format and ids, and ``denoise.json`` with the chosen fraction, every grid point's validation
   and test metrics, the retrained model's beside the baseline's, the timings and, when the noise
   is known (built-in data, ``--noise``), the detector's ROC AUC against it.

``denoise_checkpoint`` exports the keep scores of an already trained denoiser's checkpoint
(SGCN's or the mask plug-in's masks) with a threshold or a drop fraction, without retraining.

Files written to ``out``:
    keep_probabilities.csv   user, item (the input's ids), keep_layer1..K (denoisers with K
                             layers), keep_mean, dropped (0/1), weight (the weighted model's,
                             when it won), noise (its type or "clean", when known), injected (1
                             for pairs added by --noise)
    cleaned.<ext>, dropped.<ext>   see ``export``: together exactly the user's interactions
                             (with the weight action nothing is dropped)
    denoise.json             the summary
    baseline/, detector-*/, retrain-F/, retrain-weight[-kKNEE|-posterior][-loss]/   the runs
                             (checkpoints, logs, metrics; retrain-weight*/data.npz holds the
                             weights)

With ``resume`` a run folder that holds a checkpoint is resumed (a finished one is only evaluated
again), so an interrupted pipeline, or one that gains a candidate, trains only what is missing;
the export is written anew.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..data import save_npz
from ..data.noise import NOISE_CODE
from ..denoisers.ranking import within_user
from . import export
from .clean import lowest_k
from .detect import DETECTORS, calibrate, detect, posterior_weights
from .train import restore_run, train_or_resume

# Why auto (topic or knn-topic, whichever ranks uniform non-pairs added to the graph lowest;
# detect.calibrate), cut within each user: no single detector ranks the noise best
# everywhere. topic (a PLSA topic model's P̂(i | u) of each pair without itself, over d_i^beta;
# denoisers/topic.py) is the best of the untrained detectors on the built-in data and the Yelp
# split, knn-topic (item-kNN and the topic model, ranks averaged) on the Gowalla subsample:
# within-user ROC AUC against 10 % injected uniform noise, seed 0, 0.872 / 0.866 built-in,
# 0.872 / 0.836 Yelp, 0.926 / 0.945 Gowalla (knn-spectral, item-kNN, spectral and the trained
# detectors trail these two: docs/denoising.md). The calibration chose topic in all 12 Yelp
# runs of the scoreboards and 9 of the 12 built-in ones, knn-topic in 11 of the 12 Gowalla
# ones; the Gowalla rows went from 19 % / 45 % / 24 % of the gap (topic) to 36 % / 57 % / 27 %.
# A cut of the lowest-scored pairs (--action drop) recovered at most 39 % / 63 % / 60 % on the
# built-in data with topic.
DEFAULT_DETECTOR = "auto"
DEFAULT_GRID = (0.1, 0.2)
# Below this noise rate, as the auto detector estimates it (detect.noise_rate), the pipeline
# keeps the baseline and trains nothing more. Why: on a clean log a retrain can only lose, yet
# validation, a tenth of the log's pairs, took a weighted model on 2 of the 3 clean Gowalla
# subsamples and cost 1.1 % of test recall on average (one seed -3.4 %). The estimate there is
# 0.2-0.6 % on the clean graph (3 seeds) against 6.8-19 % on the noisy ones (seed 0); the
# built-in data's and Yelp's clean graphs read 6.2 % and 8.6 % (their detectors describe those
# logs less well) and are weighted as before.
CLEAN_BELOW = 0.02
# Why weight (module docstring, 3.; figures with the topic detector, the default then): over 3
# seeds of the built-in data (bench/results/denoise_scoreboard.json) retraining with each pair
# weighted recovered 167 % / 121 % / 150 % of the noisy-to-clean gap at uniform 10 % / 20 % and
# popularity 10 %, against 39 % / 63 % / 60 % for the best cut of the drop grid, and lifted the
# clean graph by 1.6 % (the cut: -0.7 %); on the Yelp split 155 % / 97 % at uniform /
# popularity 10 % (drop: 33 % / -25 %). Today's figures: docs/denoising.md.
# Why these two weightings (``Weighting``), both in the propagation and the BPR loss: on real
# data the noisy positives left in the loss cost more than the propagation's mistakes (Yelp
# uniform 20 %, seed 0: the oracle's 0/1 weights in the propagation only 0.0689, the rank
# weights in the loss too 0.0704, the oracle 0.0741), and both leave the likely-clean pairs at or
# near 1 (the rank weights in the loss cost the clean Yelp graph 0.0761 -> 0.0742). Knees tried
# with the loss weighted (seed 0): 0.5 was the best on 5 of the 6 noisy rows of Gowalla and the
# built-in data. The default before had the rank weights in the propagation (knee 1) and the
# ramp, chosen on validation Recall@20; the posterior in place of knee 1, chosen on every
# validation metric (``validation_choice``), 3 seeds of each scoreboard (gap recovered at uniform
# 10 % / 20 % / popularity 10 %, clean change): Gowalla 36 / 57 / 27 % -> 61 / 57 / 27 %, Yelp
# 155 / 36 / 97 %, +2.0 % -> 294 / 49 / 141 %, +1.7 %, built-in 167 / 121 / 122 %, +1.8 % ->
# 132 / 112 / 115 %, +1.6 %; two more Gowalla seeds at the three noisy settings: the same
# test recall in 5 runs of 6, +0.0020 in the sixth (docs/denoising.md).
ACTIONS = ("weight", "drop")
DEFAULT_ACTION = "weight"


@dataclasses.dataclass(frozen=True)
class Weighting:
    """One weighted retrain of the weight action: a pair of within-user rank r in (0, 1] weighs
    min(1, r / knee) in the propagation, and with ``loss`` in the BPR loss too; or, with
    ``posterior``, 1 - P(noise | its keep score) (``detect.noise_posterior``: the calibration's
    added pairs are a sample of noise and its noise-rate estimate the prior; knee unused).

    knee 1 weighs every pair by its rank; a smaller knee leaves the top 1 - knee of each user's
    pairs at 1 and ramps the rest down to 1 / (n knee), so the likely-clean pairs keep their
    full weight in the loss. The posterior weights leave most pairs near 1 and take the weight
    from those scored like the added non-pairs, in proportion to the noise the log seems to hold.
    """

    knee: float = 1.0
    loss: bool = False
    posterior: bool = False

    def __post_init__(self):
        if not 0.0 < self.knee <= 1.0:
            raise ValueError(f"--weighting knee {self.knee:g}: must be in (0, 1]")

    @classmethod
    def parse(cls, text: str) -> "Weighting":
        """``KNEE`` or ``posterior`` (propagation only), ``KNEE:loss`` or ``posterior:loss``
        (propagation and loss), e.g. ``0.5:loss``."""
        knee, _, where = text.partition(":")
        if where not in ("", "loss"):
            raise ValueError(
                f"--weighting {text!r}: expected KNEE, KNEE:loss, posterior or posterior:loss, "
                "e.g. 0.5:loss"
            )
        if knee == "posterior":
            return cls(loss=where == "loss", posterior=True)
        try:
            value = float(knee)
        except ValueError:
            raise ValueError(
                f"--weighting {text!r}: the knee must be a number in (0, 1] or 'posterior', "
                "e.g. 0.5:loss"
            ) from None
        return cls(value, where == "loss")

    def weights(self, ranked: np.ndarray, clean_probability: np.ndarray | None = None):
        """float64 [E]: the pairs' weights from their within-user ranks ``ranked`` [E], or with
        ``posterior`` the pairs' ``clean_probability`` [E] (``detect.posterior_weights``)."""
        if self.posterior:
            if clean_probability is None:
                raise ValueError("posterior weights need the calibration's noise posterior")
            return np.asarray(clean_probability, dtype=np.float64)
        return np.minimum(1.0, np.asarray(ranked, dtype=np.float64) / self.knee)

    @classmethod
    def of(cls, row: dict) -> "Weighting":
        """The weighting of a weight row of the pipeline's grid (or of its summary)."""
        if row.get("posterior"):
            return cls(loss=bool(row.get("loss_weights")), posterior=True)
        return cls(row.get("knee") or 1.0, bool(row.get("loss_weights")))

    @property
    def source(self) -> str | float:
        """What its weights are computed from: "posterior" or the knee (weightings that share
        it share their weights)."""
        return "posterior" if self.posterior else self.knee

    @property
    def run_name(self) -> str:
        """Its run folder (knee 1: the names of the runs before knees existed, so they resume)."""
        what = "-posterior" if self.posterior else f"-k{self.knee:g}" * (self.knee != 1.0)
        return "retrain-weight" + what + "-loss" * self.loss

    def __str__(self) -> str:
        return ("posterior" if self.posterior else f"{self.knee:g}") + ":loss" * self.loss


DEFAULT_WEIGHTINGS = (Weighting(0.5, True), Weighting(loss=True, posterior=True))
# A detector that needs the baseline or a training has no calibration for the posterior: the rank
# weights in the propagation take its place (the default before the posterior).
DEFAULT_WEIGHTINGS_TRAINED = (Weighting(0.5, True), Weighting(1.0, False))


def default_weightings(detector: str) -> tuple:
    """The weight action's candidates when none are given, for ``detector``."""
    return DEFAULT_WEIGHTINGS if DETECTORS[detector].training_free else DEFAULT_WEIGHTINGS_TRAINED


def validation_choice(runs: list[dict]) -> dict:
    """The run of ``runs`` (each with a "valid" dict of metrics and its drop "fraction") that
    validation prefers: the largest sum over the validation metrics (recall and NDCG at every
    k) of each run's value divided by the runs' mean of it; ties go to the smaller fraction.

    Why every metric and not the headline alone: the candidates often differ by less than one
    metric's noise on a validation split of a tenth of the log (validation Recall@20 has a
    standard error of about 0.0035 on the Gowalla subsample), and the metrics at other k and
    NDCG carry part of the signal with partly independent noise. Only the metrics every run reports count
    (the runs of one pipeline share their config, so they all do)."""
    shared = set.intersection(*({m for m, v in r["valid"].items() if v is not None} for r in runs))
    means = {m: sum(r["valid"][m] for r in runs) / len(runs) for m in sorted(shared)}
    means = {m: mean for m, mean in means.items() if mean > 0}

    def score(run):
        return sum(run["valid"][m] / mean for m, mean in means.items())

    return max(runs, key=lambda r: (score(r), -r["fraction"]))


def chosen_kind(run: dict) -> str:
    """ "weighted", "drop" or "baseline": what a grid row of the pipeline is (rows of records from
    before the weight action have no "action": a fraction > 0 was a drop)."""
    if run.get("action") == "weight":
        return "weighted"
    return "drop" if run["fraction"] > 0 else "baseline"


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
            out[kind] = {
                "count": int(mine.sum()),
                "dropped": int((dropped & mine).sum()),
                "roc_auc": roc_auc(1.0 - keep_mean[sel], mine[sel]),
            }
    return out


def _noise_report(keep: np.ndarray, dropped: np.ndarray, types) -> dict | None:
    """ROC AUC of 1 - keep [K, E] against the known noise, the dropped set's precision/recall
    (None when no interaction is known to be noise)."""
    if types is None or not (types > 0).any():
        return None
    noise = types > 0
    keep_mean = keep.mean(0)
    hits = int((dropped & noise).sum())
    return {
        "count": int(noise.sum()),
        "roc_auc": roc_auc(1.0 - keep_mean, noise),
        "roc_auc_per_layer": [roc_auc(1.0 - row, noise) for row in keep],
        "dropped_precision": hits / max(int(dropped.sum()), 1),
        "dropped_recall": hits / max(int(noise.sum()), 1),
        "by_type": _by_type(keep_mean, dropped, types),
    }


def _check_out(out: Path, config) -> None:
    export.refuse_overwrite(
        out,
        config.data,
        [
            "cleaned.txt",
            "cleaned.csv",
            "cleaned.tsv",
            "cleaned.inter",
            "dropped.txt",
            "dropped.csv",
            "dropped.tsv",
            "dropped.inter",
            export.SCORES_FILE,
            "denoise.json",
        ],
    )


def _write_summary(out: Path, summary: dict) -> dict:
    (out / "denoise.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def denoise_checkpoint(
    path,
    out,
    threshold: float = 0.5,
    weights: str = "best",
    fmt: str | None = None,
    data: str | None = None,
    device: str | None = None,
    drop_fraction: float | None = None,
    seed: int = 0,
    floor: bool = True,
) -> dict:
    """Export a denoiser checkpoint's keep scores (module docstring); returns the summary (also
    written as ``out/denoise.json``).

    Rule: an interaction is judged noise when its keep score is <= ``threshold`` in every layer
    (the deterministic masks then never propagate through it), or with ``drop_fraction`` the
    share with the lowest mean keep score (``clean.lowest_k``: ``seed`` orders ties, ``floor``
    keeps each user's and item's last pair). ``data`` replaces the saved data source (the same
    data set elsewhere); ``fmt`` the output format (default: the input's); ``weights`` "best"
    (validation-selected) or "last".
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"--threshold {threshold}: must be in (0, 1)")
    if drop_fraction is not None and not 0.0 <= drop_fraction < 1.0:
        raise ValueError(f"--drop-fraction {drop_fraction}: must be in [0, 1)")
    if fmt is not None and fmt not in export.EXTENSIONS:
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(export.EXTENSIONS)}")
    ckpt, config, prep, model = restore_run(path, data, device, weights)
    scores = model.keep_scores(prep.train) if hasattr(model, "keep_scores") else None
    if scores is None:
        raise ValueError(
            f"checkpoint {str(path)!r} holds a {ckpt['model_name']!r} model, "
            "which reports no keep scores: train a denoiser (--mask, or s-lightgcn / "
            "s-ngcf)"
        )
    out = Path(out)
    _check_out(out, config)
    keep = scores.detach().double().cpu().numpy().reshape(-1, prep.train.num_edges)  # [K, E]
    keep_mean = keep.mean(axis=0)
    users, items = (t.cpu().numpy() for t in prep.train.edges())
    warnings, protected = [], 0
    if drop_fraction is None:
        dropped = (keep <= threshold).all(axis=0)  # [E]
        rule = f"dropped = keep score <= {threshold} in all {keep.shape[0]} layers"
        if dropped.all():
            warnings.append(
                f"threshold {threshold} drops every one of the {dropped.size} "
                f"training interactions (the highest keep score is "
                f"{keep.max():.3g}): cleaned.* is empty; use a lower --threshold"
            )
        elif not dropped.any():
            warnings.append(
                f"threshold {threshold} drops no interaction (every interaction "
                f"scores above it in some layer; the lowest such score is "
                f"{keep.max(axis=0).min():.3g}); raise --threshold to drop the "
                "lowest-scored ones"
            )
    else:
        dropped, info = lowest_k(
            keep_mean,
            users,
            items,
            prep.data.num_users,
            prep.data.num_items,
            drop_fraction,
            seed,
            floor,
        )
        warnings += info["warnings"]
        protected = info["protected"]
        rule = (
            f"dropped = the {drop_fraction:g} of the interactions with the lowest mean keep "
            "score" + (" (each user and item keeps a training pair)" if floor else "")
        )
    types = prep.data.noise_types_per_edge(prep.train)
    given = export.given_pairs(config, prep.data)
    counts = export.write_export(
        prep.data, given[:2], (users, items), keep, dropped, out, fmt, types
    )
    summary = {
        "checkpoint": str(path),
        "weights": weights,
        "model": ckpt["model_name"],
        "data": prep.info["name"],
        "rule": rule,
        "threshold": None if drop_fraction is not None else threshold,
        "drop_fraction": drop_fraction,
        "scored": len(users),
        "dropped": int(dropped.sum()),
        "protected": protected,
        "held_out_for_validation": len(prep.data.valid[0])
        if "validation_split" in prep.data.meta
        else 0,
        **counts,
        **given[2],
        "keep_mean": {
            "mean": float(keep_mean.mean()),
            "min": float(keep_mean.min()),
            "max": float(keep_mean.max()),
        },
        "warnings": warnings,
    }
    noise = _noise_report(keep, dropped, types)
    if noise is not None:
        summary["planted_noise"] = noise
    return _write_summary(out, summary)


def _metrics(result: dict, headline: str) -> dict:
    """The headline metrics of a training result: {"valid": {...}, "test": {...}}."""
    keep = [k for k in result["test"] if k.startswith(("recall@", "ndcg@"))]
    valid = result.get("valid") or {}
    return {
        "valid": {k: valid[k] for k in keep if k in valid},
        "test": {k: result["test"][k] for k in keep},
        "headline": headline,
    }


def _run_name(row: dict) -> str:
    if row.get("action") == "weight":
        return Weighting.of(row).run_name
    return "baseline" if row["fraction"] == 0 else f"retrain-{row['fraction']:g}"


def _in_data_order(prep, per_edge: np.ndarray) -> np.ndarray:
    """Per-edge values [E] (the training graph's edge-id order) as per training pair of
    ``prep.data`` (its ``train`` order; a duplicated pair gets its edge's value)."""
    users, items = (t.cpu().numpy() for t in prep.train.edges())
    edge_keys = users * prep.data.num_items + items
    order = np.argsort(edge_keys, kind="stable")
    train_keys = prep.data.train[0] * prep.data.num_items + prep.data.train[1]
    at = order[np.searchsorted(edge_keys, train_keys, sorter=order)]
    if not np.array_equal(edge_keys[at], train_keys):
        raise RuntimeError("the training graph lacks some training pairs of the data")
    return np.asarray(per_edge, dtype=np.float32)[at]


def _retrain(config, data, folder: Path, plugins: dict | None = None, resume: bool = False):
    """Train ``config``'s backbone on ``data`` (saved as ``folder/data.npz``) into ``folder``
    (resumed as ``train_or_resume``); (the training result, seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(data, folder / "data.npz")
    t0 = time.perf_counter()
    # the npz holds the split data, its noise and features: nothing is loaded or added again
    res = train_or_resume(
        dataclasses.replace(
            config,
            data=str(folder / "data.npz"),
            noise=0.0,
            min_rating=None,
            features=(),
            out=str(folder),
            plugins={**config.plugins, **(plugins or {})},
        ),
        resume,
    )
    return res, time.perf_counter() - t0


def denoise(
    config,
    detector: str = DEFAULT_DETECTOR,
    grid=DEFAULT_GRID,
    drop_fraction: float | None = None,
    fmt: str | None = None,
    floor: bool = True,
    per_user: bool = True,
    plugin_options: dict | None = None,
    say=None,
    action: str = DEFAULT_ACTION,
    weightings=None,
    resume: bool = False,
) -> dict:
    """Run the pipeline of the module docstring for the ``TrainConfig`` ``config`` (its ``out``
    receives everything); returns the summary (also ``out/denoise.json``).

    Args:
        detector: a ``detect.DETECTORS`` name. grid: drop fractions tried, each in (0, 1).
        drop_fraction: a fixed fraction instead of the grid (no validation needed).
        fmt: the output format (default: the input's). floor: keep each user's and item's
            last training pair. per_user: cut by each pair's place among its user's pairs
            (``clean.within_user``) instead of by the raw scores across users (with the weight
            action: each pair weighs its rank among all pairs instead of among its user's).
            plugin_options: options of a trained detector's plug-in.
        say: callable(str) for one line per stage (default: stderr when config.verbose).
        action: "weight" (retrain with each pair weighted by its rank) or "drop" (``grid`` /
            ``drop_fraction``); module docstring. weightings: the weight action's retrains,
            ``Weighting`` s (or their ``KNEE[:loss]`` texts), validation choosing among them
            and the baseline (None: ``DEFAULT_WEIGHTINGS``). resume: resume the run folders
            that have a checkpoint and write the export anew (module docstring).
    """
    from tqdm.auto import tqdm

    if detector not in DETECTORS:
        raise ValueError(f"--detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    if action not in ACTIONS:
        raise ValueError(f"--action {action!r}: choose one of {', '.join(ACTIONS)}")
    if action == "weight" and drop_fraction is not None:
        raise ValueError(
            f"--drop-fraction {drop_fraction:g} applies to --action drop; the weight action "
            "keeps every interaction"
        )
    if action == "drop" and weightings is not None:
        raise ValueError("--weighting applies to --action weight")
    weightings = [
        w if isinstance(w, Weighting) else Weighting.parse(str(w))
        for w in (default_weightings(detector) if weightings is None else weightings)
    ]
    if action == "weight" and (not weightings or len(set(weightings)) < len(weightings)):
        raise ValueError(
            "--weighting: give one or more distinct weightings (KNEE or KNEE:loss), got "
            + (", ".join(map(str, weightings)) or "none")
        )
    if (
        action == "weight"
        and any(w.posterior for w in weightings)
        and not DETECTORS[detector].training_free
    ):
        raise ValueError(
            f"--weighting posterior: the noise posterior comes from running the detector on the "
            f"graph with non-pairs added, which needs one that scores a graph alone (auto, topic, "
            f"knn, ...); --detector {detector} needs the baseline or a training"
        )
    fractions = [drop_fraction] if drop_fraction is not None else sorted(set(grid))
    if drop_fraction is not None and not 0.0 <= drop_fraction < 1.0:
        raise ValueError(f"--drop-fraction {drop_fraction}: must be in [0, 1)")
    if drop_fraction is None and (not fractions or not all(0 < f < 1 for f in fractions)):
        raise ValueError(f"--drop-grid {','.join(map(str, grid))}: each fraction must be in (0, 1)")
    if drop_fraction is None and config.valid_fraction == 0:
        raise ValueError(
            "--valid-fraction 0: the cleaned model is chosen against the baseline on the "
            "validation split; keep one (--valid-fraction > 0) or fix --drop-fraction"
        )
    # resume is the pipeline's (each run folder that has a checkpoint), not the baseline's alone
    resume = resume or bool(config.resume)
    config = dataclasses.replace(config.validate(), resume=False)
    out = Path(config.out)
    if not resume:
        _check_out(out, config)
    if say is None:

        def say(msg):
            if config.verbose:
                tqdm.write(msg, file=sys.stderr)

    progress = sys.stderr.isatty() if config.progress is None else bool(config.progress)
    if action == "weight":
        fractions = []
    retrains = len([f for f in fractions if f > 0]) if action == "drop" else len(weightings)
    stages = 2 + retrains + (DETECTORS[detector].plugin is not None)
    bar = tqdm(
        total=stages,
        desc="denoise",
        unit="stage",
        disable=not progress,
        file=sys.stderr,
        position=1,
        leave=False,
    )
    t0 = time.perf_counter()

    say(f"[baseline] training {config.model} on the data as given")
    base = train_or_resume(dataclasses.replace(config, out=str(out / "baseline")), resume)
    t_base = time.perf_counter() - t0
    bar.update(1)
    _, _, prep, model = restore_run(out / "baseline" / "checkpoint.pt", device=config.device)
    headline = f"recall@{config.ks[0]}"
    if prep.valid is None and drop_fraction is None:
        raise ValueError(
            "the data has no validation split to choose the cleaned model on: "
            "use --valid-fraction > 0 or fix --drop-fraction"
        )

    say(f"[detect] {detector}: {DETECTORS[detector].summary}")
    t1 = time.perf_counter()
    knn_bar = tqdm(
        total=prep.data.num_users,
        desc="detect",
        unit="user",
        leave=False,
        disable=not progress,
        file=sys.stderr,
    )
    chosen_by_detector: dict = {}
    keep = detect(
        detector,
        prep,
        model,
        config,
        out,
        plugin_options,
        progress=knn_bar.update,
        report=chosen_by_detector,
        resume=resume,
    )
    knn_bar.close()
    clean_log, used = False, detector
    if DETECTORS[detector].choices:  # a choice among detectors (auto)
        pick = chosen_by_detector[detector]
        used = pick["chosen"]
        aucs = ", ".join(
            f"{c} {'-' if a is None else f'{a:.3f}'}" for c, a in pick["calibration_auc"].items()
        )
        say(f"[detect] {detector}: {used} (calibration ROC AUC {aucs})")
        rate = pick["noise_rate"]
        clean_log = rate is not None and rate < CLEAN_BELOW and drop_fraction is None
        if rate is not None:
            say(
                f"[detect] estimated noise: {rate:.1%} of the training interactions"
                + (f" (< {CLEAN_BELOW:.0%}: the data look clean, nothing is retrained)" * clean_log)
            )
    if clean_log:
        fractions, weightings = [], []
        bar.update(bar.total - bar.n - 1)
    for part, size in (("spectral", "rank"), ("topic", "topics")):
        if part in chosen_by_detector:
            fit = chosen_by_detector[part]
            say(
                f"[detect] {part} fit: {size} {fit[size]}, noise model q(i) ~ degree^"
                f"{fit['popularity_exponent']:g} (chosen on validation)"
            )
    t_detect = time.perf_counter() - t1
    bar.update(1 + (DETECTORS[detector].plugin is not None))
    users, items = (t.cpu().numpy() for t in prep.train.edges())
    ranked = within_user(keep, users) if per_user else keep
    types = prep.data.noise_types_per_edge(prep.train)
    train_keys = prep.data.train[0] * prep.data.num_items + prep.data.train[1]

    runs = [
        {
            "fraction": 0.0,
            "action": "none",
            "dropped": 0,
            "protected": 0,
            **_metrics(base, headline),
            "seconds": t_base,
            "warnings": [],
        }
    ]
    drops = {0.0: np.zeros(users.shape[0], dtype=bool)}
    for fraction in fractions:
        if fraction == 0:
            continue
        dropped, info = lowest_k(
            ranked,
            users,
            items,
            prep.data.num_users,
            prep.data.num_items,
            fraction,
            config.seed,
            floor,
            raw=keep,
        )
        drops[fraction] = dropped
        gone = np.isin(train_keys, users[dropped] * prep.data.num_items + items[dropped])
        say(
            f"[retrain {fraction:g}] {config.model} without the {info['dropped']} lowest-scored "
            "interactions"
        )
        res, seconds = _retrain(
            config, prep.data.take_train(~gone), out / f"retrain-{fraction:g}", resume=resume
        )
        row = {
            "fraction": fraction,
            "action": "drop",
            **info,
            **_metrics(res, headline),
            "seconds": seconds,
        }
        if types is not None:
            row["dropped_precision"] = float((types[dropped] > 0).mean()) if dropped.any() else None
        runs.append(row)
        bar.update(1)
    weights = {}  # Weighting.source -> the pairs' weights [E] (edge-id order)
    if action == "weight":
        # Each pair's rank in (0, 1]: 1 for its user's (or, across users, the data's) most
        # typical pair, 1 / n for the least; no pair leaves the graph.
        rank = ranked if per_user else within_user(keep, np.zeros_like(users))
        clean_probability = None
        if any(w.posterior for w in weightings):
            posterior = (chosen_by_detector.get(detector) or {}).get("noise_posterior")
            if posterior is None:  # a detector without auto's calibration: calibrate it alone
                found = calibrate([used], prep, config.seed)
                posterior = None if found is None else found[used]["noise_posterior"]
            if posterior is None:
                raise ValueError(
                    "--weighting posterior: no non-pair could be added to the graph to "
                    "calibrate the noise posterior (every user has every item)"
                )
            clean_probability = posterior_weights(keep, posterior)
        for w in weightings:
            if w.source not in weights:
                weights[w.source] = w.weights(rank, clean_probability)
            weight = weights[w.source]
            stats = {"weight_mean": float(weight.mean())}
            if types is not None:
                noisy = types > 0
                stats["weight_mean_noise"] = float(weight[noisy].mean()) if noisy.any() else None
                stats["weight_mean_clean"] = float(weight[~noisy].mean())
            how = (
                "1 - P(noise | its keep score)"
                if w.posterior
                else f"min(1, its keep score's rank / {w.knee:g})"
            )
            say(
                f"[retrain weight {w}] {config.model} with every interaction weighted by {how} "
                "in the propagation" + (" and in the loss" if w.loss else "")
            )
            row = {
                "fraction": 0.0,
                "action": "weight",
                "knee": None if w.posterior else w.knee,
                "posterior": w.posterior,
                "loss_weights": w.loss,
            }
            res, seconds = _retrain(
                config,
                dataclasses.replace(prep.data, train_weight=_in_data_order(prep, weight)),
                out / w.run_name,
                {"edge-weights": {"reweight_loss": w.loss}},
                resume,
            )
            runs.append(
                row
                | {
                    "dropped": 0,
                    "protected": 0,
                    **stats,
                    **_metrics(res, headline),
                    "seconds": seconds,
                    "warnings": [],
                }
            )
            bar.update(1)
    bar.close()
    if drop_fraction is not None:
        chosen = runs[-1]
        rule = f"the fixed --drop-fraction {drop_fraction:g}"
    else:
        chosen = validation_choice(runs)
        rule = "the best validation metrics (recall and NDCG at every k, each relative to the "
        rule += "candidates' mean, summed) among " + (
            f"the baseline alone: the data look clean (estimated noise below {CLEAN_BELOW:.0%})"
            if clean_log
            else "the baseline and the weighted model"
            + ("s" * (len(weightings) > 1))
            + f" (weighting {', '.join(map(str, weightings))})"
            if action == "weight"
            else "fractions 0 (no cleaning), " + ", ".join(f"{f:g}" for f in fractions)
        )
    weighted = chosen.get("action") == "weight"
    dropped = drops[chosen["fraction"]]

    given = export.given_pairs(config, prep.data)
    counts = export.write_export(
        prep.data,
        given[:2],
        (users, items),
        keep[None, :],
        dropped,
        out,
        fmt,
        types,
        weights[Weighting.of(chosen).source] if weighted else None,
    )
    total = time.perf_counter() - t0
    summary = {
        "pipeline": "detect -> clean -> retrain",
        "action": action,
        "chosen": chosen_kind(chosen),
        "loss_weights": bool(chosen.get("loss_weights", False)),
        "knee": chosen.get("knee"),
        "posterior": bool(chosen.get("posterior", False)),
        "model": config.model,
        "data": prep.info["name"],
        "detector": detector,
        "detector_used": used,
        "detector_summary": DETECTORS[detector].summary,
        "looks_clean": clean_log,
        "detector_choices": chosen_by_detector,
        "selection": rule,
        "ranking": "within each user" if per_user else "across users",
        "drop_fraction": chosen["fraction"],
        "scored": int(users.shape[0]),
        "dropped": int(dropped.sum()),
        "protected": chosen["protected"],
        "held_out_for_validation": len(prep.data.valid[0])
        if "validation_split" in prep.data.meta
        else 0,
        **counts,
        **given[2],
        "baseline": runs[0] | {"run": str(out / "baseline")},
        "retrained": chosen | {"run": str(out / _run_name(chosen))},
        "grid": runs,
        "timing": {
            "total_seconds": total,
            "baseline_seconds": t_base,
            "detect_seconds": t_detect,
            "retrain_seconds": [r["seconds"] for r in runs[1:]],
            "total_over_one_training": total / max(t_base, 1e-9),
        },
        "warnings": list(base["warnings"]) + list(chosen["warnings"]),
    }
    noise = _noise_report(ranked[None, :], dropped, types)  # what the cut ranked by
    if noise is not None:
        summary["planted_noise"] = noise
    return _write_summary(out, summary)
