"""One row of the noise benchmark on one setting: train (or score) the denoiser, score its keep
scores against the known noise, and optionally retrain LightGCN on the pairs it keeps."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path

import numpy as np
import torch

from fastgcn_denoise.data import InteractionData, save_npz
from fastgcn_denoise.data.noise import NOISE_CODE
from fastgcn_denoise.ops import sddmm
from fastgcn_denoise.pipelines.denoise import roc_auc
from fastgcn_denoise.pipelines.train import make_config, restore_run, train

from .rows import DENOISERS, Denoiser
from .settings import Setting, without_noise


def _mean_keep(scores) -> np.ndarray:
    s = scores.detach().double().cpu().numpy()
    return s.reshape(-1, s.shape[-1])


def score_report(keep: np.ndarray, types: np.ndarray | None, kind: str, threshold: float) -> dict:
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
        lowest = np.argsort(mean, kind="stable")[: int(noise.sum())]
        out["precision_at_noise_rate"] = float(noise[lowest].mean())
    if dropped is not None and noise.any():
        hits = int((dropped & noise).sum())
        out["dropped_precision"] = hits / max(int(dropped.sum()), 1)
        out["dropped_recall"] = hits / int(noise.sum())
    return out


def _fields_of(denoiser: Denoiser) -> set:
    """The option names the denoiser's model and plug-ins take."""
    from fastgcn_denoise import config as cfgmod
    from fastgcn_denoise.models import model_entry, plugin_entry

    configs = [model_entry(denoiser.model).config] + [
        plugin_entry(p).config for p in denoiser.plugins
    ]
    return {f.name for c in configs for f in cfgmod.fields(c)}


def run_one(
    denoiser: Denoiser, setting: Setting, data: InteractionData, args, folder: Path
) -> dict:
    """Train (or score) one denoiser on one setting's data; the record of the run."""
    record = {
        "denoiser": denoiser.name,
        "kind": setting.kind,
        "ratio": setting.ratio,
        "seed": setting.seed,
    }
    graph = data.train_graph()
    types = data.noise_types_per_edge(graph)
    t0 = time.perf_counter()
    if denoiser.scorer is not None:
        scores = denoiser.scorer(graph, data)
        record.update(score_report(_mean_keep(scores), types, setting.kind, None))
        if args.retrain is not None:
            record["retrain"] = _retrain(
                data, graph, record_keep(scores), types, setting, args, folder
            )
        record["seconds"] = time.perf_counter() - t0
        return record
    record.update(
        _train(
            denoiser,
            without_noise(data) if denoiser.oracle else data,
            setting,
            args,
            folder / "run",
        )
    )
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
            record["retrain"] = _retrain(
                prep.data, prep.train, record_keep(keep), prep_types, setting, args, folder
            )
    record["seconds"] = time.perf_counter() - t0
    return record


def retrain_cached(
    denoiser: Denoiser, setting: Setting, data: InteractionData, args, folder: Path
) -> dict:
    """``_retrain`` for a finished run: its keep scores recomputed (scorer) or restored."""
    if denoiser.scorer is not None:
        graph = data.train_graph()
        return _retrain(
            data,
            graph,
            record_keep(denoiser.scorer(graph, data)),
            data.noise_types_per_edge(graph),
            setting,
            args,
            folder,
        )
    _, _, prep, model = restore_run(folder / "run" / "checkpoint.pt", device=args.device)
    model.eval()
    with torch.no_grad():
        keep = model.keep_scores(prep.train)
    return _retrain(
        prep.data,
        prep.train,
        record_keep(keep),
        prep.data.noise_types_per_edge(prep.train),
        setting,
        args,
        folder,
    )


def record_keep(scores) -> np.ndarray:
    """The mean keep score per edge [E] (float64) of [E] or [K, E] scores."""
    return _mean_keep(scores).mean(0)


def _train(denoiser: Denoiser, data: InteractionData, setting: Setting, args, out: Path) -> dict:
    """Train ``denoiser`` on ``data`` (written as ``out``.npz) with the benchmark's budget."""
    out.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.npz"
    save_npz(data, path)
    options = {
        "epochs": args.epochs,
        "lr": args.lr,
        "eval_every": args.eval_every,
        "patience": args.patience,
        "seed": setting.seed,
        "out": str(out),
        "progress": False,
        "verbose": False,
        "valid_fraction": 0.1,
        "device": args.device,
        "overwrite": True,
    }
    options.update(denoiser.options)
    options.update({k: v for k, v in args.settings.items() if k in _fields_of(denoiser)})
    config = make_config(denoiser.model, plugins=denoiser.plugins, data=str(path), **options)
    result = train(config)
    return {
        "test": {k: result["test"][k] for k in ("recall@20", "ndcg@20")},
        "selected_epoch": result["selection"]["epoch"],
        "epochs_run": result["epochs_run"],
        "seconds_per_epoch": result["timing"]["seconds_per_epoch"],
    }


def _retrain(
    data: InteractionData, graph, keep: np.ndarray, types, setting: Setting, args, folder: Path
) -> dict:
    """LightGCN trained on ``data`` minus the ``args.retrain`` share of its training pairs with
    the lowest keep scores (the two-stage use of a denoiser: ``denoise``, then train on
    cleaned.*): its test metrics and the removed set's precision."""
    users, items = (t.cpu().numpy() for t in graph.edges())
    drop = np.argsort(keep, kind="stable")[: round(args.retrain * keep.shape[0])]
    gone = np.isin(
        data.train[0] * data.num_items + data.train[1], users[drop] * data.num_items + items[drop]
    )
    cleaned = dataclasses.replace(
        data,
        train=(data.train[0][~gone], data.train[1][~gone]),
        noise=None if data.noise is None else np.asarray(data.noise)[~gone],
        noise_type=None if data.noise_type is None else np.asarray(data.noise_type)[~gone],
    )
    out = _train(DENOISERS["lightgcn"], cleaned, setting, args, folder / "retrain")
    out["removed"] = int(gone.sum())
    if types is not None:
        out["removed_precision"] = float((types[drop] > 0).mean()) if drop.size else None
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
