"""The noise benchmark: the one harness every denoiser is judged by (SGCN paper, Fig. 4, and more).

For each noise type, noise ratio and seed it builds a data set whose noisy training pairs are
known, trains every denoiser of ``DENOISERS`` with the same budget (the project's trainer, model
selection on validation), and reports:

- test Recall@20 / NDCG@20 of the selected weights (LightGCN, the oracle LightGCN trained with
  the noise removed, each denoiser);
- ROC AUC of the denoiser's keep scores (``keep_scores(graph)``, the mean over layers for
  [K, E] scores) against the noise of the setting's type: noisy pairs of that type are the
  positives, clean pairs the negatives ("higher = keep", so the AUC is that of 1 - keep);
- the dropped set (keep score <= ``--threshold`` in every layer): its size, precision and
  recall against the noise;
- the AUC of the model's own score ⟨f_u, f_i⟩ on the training pairs (what its embeddings know);
- mean ± std over the seeds, and a PNG like the paper's Fig. 4 (Recall@20 and AUC vs ratio).

Data: ``--data synthetic`` (default): the built-in generator with planted noise of one type per
setting (``make_synthetic(noise_ratio=r, noise_mix=type)``: popularity-matched, uniform,
near-topic) and its clean validation split (``--validation noisy`` for the realistic one); its
likelihood-ratio ceiling per setting is reported as the ``generator`` row (it knows the true
preferences: no detector can beat it). ``--data gowalla`` (or a LightGCN directory): a seeded
subsample of ``--users`` users (their train and test, items seen fewer than ``--min-item`` times
in the sample dropped) with noise injected by ``inject_noise`` (uniform or popularity); the
validation split is drawn from the noisy training pairs.

A denoiser is a ``Denoiser`` entry: a model, plug-ins and options for ``train.make_config``
(anything whose trained model has ``keep_scores(graph)`` plugs in), or a ``scorer`` of the graph
alone (leave-user-out item-kNN). Finished runs are kept under ``--runs`` and reused (``--fresh``
to redo them), so a long grid can be stopped and continued.

    python -m bench.denoise [--quick] [--data synthetic|gowalla|DIR] [--types ...] [--ratios ...]
                            [--seeds ...] [--denoisers ...] [--epochs N] [--threads N]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fastgcn_denoise.data import InteractionData, inject_noise, load_dataset, make_synthetic, save_npz
from fastgcn_denoise.data.noise import INJECTED_KINDS, NOISE_CODE, NOISE_TYPES
from fastgcn_denoise.data.synthetic import GeneratorModel
from fastgcn_denoise.pipelines.denoise import roc_auc
from fastgcn_denoise.ops import sddmm
from fastgcn_denoise.pipelines.train import make_config, restore_run, train

from .common import RESULTS, SHARED_DATA, environment, write_json

HEADLINE = "recall@20"


# ---------------------------------------------------------------------- denoisers
def item_knn_scores(graph) -> torch.Tensor:
    """Leave-user-out item-kNN keep score [E]: the mean cosine similarity of the edge's item to
    the user's other items, with co-occurrences counted without the user itself (float64).

    For user u and items i, j of u: cos_{-u}(i, j) = (C_ij - 1) / sqrt((d_i - 1)(d_j - 1)), where
    C = RᵀR; computed user by user on the user's own item block (dense [I, I] C: small data).
    """
    import scipy.sparse as sp
    users, items = (t.cpu().numpy() for t in graph.edges())
    r = sp.csr_matrix((np.ones(users.shape[0]), (users, items)),
                      shape=(graph.num_users, graph.num_items))
    co = (r.T @ r).toarray()
    deg = co.diagonal().copy()
    rowptr = graph.rowptr_u.cpu().numpy()
    out = np.zeros(users.shape[0])
    for u in range(graph.num_users):
        lo, hi = rowptr[u], rowptr[u + 1]
        if hi - lo < 2:
            continue
        mine = items[lo:hi]
        d = np.maximum(deg[mine] - 1.0, 0.0)
        sim = (co[np.ix_(mine, mine)] - 1.0) / np.sqrt(np.maximum(np.outer(d, d), 1e-12))
        np.fill_diagonal(sim, 0.0)
        out[lo:hi] = sim.sum(1) / (hi - lo - 1)
    return torch.from_numpy(out)


@dataclass(frozen=True)
class Denoiser:
    """One row of the benchmark: what to train (``model``, ``plugins``, ``options`` for
    ``make_config``) or a ``scorer`` (graph -> keep scores [E]) that trains nothing. ``oracle``
    trains on the training pairs minus the known noise."""

    name: str
    summary: str
    model: str = "lightgcn"
    plugins: tuple = ()
    options: dict = field(default_factory=dict)
    oracle: bool = False
    scorer: Callable | None = None


DENOISERS = {d.name: d for d in [
    Denoiser("lightgcn", "LightGCN, no denoising"),
    Denoiser("oracle", "LightGCN trained with the known noise removed", oracle=True),
    Denoiser("holdout", "LightGCN with target-edge holdout only", plugins=("holdout",)),
    Denoiser("sgcn", "S-LightGCN as the paper: ARM masks, beta = gamma = 1e-3",
             model="s-lightgcn"),
    Denoiser("mask", "--mask defaults: gumbel straight-through, score head a_k z_u(<f_u,f_i>) + "
             "b_k, holdout, keep 0.85, positives weighted by their keep probability",
             plugins=("mask",)),
    Denoiser("mask-score", "--mask with the positives unweighted (mask_targets off)",
             plugins=("mask",), options={"mask_targets": False}),
    Denoiser("mask-free", "--mask with free per-edge logits", plugins=("mask",),
             options={"mask_head": "free", "mask_head_lr": 0.05}),
    Denoiser("mask-linear", "--mask with the score + log-degree head", plugins=("mask",),
             options={"mask_head": "linear"}),
    Denoiser("mask-hc", "--mask with hard concrete gates", plugins=("mask",),
             options={"mask_estimator": "hard_concrete", "mask_temperature": 2 / 3}),
    Denoiser("mask-noholdout", "--mask without the target-edge holdout", plugins=("mask",),
             options={"mask_holdout": False}),
    Denoiser("dgr", "LightGCN + DGR (GMP + LEC); keep scores from the backbone's scores",
             plugins=("dgr",)),
    Denoiser("grcn", "GRCN: the refined graph's edge weights from item content (needs features)",
             model="grcn"),
    Denoiser("item-knn", "leave-user-out item-kNN similarity (no training)",
             scorer=item_knn_scores),
]}
# grcn runs when named: it needs item content, which the real graphs here do not have.
DEFAULT_DENOISERS = ("lightgcn", "oracle", "holdout", "sgcn", "mask", "mask-free", "dgr",
                     "item-knn")


# ---------------------------------------------------------------------- data settings
@dataclass(frozen=True)
class Setting:
    kind: str     # a NOISE_TYPES entry ("clean" at ratio 0)
    ratio: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.ratio:g}-s{self.seed}"


def synthetic_data(setting: Setting, validation: str, sizes: dict,
                   inject: bool = False) -> InteractionData:
    """The built-in generator with planted noise of the setting's type and ratio; with
    ``inject``, the default data set (its planted popularity-matched noise, ratio 0.2) with the
    setting's noise injected on top (``inject_noise``), as the issue's diagnosis measured."""
    valid = 0.1 if validation == "clean" else 0.0
    if inject:
        data = make_synthetic(seed=setting.seed, clean_validation=valid, **sizes)
        if setting.ratio == 0:
            return data
        return inject_noise(data, setting.ratio, seed=setting.seed, kind=setting.kind)
    mix = "popularity" if setting.kind == "clean" else setting.kind
    return make_synthetic(seed=setting.seed, noise_ratio=setting.ratio, noise_mix=mix,
                          clean_validation=valid, **sizes)


def subsample(data: InteractionData, users: int, min_item: int, seed: int) -> InteractionData:
    """``users`` random users (seeded) with their train and test pairs; items with fewer than
    ``min_item`` training pairs in the sample are dropped, then users without two training
    pairs; ids are made contiguous. Known noise flags are not carried (the source has none)."""
    rng = np.random.default_rng([seed, 7])
    chosen = np.zeros(data.num_users, bool)
    chosen[rng.choice(data.num_users, size=min(users, data.num_users), replace=False)] = True
    tu, ti = data.train
    keep = chosen[tu]
    item_count = np.bincount(ti[keep], minlength=data.num_items)
    items_ok = item_count >= min_item
    keep &= items_ok[ti]
    user_count = np.bincount(tu[keep], minlength=data.num_users)
    users_ok = chosen & (user_count >= 2)
    keep &= users_ok[tu]
    su, si = data.test
    keep_test = users_ok[su] & items_ok[si]
    umap = np.cumsum(users_ok) - 1
    imap = np.cumsum(items_ok) - 1
    meta = {"format": "lightgcn", "subsample": {
        "source": data.name, "users": int(users_ok.sum()), "items": int(items_ok.sum()),
        "min_item": min_item, "seed": seed}}
    return InteractionData(f"{data.name}-sub{users}", int(users_ok.sum()), int(items_ok.sum()),
                           (umap[tu[keep]], imap[ti[keep]]), (umap[su[keep_test]],
                                                               imap[si[keep_test]]), meta=meta)


def real_data(source, setting: Setting, users: int, min_item: int) -> InteractionData:
    data = subsample(load_dataset(source), users, min_item, seed=0)
    if setting.ratio > 0:
        data = inject_noise(data, setting.ratio, seed=setting.seed, kind=setting.kind)
    return data


# ---------------------------------------------------------------------- scoring
def _mean_keep(scores) -> np.ndarray:
    s = scores.detach().double().cpu().numpy()
    return s.reshape(-1, s.shape[-1])


def score_report(keep: np.ndarray, types: np.ndarray | None, kind: str,
                 threshold: float) -> dict:
    """AUC per noise type present, and the dropped set's size/precision/recall.

    ``keep``: [K, E] keep scores; ``types``: noise type codes [E] (0 = clean) or None.
    """
    mean = keep.mean(0)
    out = {"keep_mean": float(mean.mean())}
    dropped = (keep <= threshold).all(0) if threshold is not None else None
    if dropped is not None:
        out["dropped"] = int(dropped.sum())
    if types is None:
        return out
    clean = types == 0
    out["auc"] = {}
    for name, code in NOISE_CODE.items():
        mine = types == code
        if mine.any():
            sel = clean | mine
            out["auc"][name] = roc_auc(-mean[sel], mine[sel])
    noise = types > 0
    if noise.any():
        # precision of the n lowest-scored pairs, n = the number of noisy ones (= their recall):
        # the dropped set's quality at the true noise rate, whatever the scores' calibration
        lowest = np.argsort(mean, kind="stable")[:int(noise.sum())]
        out["precision_at_noise_rate"] = float(noise[lowest].mean())
    if dropped is not None and noise.any():
        hits = int((dropped & noise).sum())
        out["dropped_precision"] = hits / max(int(dropped.sum()), 1)
        out["dropped_recall"] = hits / int(noise.sum())
    return out


def _without_noise(data: InteractionData) -> InteractionData:
    keep = ~np.asarray(data.noise, bool)
    return dataclasses.replace(
        data, train=(data.train[0][keep], data.train[1][keep]), noise=np.zeros(int(keep.sum()), bool),
        noise_type=np.zeros(int(keep.sum()), np.int8),
        meta=dict(data.meta, oracle={"removed": int((~keep).sum())}))


def _fields_of(denoiser: Denoiser) -> set:
    """The option names the denoiser's model and plug-ins take."""
    from fastgcn_denoise import config as cfgmod
    from fastgcn_denoise.models import model_entry, plugin_entry
    configs = [model_entry(denoiser.model).config] + [plugin_entry(p).config
                                                      for p in denoiser.plugins]
    return {f.name for c in configs for f in cfgmod.fields(c)}


def _setting_option(text: str) -> tuple[str, object]:
    """``name=value`` with the value read as JSON when it parses (numbers, true/false, null)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected OPTION=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def run_one(denoiser: Denoiser, setting: Setting, data: InteractionData, args,
            folder: Path) -> dict:
    """Train (or score) one denoiser on one setting's data; the record of the run."""
    record = {"denoiser": denoiser.name, "kind": setting.kind, "ratio": setting.ratio,
              "seed": setting.seed}
    graph = data.train_graph()
    types = data.noise_types_per_edge(graph)
    t0 = time.perf_counter()
    if denoiser.scorer is not None:
        scores = denoiser.scorer(graph)
        record.update(score_report(_mean_keep(scores), types, setting.kind, None))
        if args.retrain is not None:
            record["retrain"] = _retrain(data, graph, record_keep(scores), types, setting, args,
                                         folder)
        record["seconds"] = time.perf_counter() - t0
        return record
    record.update(_train(denoiser, _without_noise(data) if denoiser.oracle else data, setting,
                         args, folder / "run"))
    _, _, prep, model = restore_run(folder / "run" / "checkpoint.pt", device=args.device)
    model.eval()
    with torch.no_grad():
        f_user, f_item = model(prep.train)
        own = sddmm(prep.train, f_user.contiguous(), f_item.contiguous())
        keep = model.keep_scores(prep.train) if hasattr(model, "keep_scores") else None
    prep_types = prep.data.noise_types_per_edge(prep.train)
    record["score_auc"] = score_report(_mean_keep(own), prep_types, setting.kind, None).get("auc")
    if keep is not None:
        record.update(score_report(_mean_keep(keep), prep_types, setting.kind, args.threshold))
        if args.retrain is not None:
            record["retrain"] = _retrain(prep.data, prep.train, record_keep(keep), prep_types,
                                         setting, args, folder)
    record["seconds"] = time.perf_counter() - t0
    return record


def retrain_cached(denoiser: Denoiser, setting: Setting, data: InteractionData, args,
                   folder: Path) -> dict:
    """``_retrain`` for a finished run: its keep scores recomputed (scorer) or restored."""
    if denoiser.scorer is not None:
        graph = data.train_graph()
        return _retrain(data, graph, record_keep(denoiser.scorer(graph)),
                        data.noise_types_per_edge(graph), setting, args, folder)
    _, _, prep, model = restore_run(folder / "run" / "checkpoint.pt", device=args.device)
    model.eval()
    with torch.no_grad():
        keep = model.keep_scores(prep.train)
    return _retrain(prep.data, prep.train, record_keep(keep),
                    prep.data.noise_types_per_edge(prep.train), setting, args, folder)


def record_keep(scores) -> np.ndarray:
    """The mean keep score per edge [E] (float64) of [E] or [K, E] scores."""
    return _mean_keep(scores).mean(0)


def _train(denoiser: Denoiser, data: InteractionData, setting: Setting, args, out: Path) -> dict:
    """Train ``denoiser`` on ``data`` (written as ``out``.npz) with the benchmark's budget."""
    out.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.npz"
    save_npz(data, path)
    options = dict(epochs=args.epochs, lr=args.lr, eval_every=args.eval_every,
                   patience=args.patience, seed=setting.seed, out=str(out), progress=False,
                   verbose=False, valid_fraction=0.1, device=args.device, overwrite=True)
    options.update(denoiser.options)
    options.update({k: v for k, v in args.settings.items() if k in _fields_of(denoiser)})
    config = make_config(denoiser.model, plugins=denoiser.plugins, data=str(path), **options)
    result = train(config)
    return {"test": {k: result["test"][k] for k in ("recall@20", "ndcg@20")},
            "selected_epoch": result["selection"]["epoch"], "epochs_run": result["epochs_run"],
            "seconds_per_epoch": result["timing"]["seconds_per_epoch"]}


def _retrain(data: InteractionData, graph, keep: np.ndarray, types, setting: Setting, args,
             folder: Path) -> dict:
    """LightGCN trained on ``data`` minus the ``args.retrain`` share of its training pairs with
    the lowest keep scores (the two-stage use of a denoiser: ``denoise``, then train on
    cleaned.*): its test metrics and the removed set's precision."""
    users, items = (t.cpu().numpy() for t in graph.edges())
    drop = np.argsort(keep, kind="stable")[:round(args.retrain * keep.shape[0])]
    gone = np.isin(data.train[0] * data.num_items + data.train[1],
                   users[drop] * data.num_items + items[drop])
    cleaned = dataclasses.replace(
        data, train=(data.train[0][~gone], data.train[1][~gone]),
        noise=None if data.noise is None else np.asarray(data.noise)[~gone],
        noise_type=None if data.noise_type is None else np.asarray(data.noise_type)[~gone])
    out = _train(DENOISERS["lightgcn"], cleaned, setting, args, folder / "retrain")
    out["removed"] = int(gone.sum())
    if types is not None:
        out["removed_precision"] = float((types[drop] > 0).mean()) if drop.size else None
    return out


def _topic_mixture(theta: np.ndarray, weights: np.ndarray, users, items) -> np.ndarray:
    p_ik = weights / weights.sum(axis=0, keepdims=True)
    return np.einsum("nk,nk->n", theta[users], p_ik[items])


def known_items_odds(model: GeneratorModel, users, items, types, user_concentration: float,
                     iterations: int = 30) -> dict:
    """Noise odds per type with the items' latent variables known exactly but each user's topic
    mixture estimated from its own training pairs, leaving the scored pair out.

    The user mixtures come from EM on the mixture (1 - ρ) Σ_k θ_uk P(i | k) + Σ_t ρ_t P_t(i | u)
    with the true noise shares ρ_t and a Dirichlet(user_concentration) prior (posterior-mean
    update); a pair is then scored by P_t(i | u) / Σ_k θ^(-e)_uk P(i | k) with its own
    responsibility removed from θ. This is the best a detector that must learn the users' taste
    from their (noisy) interactions can hope for even with perfect item knowledge: the reachable
    bound, below the generator's ceiling.
    """
    weights = {"preference": model.pop[:, None] * model.q,
               "near_topic": model.pop[:, None] * model.q ** model.near_topic_temperature}
    shares = {name: float((types == code).mean()) for name, code in NOISE_CODE.items()
              if (types == code).any()}
    clean_share = 1.0 - sum(shares.values())
    theta = np.full_like(model.theta, 1.0 / model.theta.shape[1])

    def components(th):
        noise = sum(rho * (_topic_mixture(th, weights["near_topic"], users, items)
                           if name == "near_topic" else model.noise(name, users, items))
                    for name, rho in shares.items())
        return _topic_mixture(th, weights["preference"], users, items), noise

    p_ik = weights["preference"] / weights["preference"].sum(axis=0, keepdims=True)
    for _ in range(iterations):
        pref, noise = components(theta)
        pk = theta[users] * p_ik[items]                                    # [E, K]
        resp = pk * (clean_share / (clean_share * pref + noise))[:, None]  # P(topic k, clean | e)
        counts = np.zeros_like(theta)
        np.add.at(counts, users, resp)
        theta = (counts + user_concentration) / (counts + user_concentration).sum(1, keepdims=True)
    own = counts[users] - resp
    theta_loo = (own + user_concentration) / (own + user_concentration).sum(1, keepdims=True)
    pref = np.einsum("nk,nk->n", theta_loo, p_ik[items])
    out = {}
    for name in shares:
        noise = (np.einsum("nk,nk->n", theta_loo, (weights["near_topic"] / weights["near_topic"]
                                                     .sum(axis=0, keepdims=True))[items])
                 if name == "near_topic" else model.noise(name, users, items))
        out[name] = noise / np.maximum(pref, 1e-300)
    return out


def generator_records(setting: Setting, data: InteractionData) -> list[dict]:
    """The generator's two bounds for the setting (built-in data only), as rows ``generator``
    (the likelihood-ratio ceiling: the true preferences known) and ``known items`` (the
    reachable bound of ``known_items_odds``: the users' taste estimated from their
    interactions)."""
    graph = data.train_graph()
    types = data.noise_types_per_edge(graph)
    users, items = (t.numpy() for t in graph.edges())
    model = GeneratorModel.of(data)
    estimated = known_items_odds(model, users, items, types,
                                 data.meta["generator"]["user_concentration"])
    rows = [{"denoiser": name, "kind": setting.kind, "ratio": setting.ratio,
             "seed": setting.seed, "auc": {}} for name in ("generator", "known items")]
    for name, code in NOISE_CODE.items():
        mine = types == code
        if mine.any():
            sel = (types == 0) | mine
            rows[0]["auc"][name] = roc_auc(model.noise_odds(name, users[sel], items[sel]),
                                           mine[sel])
            rows[1]["auc"][name] = roc_auc(estimated[name][sel], mine[sel])
    return rows


# ---------------------------------------------------------------------- aggregation and output
def _stat(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def aggregate(records: list[dict]) -> list[dict]:
    """Mean ± std over seeds per (kind, ratio, denoiser)."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["kind"], r["ratio"], r["denoiser"]), []).append(r)
    rows = []
    for (kind, ratio, name), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        own = kind if kind in NOISE_CODE else None
        present = sorted({t for r in rs for t in (r.get("auc") or {})})
        row = {"kind": kind, "ratio": ratio, "denoiser": name, "seeds": len(rs),
               "auc_by_type": {t: _stat([(r.get("auc") or {}).get(t) for r in rs])
                               for t in present},
               "recall@20": _stat([r.get("test", {}).get("recall@20") for r in rs]),
               "ndcg@20": _stat([r.get("test", {}).get("ndcg@20") for r in rs]),
               "auc": _stat([r.get("auc", {}).get(own) for r in rs]) if own else None,
               "score_auc": _stat([(r.get("score_auc") or {}).get(own) for r in rs])
               if own else None,
               "dropped": _stat([r.get("dropped") for r in rs]),
               "precision_at_noise_rate": _stat([r.get("precision_at_noise_rate") for r in rs]),
               "dropped_precision": _stat([r.get("dropped_precision") for r in rs]),
               "dropped_recall": _stat([r.get("dropped_recall") for r in rs]),
               "retrain_recall@20": _stat([r.get("retrain", {}).get("test", {}).get("recall@20")
                                           for r in rs]),
               "retrain_removed_precision": _stat([r.get("retrain", {}).get("removed_precision")
                                                   for r in rs])}
        rows.append(row)
    return rows


def _fmt(stat, digits=4) -> str:
    if stat is None:
        return "—"
    if stat["n"] == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = ["| noise | ratio | denoiser | Recall@20 | NDCG@20 | keep-score AUC | own-score AUC "
             "| P@noise rate | dropped | precision | recall | retrained Recall@20 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join([
            r["kind"], f"{r['ratio']:g}", r["denoiser"], _fmt(r["recall@20"]), _fmt(r["ndcg@20"]),
            _fmt(r["auc"], 3), _fmt(r["score_auc"], 3), _fmt(r["precision_at_noise_rate"], 2),
            _fmt(r["dropped"], 0),
            _fmt(r["dropped_precision"], 2), _fmt(r["dropped_recall"], 2),
            _fmt(r["retrain_recall@20"])]) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> Path | None:
    """Recall@20 (top) and keep-score AUC (bottom) against the noise ratio, one panel per noise
    type, one line per denoiser with the seeds' spread as error bars."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    kinds = [k for k in dict.fromkeys(r["kind"] for r in rows) if k != "clean"]
    if not kinds:
        return None
    clean = {r["denoiser"]: r for r in rows if r["kind"] == "clean"}
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.6 * len(kinds), 7.4), squeeze=False)
    names = list(dict.fromkeys(r["denoiser"] for r in rows))
    for col, kind in enumerate(kinds):
        mine = [r for r in rows if r["kind"] == kind]
        for metric, ax in (("recall@20", axes[0][col]), ("auc", axes[1][col])):
            for name in names:
                pts = sorted([r for r in mine if r["denoiser"] == name and r[metric]],
                             key=lambda r: r["ratio"])
                if metric == "recall@20" and name in clean and clean[name][metric]:
                    pts = [clean[name]] + pts
                if not pts:
                    continue
                xs = [r["ratio"] for r in pts]
                ax.errorbar(xs, [r[metric]["mean"] for r in pts],
                            yerr=[r[metric]["std"] for r in pts], marker="o", capsize=3,
                            label=name, linestyle="--" if name in ("generator", "known items",
                                                                   "oracle") else "-")
            ax.set_xlabel("noise ratio (noisy pairs per clean training pair)")
            ax.set_ylabel("test Recall@20" if metric == "recall@20" else "ROC AUC of the keep "
                                                                          "scores")
            ax.set_title(f"{kind} noise", fontsize=10)
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    axes[1][-1].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- main
QUICK_SIZES = dict(num_users=300, num_items=200, dim=8, avg_degree=15)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.denoise", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="synthetic",
                    help="synthetic (the built-in generator), gowalla, or a LightGCN directory")
    ap.add_argument("--types", nargs="+", default=None,
                    help=f"noise types (synthetic: {' '.join(NOISE_TYPES)}; real data: "
                         f"{' '.join(INJECTED_KINDS)})")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--denoisers", nargs="+", choices=list(DENOISERS), default=None,
                    help=f"default: {' '.join(DEFAULT_DENOISERS)}")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--eval-every", type=int, default=2)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--retrain", type=float, default=None, metavar="F",
                    help="also train LightGCN on the training pairs minus the share F with the "
                         "lowest keep scores (two-stage denoising), per denoiser with scores")
    ap.add_argument("--threshold", type=float, default=0.5,
                    help="an edge is dropped when its keep score is <= this in every layer")
    ap.add_argument("--validation", choices=("clean", "noisy"), default="clean",
                    help="synthetic data: validation drawn like test (clean) or from the noisy "
                         "training pairs")
    ap.add_argument("--inject", action="store_true",
                    help="synthetic data: inject the noise (uniform or popularity) into the "
                         "default data set, on top of its planted popularity noise")
    ap.add_argument("--users", type=int, default=6000, help="real data: users in the subsample")
    ap.add_argument("--min-item", type=int, default=5,
                    help="real data: items with fewer training pairs in the subsample are dropped")
    ap.add_argument("--set", dest="settings", type=_setting_option, action="append", default=[],
                    metavar="OPTION=VALUE", help="a model or plug-in option for every denoiser "
                                                 "that has it (repeatable), e.g. target_keep=0.8")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--device", default="cpu", help="device to train on: cpu, cuda or cuda:N")
    ap.add_argument("--quick", action="store_true",
                    help="a tiny generated data set, 2 epochs, one seed (tests, CI)")
    ap.add_argument("--runs", default=None, help="run folders (default runs/denoise_bench/<data>)")
    ap.add_argument("--fresh", action="store_true", help="redo runs that have a record")
    ap.add_argument("--out", default=None, help=f"results folder (default {RESULTS})")
    ap.add_argument("--tag", default=None,
                    help="appended to the results' name (denoise_<data>[_u<users>]_<tag>), to "
                         "say the setting, e.g. popularity")
    args = ap.parse_args(argv)
    synthetic = args.data == "synthetic"
    planted = synthetic and not args.inject
    args.types = args.types or list(NOISE_TYPES if planted else ("uniform",))
    allowed = NOISE_TYPES if planted else INJECTED_KINDS
    bad = [t for t in args.types if t not in allowed]
    if bad:
        ap.error(f"noise type(s) {bad} not available for --data {args.data}; choose from "
                 f"{', '.join(allowed)}")
    args.denoisers = args.denoisers or list(DEFAULT_DENOISERS)
    args.settings = dict(args.settings)
    if args.quick:
        args.epochs, args.eval_every, args.patience = 2, 1, 2
        args.seeds, args.ratios = args.seeds[:1], sorted(set(args.ratios))[-1:]
    return args


def settings_of(args) -> list[Setting]:
    out = []
    for seed in args.seeds:
        for ratio in sorted(set(args.ratios)):
            kinds = ["clean"] if ratio == 0 else args.types
            out += [Setting(kind, ratio, seed) for kind in kinds]
    return out


def run_key(data: InteractionData, args) -> str:
    """What a cached run record is valid for: the exact interactions (train with its noise flags,
    validation, test), the epochs and the validation kind. A cache made for another subsample or
    schedule under the same folder is run again instead of reused."""
    h = hashlib.sha1()
    for pairs in (data.train, data.valid, data.test):
        for a in pairs or ():
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    if data.noise is not None:
        h.update(np.ascontiguousarray(data.noise, dtype=bool).tobytes())
    h.update(f"{data.num_users},{data.num_items},{args.epochs},{args.validation}".encode())
    return h.hexdigest()[:16]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    synthetic = args.data == "synthetic"
    data_name = "synthetic" if synthetic else Path(args.data).name
    source = SHARED_DATA / "gowalla" if args.data == "gowalla" else args.data
    name = f"denoise_{data_name}" + ("" if synthetic else f"_u{args.users}") + \
        ("_injected" if args.inject else "") + (f"_{args.tag}" if args.tag else "") + \
        ("_quick" if args.quick else "") + ("" if args.device == "cpu" else "_cuda")
    runs = Path(args.runs or f"runs/denoise_bench/{name}")
    sizes = QUICK_SIZES if args.quick else {}
    records = []
    settings = settings_of(args)
    total = len(settings) * len(args.denoisers)
    done = 0
    t_start = time.perf_counter()
    for setting in settings:
        data = (synthetic_data(setting, args.validation, sizes, args.inject) if synthetic
                else real_data(source, setting, args.users, args.min_item))
        if synthetic and setting.ratio > 0:
            records += generator_records(setting, data)
        for dn in args.denoisers:
            done += 1
            denoiser, run_setting, run_data = DENOISERS[dn], setting, data
            if dn == "oracle" and not args.inject:
                # Planted or injected on a fixed base, the noise-free data of a seed is the same
                # in every setting: the oracle is LightGCN on the seed's clean setting.
                if setting.ratio == 0:
                    continue
                denoiser, run_setting = DENOISERS["lightgcn"], Setting("clean", 0.0, setting.seed)
                run_data = _without_noise(data)
            folder = runs / run_setting.name / denoiser.name
            cache = folder / "record.json"
            key = run_key(run_data, args)
            record = json.loads(cache.read_text()) if cache.exists() and not args.fresh else None
            if record is not None and record.get("run_key") != key:
                print(f"{folder}: cached for other data or epochs; running again", flush=True)
                record = None
            if record is not None:
                if args.retrain is not None and "retrain" not in record and \
                        ("auc" in record or "keep_mean" in record):
                    record["retrain"] = retrain_cached(denoiser, run_setting, run_data, args,
                                                       folder)
                    cache.write_text(json.dumps(record, indent=1))
            else:
                record = dict(run_one(denoiser, run_setting, run_data, args, folder), run_key=key)
                folder.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(record, indent=1))
            if denoiser.name != dn:
                record = dict(record, denoiser=dn, kind=setting.kind, ratio=setting.ratio)
            records.append(record)
            auc = record.get("auc", {}).get(setting.kind)
            print(f"[{done}/{total} {time.perf_counter() - t_start:.0f} s] {setting.name} {dn}: "
                  f"recall@20 {record.get('test', {}).get('recall@20', float('nan')):.4f}"
                  + (f"  auc {auc:.3f}" if auc is not None else ""), flush=True)
    rows = aggregate(records)
    text = table(rows)
    print(text)
    out_dir = Path(args.out or RESULTS)
    payload = {"environment": environment(args.device), "shared_machine": True,
               "threads": torch.get_num_threads(), "data": data_name,
               "args": {k: v for k, v in vars(args).items()},
               "denoisers": {n: DENOISERS[n].summary for n in args.denoisers},
               "rows": rows, "runs": records, "table": text,
               "wall_seconds": time.perf_counter() - t_start}
    if args.quick and args.out is None:
        out_dir = runs  # a quick run never overwrites the committed results
    path = write_json(name, payload, out_dir)
    png = plot(rows, out_dir / f"{name}.png", f"noise benchmark, {data_name} "
                                              f"({len(args.seeds)} seed(s), {args.epochs} epochs)")
    print(f"written to {path}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
