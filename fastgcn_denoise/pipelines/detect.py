"""Detectors of the denoising pipeline: a keep score for every training interaction.

Each returns float64 [E] in the training graph's edge-id order, higher = keep:

    knn        leave-user-out item-kNN, cosine similarity (``denoisers.knn``; no training)
    knn-lift   the same with lift (co-occurrence over what popularity predicts)
    spectral   P̂(i | u) / d_i^β of a truncated SVD of the normalised graph: the odds of a
               preference against noise q(i) ∝ d_i^β, rank and β chosen on validation
               (``denoisers.spectral``; no training)
    knn-spectral  ranks of knn / d_i^β and P̂ / d_i^β averaged, one β chosen on validation for
               the pair
    topic      P̂(i | u) / d_i^β of a PLSA topic model, each pair scored without itself, the
               number of topics and β chosen on validation (``denoisers.topic``; no training)
    knn-topic  ranks of knn / d_i^β and the topic model's P̂ / d_i^β averaged, as knn-spectral
    auto       topic or knn-topic, whichever separates the training pairs from uniformly drawn
               non-pairs added to them better (``calibrate``; no training)
    score      the noisy baseline's own score <f_u, f_i> (free: the baseline is trained anyway)
    ensemble   rank average of knn-lift and score
    mask, dgr, t-ce, r-ce, rgcf
               the keep scores of the backbone trained with that plug-in (one more training;
               their options come from the plug-in's flags)
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.noise import interacted_keys
from ..data.sampling import draw_distinct_items, uniform_absent_draw
from ..denoisers.knn import item_knn_pair_scores, item_knn_scores
from ..denoisers.noise_model import choose_exponent
from ..denoisers.ranking import above_within
from ..denoisers.spectral import spectral_pair_scores, spectral_scores
from ..denoisers.topic import topic_pair_scores, topic_scores
from ..ops import sddmm


@dataclass(frozen=True)
class Detector:
    name: str
    summary: str
    plugin: str | None = None  # trained: the backbone with this plug-in
    parts: tuple = ()  # an ensemble: the detectors whose ranks are averaged
    choices: tuple = ()  # a choice: the detectors ``calibrate`` chooses among

    @property
    def training_free(self) -> bool:
        """Whether it scores a graph alone, without the baseline or a training (what
        ``calibrate`` can run on the graph with non-pairs added)."""
        return (
            self.plugin is None
            and self.name != "score"
            and all(DETECTORS[p].training_free for p in self.parts)
        )


DETECTORS = {
    d.name: d
    for d in [
        Detector("knn", "leave-user-out item-kNN, cosine similarity (no training)"),
        Detector("knn-lift", "leave-user-out item-kNN, lift (popularity-corrected; no training)"),
        Detector(
            "spectral",
            "P(i | u) / d_i^b of a truncated SVD of the normalised graph, rank and popularity "
            "exponent b chosen on validation (no training)",
        ),
        Detector(
            "knn-spectral",
            "item-kNN and the spectral fit, both over d_i^b (b chosen on validation), ranks "
            "averaged (no training)",
        ),
        Detector(
            "topic",
            "P(i | u) / d_i^b of a PLSA topic model without the pair itself, topics and "
            "popularity exponent b chosen on validation (no training)",
        ),
        Detector(
            "knn-topic",
            "item-kNN and the topic model, both over d_i^b (b chosen on validation), ranks "
            "averaged (no training)",
        ),
        Detector(
            "auto",
            "topic or knn-topic, whichever ranks the training pairs above uniform non-pairs "
            "added to them more often (no training)",
            choices=("topic", "knn-topic"),
        ),
        Detector("score", "the noisy baseline's own score <f_u, f_i>"),
        Detector("ensemble", "rank average of knn-lift and score", parts=("knn-lift", "score")),
        Detector("mask", "keep probabilities of the backbone + mask plug-in", plugin="mask"),
        Detector("dgr", "keep scores of the backbone + DGR plug-in", plugin="dgr"),
        Detector(
            "t-ce", "mean T-CE loss of each interaction while training with it", plugin="t-ce"
        ),
        Detector("r-ce", "mean loss of each interaction while training with R-CE", plugin="r-ce"),
        Detector("rgcf", "RGCF's reliability of each interaction", plugin="rgcf"),
    ]
}


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks scaled to (0, 1] (ties share their mean rank)."""
    from scipy.stats import rankdata

    return rankdata(x) / x.shape[0]


def own_scores(model, graph) -> np.ndarray:
    """<f_u, f_i> of every training edge under the model's evaluation embeddings (float64 [E])."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            f_user, f_item = model(graph)
            return sddmm(graph, f_user.contiguous(), f_item.contiguous()).double().cpu().numpy()
    finally:
        model.train(was)


def _knn_and_fit(fit: str, graph, valid, progress, report) -> np.ndarray:
    """knn-spectral / knn-topic: the ranks of knn / d_i^β and of the fit's P̂ / d_i^β averaged,
    one β chosen on the combined score (``noise_model``: a β for each part picked β = 0 for kNN
    too often, its signal being weaker)."""
    if fit == "spectral":
        scores, info = spectral_scores(graph, valid, noise_model=False)
        size = info["rank"]
        part = spectral_pair_scores
    else:
        scores, info = topic_scores(graph, valid, noise_model=False)
        size = info["topics"]
        part = topic_pair_scores
    knn = item_knn_scores(graph, progress=progress).numpy()
    beta, shares = 0.0, None
    if valid is not None and valid.num_edges:
        beta, shares = choose_exponent(
            graph, valid, [lambda g, u, i: part(g, size, u, i), item_knn_pair_scores]
        )
    if report is not None:
        report[fit] = info | {"popularity_exponent": beta, "exponent_share": shares}
    items = graph.edges()[1].cpu().numpy()
    degree = np.maximum(np.bincount(items, minlength=graph.num_items), 1.0)[items] ** beta
    return np.mean([_ranks(knn / degree), _ranks(scores / degree)], axis=0)


# Share of uniform non-pairs ``calibrate`` adds: small beside the 10-20 % noise a log may hold,
# so that the graph the detectors score is nearly the log itself.
CALIBRATION_RATIO = 0.05
# Quantiles of the added pairs' scores at which ``noise_rate`` compares the two distributions
RATE_QUANTILES = np.linspace(0.1, 0.5, 9)


def noise_rate(log_scores: np.ndarray, noise_scores: np.ndarray) -> float:
    """The share of noise among the log's pairs, from a sample of known noise (float64 arrays
    of keep scores, higher = keep): min over thresholds t of P(log score <= t) / P(noise score
    <= t), t at ``RATE_QUANTILES`` of the noise sample. The log is a mixture (1 - r) clean +
    r noise, so each ratio is r plus the clean pairs' share below t over the noise's, an upper
    bound on r that is tight where clean pairs are rare (mixture proportion estimation,
    Blanchard, Lee and Scott, JMLR 2010)."""
    ts = np.quantile(noise_scores, RATE_QUANTILES)
    return float(min(np.mean(log_scores <= t) / np.mean(noise_scores <= t) for t in ts))


# Quantile bins of the log's scores over which ``noise_posterior`` estimates P(noise | score).
POSTERIOR_BINS = 40


def noise_posterior(
    log_scores: np.ndarray, noise_scores: np.ndarray, rate: float, bins: int = POSTERIOR_BINS
) -> np.ndarray:
    """P(noise | a pair's score lies in quantile bin b of the log's scores), float64 [bins],
    b = 0 holding the log's lowest-scored pairs; non-increasing in b.

    The log is a mixture (1 - r) clean + r noise, so in bin b, P(noise | b) = r f_noise(b) /
    f_log(b), with f_noise the share of the known noise sample (``noise_scores``) whose score
    falls in the bin and f_log the log's own share (1 / bins up to ties); r = ``rate``
    (``noise_rate``). Clipped to [0, 1] and made non-increasing from the top bin down (a higher
    score never means more noise): where the sample is thin, a bin takes the largest value of
    the bins above it.
    """
    log_scores = np.sort(np.asarray(log_scores, dtype=np.float64))
    f_log = np.bincount(_quantile_bins(log_scores, log_scores, bins), minlength=bins)
    f_noise = np.bincount(_quantile_bins(log_scores, noise_scores, bins), minlength=bins)
    post = rate * (f_noise / max(len(noise_scores), 1)) / np.maximum(f_log / len(log_scores), 1e-12)
    post = np.clip(post, 0.0, 1.0)
    return np.maximum.accumulate(post[::-1])[::-1]


def _quantile_bins(sorted_log: np.ndarray, scores: np.ndarray, bins: int) -> np.ndarray:
    """int64 [n]: the quantile bin (0 .. bins - 1) of each score among the sorted log scores
    (its mid-rank among ties, so tied pairs share a bin)."""
    scores = np.asarray(scores, dtype=np.float64)
    lo = np.searchsorted(sorted_log, scores, side="left")
    hi = np.searchsorted(sorted_log, scores, side="right")
    q = (lo + hi) / (2.0 * max(len(sorted_log), 1))
    return np.minimum((q * bins).astype(np.int64), bins - 1)


# The least weight ``posterior_weights`` gives: a pair judged certain noise still counts a little,
# as the rank weights' least, 1 / n, does (and a log whose every pair reads as noise keeps a graph).
POSTERIOR_FLOOR = 0.01


def posterior_weights(keep: np.ndarray, posterior: np.ndarray) -> np.ndarray:
    """float64 [E]: 1 - P(noise) of each pair, at least ``POSTERIOR_FLOOR``, from its keep
    score's quantile among ``keep`` (the log's scores) and the bins of ``noise_posterior``."""
    keep = np.asarray(keep, dtype=np.float64)
    p_noise = np.asarray(posterior)[_quantile_bins(np.sort(keep), keep, len(posterior))]
    return np.maximum(1.0 - p_noise, POSTERIOR_FLOOR)


def calibrate(names, prep, seed: int = 0) -> dict | None:
    """How well each detector of ``names`` separates the log's pairs from known noise, and how
    much noise it sees in the log: {name: {"auc": the mean over users of the within-user ROC
    AUC of the training pairs against non-pairs added to them, "noise_rate": ``noise_rate`` of
    the training pairs' scores with the added pairs' as the noise sample, "noise_posterior":
    ``noise_posterior`` of the same (a list of ``POSTERIOR_BINS`` floats)}}.

    ``CALIBRATION_RATIO`` times as many pairs as the graph has are added (seeded): each one's
    user that of a training pair drawn at random, its item drawn uniformly from those the user
    has in no split. The detector runs on the training graph with them, as on the log itself:
    each pair is scored without itself, so an added pair is scored as a random misclick in the
    log would be. The validation split cannot make this choice: on real data its pairs hold the
    same noise as training. Against injected uniform noise (within-user ROC AUC, seed 0) the
    calibration orders topic and knn-topic as the known noise does: Yelp split 0.872 / 0.836,
    calibration 0.811 / 0.785; Gowalla subsample 0.926 / 0.945, calibration 0.884 / 0.899;
    built-in data 0.872 / 0.866, calibration 0.834 / 0.825 (docs/denoising.md has the
    scoreboards' choices, and the popularity-shaped noise it can misjudge). Uniform pairs only:
    pairs drawn by popularity put the two in the wrong order in 3 of 4 Gowalla runs tried.

    The noise rate this way is close on Gowalla (knn-topic, seed 0: 0.002 on the clean
    subsample, 0.099 and 0.187 where uniform noise is 9.4 % and 16.6 % of the pairs, 0.068 with
    9.4 % popularity-shaped) and high on logs a detector describes less well (topic: built-in
    data 0.062 clean, 0.171 at 9.2 % uniform; Yelp split 0.086 clean, 0.322 at 17 % uniform).
    None when no pair can be added.
    """
    graph = prep.train
    users, items = (t.cpu().numpy() for t in graph.edges())
    num_items = graph.num_items
    taken = interacted_keys(prep.data)
    absent = num_items - np.bincount(taken // num_items, minlength=graph.num_users)
    rng = np.random.default_rng(seed)
    # each added pair's user is a training pair's (misclicks at a constant rate per interaction)
    drawn = rng.choice(users, size=int(round(CALIBRATION_RATIO * users.shape[0])))
    counts = np.minimum(np.bincount(drawn, minlength=graph.num_users), absent)
    added_users, added_items = draw_distinct_items(
        counts, taken, num_items, uniform_absent_draw(num_items, rng)
    )
    if added_users.size == 0:
        return None
    added = type(graph)(
        np.r_[users, added_users], np.r_[items, added_items], graph.num_users, num_items
    ).to(graph.device)
    added.topic_fits = {}  # the detectors share their topic fits of this graph
    with_added = copy.copy(prep)
    with_added.train = added
    all_users, all_items = (t.cpu().numpy() for t in added.edges())
    is_added = np.isin(all_users * num_items + all_items, added_users * num_items + added_items)
    found = {}
    for name in names:
        keep = detect(name, with_added, None, None, None)
        rate = noise_rate(keep[~is_added], keep[is_added])
        found[name] = {
            "auc": float(np.nanmean(above_within(keep, all_users, ~is_added, graph.num_users))),
            "noise_rate": rate,
            "noise_posterior": noise_posterior(keep[~is_added], keep[is_added], rate).tolist(),
        }
    return found


def detect(
    name: str,
    prep,
    baseline,
    config,
    out,
    plugin_options: dict | None = None,
    progress=None,
    report: dict | None = None,
    resume: bool = False,
) -> np.ndarray:
    """Keep scores of detector ``name`` for ``prep.train`` (float64 [E]).

    ``baseline``: the backbone trained on the noisy graph; ``config``: its ``TrainConfig`` (a
    trained detector reuses it with its plug-in, writing to ``out``/detector-NAME);
    ``progress``: an optional callable(users done) for the kNN detectors; ``report``: a dict
    that receives what the detector chose (the spectral fit's rank and popularity exponent);
    ``resume``: a trained detector's run resumes from its checkpoint when it has one.
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    det = DETECTORS[name]
    graph = prep.train
    if det.choices:
        seed = config.seed if config is not None else 0
        found = calibrate(det.choices, prep, seed) or dict.fromkeys(det.choices)
        aucs = {c: None if f is None else f["auc"] for c, f in found.items()}
        best = max(det.choices, key=lambda c: -1.0 if aucs[c] is None else aucs[c])
        if report is not None:
            report[name] = {
                "chosen": best,
                "calibration_auc": aucs,
                **{key: (found[best] or {}).get(key) for key in ("noise_rate", "noise_posterior")},
            }
        return detect(best, prep, baseline, config, out, plugin_options, progress, report, resume)
    if det.parts:
        return np.mean(
            [
                _ranks(
                    detect(p, prep, baseline, config, out, plugin_options, progress, resume=resume)
                )
                for p in det.parts
            ],
            axis=0,
        )
    if name in ("knn", "knn-lift"):
        sim = "cosine" if name == "knn" else "lift"
        return item_knn_scores(graph, sim, progress=progress).numpy()
    if name == "spectral":
        keep, info = spectral_scores(graph, prep.valid)
        if report is not None:
            report["spectral"] = info
        return keep
    if name == "topic":
        keep, info = topic_scores(graph, prep.valid)
        if report is not None:
            report["topic"] = info
        return keep
    if name in ("knn-spectral", "knn-topic"):
        return _knn_and_fit(name.removeprefix("knn-"), graph, prep.valid, progress, report)
    if name == "score":
        return own_scores(baseline, graph)
    from .train import restore_run, train_or_resume

    run = Path(out) / f"detector-{name}"
    cfg = dataclasses.replace(
        config, plugins={det.plugin: dict(plugin_options or {})}, out=str(run)
    )
    train_or_resume(cfg, resume)
    _, _, dprep, model = restore_run(run / "checkpoint.pt")
    if dprep.train.num_edges != graph.num_edges:
        raise RuntimeError(
            f"detector {name}: its run saw {dprep.train.num_edges} training "
            f"interactions, the baseline {graph.num_edges}"
        )
    model.eval()
    with torch.no_grad():
        scores = model.keep_scores(dprep.train)
    if scores is None:
        raise ValueError(f"detector {name}: the {det.plugin} plug-in reports no keep scores")
    s = scores.detach().double().cpu().numpy()
    return s.reshape(-1, graph.num_edges).mean(0)
