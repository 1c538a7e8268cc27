"""The denoising scoreboard (issue 22): every denoiser and the pipeline on one protocol.

For each data set, noise setting and seed it trains, with the same budget and validation-based
selection, the rows

    lightgcn      LightGCN on the noisy graph (the pipeline's own baseline run)
    oracle        LightGCN on the same graph without the known noise
    pipeline      ``fastgcn_denoise.pipelines.denoise.denoise`` with its defaults (the auto
                  detector, the weight action with its ``DEFAULT_WEIGHTINGS`` as candidates; a
                  cached run of the topic detector stands for it where auto chooses topic)
    pipeline-drop the same with ``--action drop`` (its grid of drop fractions)
    pipeline-both the weight action with the rank weights in the propagation, and in the
                  propagation and the BPR loss, as candidates (``BOTH_WEIGHTINGS``), run in the
                  pipeline row's folder (resumed: only the missing retrain trains)
    pipeline-D    ``--action drop`` with detector D instead of the default (``detect.DETECTORS``:
                  pipeline-knn, pipeline-spectral, pipeline-knn-spectral, pipeline-topic,
                  pipeline-knn-topic, pipeline-ensemble)
    t-ce, r-ce, rgcf, mask, dgr   LightGCN with that plug-in (its paper's defaults; T-CE's
                  ramp scaled to the data, see ``--tce-ramp-epochs``)
    knn-retrain   item-kNN keep scores, the lowest 20 % dropped, LightGCN retrained

and writes ``bench/results/denoise_scoreboard[_TAG].json``: ``{"environment", "epochs",
"rows": [{"data", "noise", "ratio", "method", "recall@20", "recall@20_std", "ndcg@20", "auc",
"gap_recovered"}, ...]}`` (mean and std over the seeds done; ``auc``: ROC AUC of the method's
keep scores against the known noise, null without scores or noise; ``gap_recovered``:
(method − noisy) / (oracle − noisy) of the means, null for the reference rows and at ratio 0),
plus ``seeds`` and ``details`` (per-run records) beside them, and a PNG.

Data: ``synthetic`` (the built-in generator with planted noise of the setting's type: its clean
graph is the same for every ratio of a seed), ``gowalla`` or ``yelp`` (the LightGNN split) or a
LightGCN folder: a ``--users`` subsample with noise injected by ``inject_noise``. Settings
(``--settings``): ``none``, ``uniform:0.1``, ``uniform:0.2``, ``popularity:0.1`` by default.

Every finished run is cached as ``--runs``/<data>/<setting>-s<seed>/<method>.json, so the grid
can be stopped and continued (``--fresh`` redoes them); the JSON is rewritten after every run.

    nice python -m bench.denoise_scoreboard [--data synthetic] [--seeds 0 1 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from fastgcn_denoise.data import inject_noise, load_dataset, make_synthetic, save_npz
from fastgcn_denoise.denoisers.knn import item_knn_scores
from fastgcn_denoise.pipelines.clean import lowest_k
from fastgcn_denoise.pipelines.denoise import (
    CLEAN_BELOW,
    DEFAULT_ACTION,
    DEFAULT_DETECTOR,
    DEFAULT_WEIGHTINGS,
    Weighting,
    chosen_kind,
    denoise,
    roc_auc,
    validation_choice,
)
from fastgcn_denoise.pipelines.detect import detect
from fastgcn_denoise.pipelines.train import make_config, prepare_data, restore_run, train

from .common import RESULTS, SHARED_DATA, environment, write_json

HEADLINE, NDCG = "recall@20", "ndcg@20"
DEFAULT_SETTINGS = ("none", "uniform:0.1", "uniform:0.2", "popularity:0.1")
METHODS = (
    "lightgcn",
    "oracle",
    "pipeline",
    "pipeline-drop",
    "pipeline-both",
    *(
        f"pipeline-{d}"
        for d in ("knn", "spectral", "knn-spectral", "topic", "knn-topic", "ensemble")
    ),
    "t-ce",
    "r-ce",
    "rgcf",
    "knn-retrain",
    "mask",
    "dgr",
)
DEFAULT_METHODS = ("lightgcn", "oracle", "pipeline", "t-ce", "r-ce", "rgcf", "knn-retrain")
PLUGIN_METHODS = ("t-ce", "r-ce", "rgcf", "mask", "dgr")
REAL = {"gowalla": "gowalla", "yelp": "yelp_lightgnn"}
# pipeline-both: the rank weights in the propagation, and in the propagation and the loss (the
# candidates before knees; kept as a row of its own)
BOTH_WEIGHTINGS = ("1", "1:loss")
QUICK_SIZES = {"num_users": 200, "num_items": 120, "dim": 8, "avg_degree": 12}


def parse_setting(text: str) -> tuple[str, float]:
    if text == "none":
        return "none", 0.0
    kind, _, ratio = text.partition(":")
    if kind not in ("uniform", "popularity") or not ratio:
        raise argparse.ArgumentTypeError(f"expected none, uniform:R or popularity:R, got {text!r}")
    return kind, float(ratio)


def setting_data(args, kind: str, ratio: float, seed: int):
    """(noisy data, the same without its noise) for one setting and seed."""
    if args.data == "synthetic":
        sizes = QUICK_SIZES if args.quick else {}
        data = make_synthetic(
            seed=seed, noise_ratio=ratio, noise_mix=kind if ratio else "popularity", **sizes
        )
    else:
        from .denoise.settings import subsample  # the noise benchmark's seeded user subsample

        source = SHARED_DATA / REAL[args.data] if args.data in REAL else Path(args.data)
        base = subsample(load_dataset(source), args.users, args.min_item, seed=0)
        data = inject_noise(base, ratio, seed=seed, kind=kind) if ratio else base
    if data.noise is None:
        return data, data
    return data, data.take_train(~np.asarray(data.noise, bool))


def _options(args, seed: int, out: Path, data_path: Path) -> dict:
    return {
        "data": str(data_path),
        "out": str(out),
        "epochs": args.epochs,
        "lr": args.lr,
        "eval_every": args.eval_every,
        "patience": args.patience,
        "seed": seed,
        "progress": False,
        "verbose": False,
        "valid_fraction": 0.1,
    }


def _result(res: dict) -> dict:
    return {
        "test": {k: res["test"][k] for k in (HEADLINE, NDCG)},
        "valid": {k: (res.get("valid") or {}).get(k) for k in (HEADLINE, NDCG)},
        "seconds": res["timing"]["train_seconds"] + res["timing"]["eval_seconds"],
    }


def run_method(method: str, args, data, clean, seed: int, folder: Path) -> dict:
    """Train one row's model for one setting and seed; its record."""
    if method == "pipeline-both":  # the default pipeline's runs are its first candidates
        folder = folder.parent / "pipeline"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "data.npz"
    save_npz(clean if method == "oracle" else data, path)
    noisy = data.noise is not None and bool(np.asarray(data.noise).any())
    t0 = time.perf_counter()
    if method in ("lightgcn", "oracle"):
        rec = _result(train(make_config("lightgcn", **_options(args, seed, folder / "run", path))))
    elif method.startswith("pipeline"):
        variant = method.removeprefix("pipeline").removeprefix("-")
        choice = {"weightings": BOTH_WEIGHTINGS} if variant == "both" else {}
        if variant not in ("", "both"):
            choice["action"] = "drop"
        if variant not in ("", "drop", "both"):
            choice["detector"] = variant
        # resumed: the sub-runs an earlier pipeline finished in the folder are only evaluated
        summary = denoise(
            make_config("lightgcn", **_options(args, seed, folder / "run", path)),
            resume=True,
            **choice,
        )
        rec = {
            "test": {k: summary["retrained"]["test"][k] for k in (HEADLINE, NDCG)},
            "baseline": {k: summary["baseline"]["test"][k] for k in (HEADLINE, NDCG)},
            "detector": summary["detector"],
            "detector_used": summary["detector_used"],
            "looks_clean": summary["looks_clean"],
            "noise_rate": (summary["detector_choices"].get("auto") or {}).get("noise_rate"),
            "ranking": summary["ranking"],
            "action": summary["action"],
            "chosen": summary["chosen"],
            "loss_weights": summary["loss_weights"],
            "knee": summary["knee"],
            "posterior": summary["posterior"],
            "drop_fraction": summary["drop_fraction"],
            "auc": (summary.get("planted_noise") or {}).get("roc_auc"),
            "grid": [
                {k: r[k] for k in ("action", "fraction", "dropped", "valid", "test")}
                | {
                    "knee": r.get("knee"),
                    "posterior": r.get("posterior", False),
                    "loss_weights": r.get("loss_weights", False),
                }
                for r in summary["grid"]
            ],
            "timing": summary["timing"],
        }
    elif method == "knn-retrain":
        graph = data.train_graph()
        keep = item_knn_scores(graph).numpy()
        users, items = (t.numpy() for t in graph.edges())
        dropped, info = lowest_k(keep, users, items, data.num_users, data.num_items, 0.2, seed)
        gone = np.isin(
            data.train[0] * data.num_items + data.train[1],
            users[dropped] * data.num_items + items[dropped],
        )
        save_npz(data.take_train(~gone), path)
        rec = _result(train(make_config("lightgcn", **_options(args, seed, folder / "run", path))))
        types = data.noise_types_per_edge(graph)
        rec["auc"] = roc_auc(-keep, types > 0) if noisy else None
        rec["dropped"] = info["dropped"]
    else:
        options = _options(args, seed, folder / "run", path)
        if method == "t-ce":
            steps = math.ceil(data.train[0].shape[0] / 2048)
            options["tce_num_gradual"] = max(1, args.tce_ramp_epochs * steps)
        rec = _result(train(make_config("lightgcn", plugins=(method,), **options)))
        _, _, prep, model = restore_run(folder / "run" / "checkpoint.pt")
        model.eval()
        with torch.no_grad():
            keep = model.keep_scores(prep.train)
        types = prep.data.noise_types_per_edge(prep.train)
        if keep is not None and noisy and types is not None:
            mean = keep.detach().double().cpu().numpy().reshape(-1, prep.train.num_edges).mean(0)
            rec["auc"] = roc_auc(-mean, types > 0)
    rec["wall_seconds"] = time.perf_counter() - t0
    path.unlink(missing_ok=True)
    return rec


def _stat(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def rows_of(records: dict, data_name: str) -> list[dict]:
    """The scoreboard rows (issue 22's shape) from {(kind, ratio, method, seed): record}.

    A method's gap is taken against LightGCN's and the oracle's means over the same seeds as the
    method's own (a method run on fewer seeds is not compared with other seeds' baselines)."""
    groups: dict = {}
    for (kind, ratio, method, seed), rec in records.items():
        groups.setdefault((kind, ratio, method), {})[seed] = rec

    def mean_over(kind, ratio, method, seeds):
        have = groups.get((kind, ratio, method), {})
        if not set(seeds) <= set(have):
            return None
        return _stat([have[s]["test"][HEADLINE] for s in seeds])[0]

    rows = []
    for (kind, ratio, method), by_seed in sorted(
        groups.items(), key=lambda kv: (kv[0][1], kv[0][0], METHODS.index(kv[0][2]))
    ):
        recs = list(by_seed.values())
        mean, std = _stat([r["test"][HEADLINE] for r in recs])
        noisy = mean_over(kind, ratio, "lightgcn", by_seed)
        oracle = mean_over(kind, ratio, "oracle", by_seed)
        gap = None
        if (
            method not in ("lightgcn", "oracle")
            and ratio > 0
            and None not in (noisy, oracle)
            and oracle != noisy
        ):
            gap = (mean - noisy) / (oracle - noisy)
        rows.append(
            {
                "data": data_name,
                "noise": kind,
                "ratio": ratio,
                "method": method,
                "recall@20": mean,
                "recall@20_std": std,
                "ndcg@20": _stat([r["test"][NDCG] for r in recs])[0],
                "auc": _stat([r.get("auc") for r in recs])[0],
                "gap_recovered": gap,
                "seeds": len(recs),
            }
        )
    return rows


def _current(method: str, cache: Path, detector: str = DEFAULT_DETECTOR) -> bool:
    """Whether a cached pipeline run used today's default detector and action (others are always
    current). Runs from before the within-user cut, whose knn-spectral was another mix, have no
    ``ranking``; runs from before the weight action no ``action``; runs whose weighted
    candidates were not today's ``DEFAULT_WEIGHTINGS`` (rows without a knee had knee 1) are not
    the default; nor are auto runs from before its clean-log check (no ``looks_clean``)."""
    if method != "pipeline":
        return True
    rec = json.loads(cache.read_text())
    weighted = {Weighting.of(r) for r in rec.get("grid", ()) if r.get("action") == "weight"}
    return (
        rec.get("detector") == detector
        and (detector != "auto" or "looks_clean" in rec)
        and "ranking" in rec
        and rec.get("action") == DEFAULT_ACTION
        and (rec.get("looks_clean") or weighted == set(DEFAULT_WEIGHTINGS))
    )


def _rechosen(rec: dict) -> dict:
    """A cached pipeline record with its choice made again by today's ``validation_choice`` from
    the validation metrics its grid keeps: what a rerun would choose, as its candidates' runs
    would not change (records of other methods, or without every validation metric, as they
    are)."""
    grid = rec.get("grid")
    if not grid or not all(r.get("valid") for r in grid):
        return rec
    best = validation_choice(grid)
    return rec | {
        "test": {k: best["test"][k] for k in (HEADLINE, NDCG)},
        "chosen": chosen_kind(best),
        "drop_fraction": best["fraction"],
        "knee": best.get("knee"),
        "posterior": best.get("posterior", False),
        "loss_weights": best.get("loss_weights", False),
    }


RELABELLED = "the cached topic run (auto chose topic)"


def _auto_chose_topic(cache: Path, args, data, seed: int) -> dict | None:
    """A cached pipeline run of the ``topic`` detector, relabelled as today's default when the
    default (``auto``) chooses ``topic`` on the same data: the pipeline then computes exactly what
    the cached run did (same scores, same retrains), so it is not trained again. A run relabelled
    before the clean-log check gains its noise estimate the same way. None when the cache is
    another candidate set, or ``auto`` chooses otherwise or finds the log clean."""
    rec = json.loads(cache.read_text())
    relabelled = rec.get("detector") == "auto" and rec.get("from") == RELABELLED
    if DEFAULT_DETECTOR != "auto" or (relabelled and "looks_clean" in rec):
        return None
    if not (relabelled or _current("pipeline", cache, detector="topic")):
        return None
    path = cache.parent / "data.npz"
    save_npz(data, path)
    try:
        config = make_config("lightgcn", **_options(args, seed, cache.parent, path))
        report = {}
        detect("auto", prepare_data(config), None, config, None, report=report)
    finally:
        path.unlink(missing_ok=True)
    rate = report["auto"]["noise_rate"]
    if report["auto"]["chosen"] != "topic" or (rate is not None and rate < CLEAN_BELOW):
        return None  # another detector, or a log that looks clean: the pipeline runs
    return rec | {
        "detector": "auto",
        "detector_used": "topic",
        "calibration_auc": report["auto"]["calibration_auc"],
        "noise_rate": rate,
        "looks_clean": False,
        "from": RELABELLED,
    }


def _noise_free(records: dict, runs: Path, seed: int) -> dict | None:
    """LightGCN's record on the seed's noise-free setting (this process's, or another's cache)."""
    if ("none", 0.0, "lightgcn", seed) in records:
        return records[("none", 0.0, "lightgcn", seed)]
    for name, key in (("lightgcn.json", "test"), ("pipeline.json", "baseline")):
        cache = runs / f"none-0-s{seed}" / name
        if cache.exists():
            return {"test": json.loads(cache.read_text())[key]}
    return None


def plot(rows: list[dict], path: Path, title: str):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    settings = list(dict.fromkeys((r["noise"], r["ratio"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(settings), 4.2))
    width = 0.8 / max(len(methods), 1)
    for j, method in enumerate(methods):
        xs, ys, es = [], [], []
        for k, (kind, ratio) in enumerate(settings):
            row = next(
                (r for r in rows if (r["noise"], r["ratio"], r["method"]) == (kind, ratio, method)),
                None,
            )
            if row and row["recall@20"] is not None:
                xs.append(k + (j - (len(methods) - 1) / 2) * width)
                ys.append(row["recall@20"])
                es.append(row["recall@20_std"] or 0)
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=method)
    ax.set_xticks(range(len(settings)), [f"{k} {r:g}" if r else "none" for k, r in settings])
    low = min(r["recall@20"] for r in rows if r["recall@20"] is not None)
    ax.set_ylim(low * 0.9, None)
    ax.set_ylabel("test Recall@20")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="python -m bench.denoise_scoreboard", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--data", default="synthetic", help="synthetic, gowalla, yelp, or a LightGCN folder"
    )
    ap.add_argument(
        "--settings",
        type=parse_setting,
        nargs="+",
        default=[parse_setting(s) for s in DEFAULT_SETTINGS],
        help=f"noise settings (default: {' '.join(DEFAULT_SETTINGS)})",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--eval-every", type=int, default=2)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument(
        "--tce-ramp-epochs",
        type=int,
        default=10,
        help="T-CE reaches its maximum drop rate after this many epochs' steps (the "
        "paper's 30,000 iterations were a few epochs of its data sets)",
    )
    ap.add_argument("--users", type=int, default=6000, help="real data: users in the subsample")
    ap.add_argument("--min-item", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", default="runs/denoise_scoreboard")
    ap.add_argument("--fresh", action="store_true", help="redo cached runs")
    ap.add_argument(
        "--cached-only",
        action="store_true",
        help="train nothing: write the JSON from the runs cached so far",
    )
    ap.add_argument("--out", default=None, help=f"results folder (default {RESULTS})")
    ap.add_argument("--tag", default=None, help="appended to the results' name")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny generated data, 2 epochs (tests); results go under --runs",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.eval_every, args.patience = 2, 1, 2
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data_name = args.data if args.data in ("synthetic", *REAL) else Path(args.data).name
    runs = Path(args.runs) / data_name
    name = (
        "denoise_scoreboard"
        + ("" if data_name == "synthetic" else f"_{data_name}")
        + (f"_{args.tag}" if args.tag else "")
    )
    out_dir = Path(args.out or (runs if args.quick else RESULTS))
    records, t_start = {}, time.perf_counter()
    for seed in args.seeds:
        for kind, ratio in sorted(args.settings, key=lambda st: st[1] > 0):
            data, clean = setting_data(args, kind, ratio, seed)
            # the pipeline first: its baseline run is the lightgcn row (same data, seed, budget)
            order = sorted(
                args.methods, key=lambda m: (not m.startswith("pipeline"), m == "oracle")
            )
            for method in order:
                if method == "oracle" and ratio == 0:
                    continue  # the clean graph: the oracle is LightGCN itself
                cache = runs / f"{kind}-{ratio:g}-s{seed}" / f"{method}.json"
                pipeline = next(
                    (
                        records[(kind, ratio, m, seed)]
                        for m in METHODS
                        if m.startswith("pipeline") and (kind, ratio, m, seed) in records
                    ),
                    None,
                )
                reused = None
                if cache.exists() and not args.fresh and method == "pipeline":
                    reused = _auto_chose_topic(cache, args, data, seed)
                if cache.exists() and not args.fresh and _current(method, cache):
                    rec = _rechosen(json.loads(cache.read_text()))
                elif reused is not None:
                    rec = reused
                    cache.write_text(json.dumps(rec, indent=1))
                elif method == "lightgcn" and pipeline is not None:
                    rec = {"test": pipeline["baseline"], "from": "the pipeline's baseline run"}
                    cache.write_text(json.dumps(rec, indent=1))
                elif (
                    method == "oracle"
                    and args.data == "synthetic"
                    and _noise_free(records, runs, seed) is not None
                ):
                    # the generator's clean graph is the same at every ratio of a seed
                    rec = dict(
                        _noise_free(records, runs, seed),
                        **{"from": "lightgcn on the seed's noise-free setting"},
                    )
                elif args.cached_only:
                    continue
                else:
                    print(
                        f"[{time.perf_counter() - t_start:.0f} s] {kind} {ratio:g} seed {seed}: "
                        f"{method} ...",
                        flush=True,
                    )
                    rec = run_method(method, args, data, clean, seed, cache.parent / method)
                    cache.write_text(json.dumps(rec, indent=1))
                records[(kind, ratio, method, seed)] = rec
                if method == "lightgcn" and ratio == 0:
                    records[(kind, ratio, "oracle", seed)] = rec
                print(
                    f"  {kind} {ratio:g} s{seed} {method}: test {HEADLINE} "
                    f"{rec['test'][HEADLINE]:.4f}"
                    + (f", auc {rec['auc']:.3f}" if rec.get("auc") is not None else ""),
                    flush=True,
                )
            rows = rows_of(records, data_name)
            if not rows:
                continue
            payload = {
                "environment": environment("cpu"),
                "epochs": args.epochs,
                "rows": rows,
                "seeds": sorted({k[3] for k in records}),
                "protocol": {
                    k: v for k, v in vars(args).items() if k not in ("fresh", "cached_only")
                },
                "details": [
                    dict(zip(("noise", "ratio", "method", "seed"), k), **v)
                    for k, v in records.items()
                ],
                "wall_seconds": time.perf_counter() - t_start,
            }
            path = write_json(name, payload, out_dir)
    plot(
        rows,
        out_dir / f"{name}.png",
        f"denoising scoreboard, {data_name} ({len(args.seeds)} seed(s), {args.epochs} epochs)",
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
