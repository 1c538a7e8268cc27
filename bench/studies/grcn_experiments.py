"""GRCN against LightGCN (issue 15): on TikTok, and on the built-in data with injected noise.

Study: does GRCN beat LightGCN on TikTok and under injected noise (issue 15)? Answer:
bench/results/grcn_tiktok.json and grcn_noise.json (+ .png); reproduction rows that the future
bench/reproduce.py harness (issue 23) will gather.

    python -m bench.studies.grcn_experiments tiktok [--epochs 60] [--set lr=0.001 --set grcn_routing=3 ...]
    python -m bench.studies.grcn_experiments noise [--ratios 0.1 0.2] [--epochs 60]

Both models train with the toolkit's loop (BPR, Adam, evaluation on validation every
``eval_every`` epochs, early stopping on validation Recall@20, test once with the selected
weights); each model gets its own defaults (LightGCN 3 layers, GRCN 2) unless ``--set`` says
otherwise. ``noise`` adds ``ratio x |train_u|`` random unobserved items per user to the built-in
data's training set (which already holds its planted popularity noise) and scores GRCN's keep
scores (the degree-scaled refined weights, mean of the two directions) against every known noisy
interaction: ROC AUC. Writes ``<out>/grcn_<experiment>.json`` (each run's summary, its learning
curve, the AUCs, the environment, the thread count) and ``grcn_<experiment>.png`` (validation
curves).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fastgcn_denoise.pipelines.denoise import roc_auc
from fastgcn_denoise.pipelines.train import make_config, restore_run, train

from ..common import RESULTS, SHARED_DATA, environment, write_json
from . import robustness

TIKTOK = SHARED_DATA / "tiktok"
MODELS = ("lightgcn", "grcn")


def _options(model: str | None = None) -> dict:
    return robustness._options(model, MODELS)


def _setting(text: str) -> tuple[str, object]:
    return robustness._setting(text, MODELS)


def _curve(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line]
    return [
        {
            "epoch": r["epoch"],
            "loss": r["loss"],
            "seconds": r["seconds"],
            **({"valid": r["valid"]} if "valid" in r else {}),
        }
        for r in rows
    ]


def _keep_auc(out: Path) -> dict:
    """ROC AUC of the selected GRCN's keep scores against the known noise of its training graph."""
    _, _, prep, model = restore_run(out / "checkpoint.pt")
    model.eval()
    scores = model.keep_scores(prep.train).double().cpu().numpy()
    noise = prep.data.noise_per_edge(prep.train)
    return {
        "noisy_edges": int(noise.sum()),
        "edges": int(noise.shape[0]),
        "roc_auc": roc_auc(scores.mean(0), ~noise),
        "roc_auc_to_user": roc_auc(scores[0], ~noise),
        "roc_auc_to_item": roc_auc(scores[1], ~noise),
    }


def run_one(
    model: str,
    data,
    out: Path,
    epochs: int,
    settings: dict,
    noise: float = 0.0,
    score_noise: bool = False,
) -> dict:
    own = _options(model)  # a setting of one model only (grcn_*) skips the other
    config = make_config(
        model=model,
        data=data,
        out=str(out),
        epochs=epochs,
        noise=noise,
        progress=False,
        overwrite=True,
        **{k: v for k, v in settings.items() if k in own},
    )
    result = train(config)
    row = {
        "model": model,
        "noise": noise,
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "valid": result["valid"],
        "test": result["test"],
        "baselines": result["baselines"],
        "seconds_per_epoch": result["timing"]["seconds_per_epoch"],
        "train_seconds": result["timing"]["train_seconds"],
        "curve": _curve(out),
        "config": result["config"],
    }
    if score_noise:
        row["keep_scores"] = _keep_auc(out)
    print(
        json.dumps({k: v for k, v in row.items() if k not in ("curve", "config", "baselines")}),
        flush=True,
    )
    return row


def _plot(rows: list[dict], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in rows:
        pts = [(c["epoch"], c["valid"]["recall@20"]) for c in r["curve"] if "valid" in c]
        label = f"{r['model']}" + (f" noise {r['noise']:g}" if r["noise"] else "")
        ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("valid recall@20")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.studies.grcn_experiments", description=__doc__.split("\n")[0]
    )
    ap.add_argument("experiment", choices=["tiktok", "noise"])
    ap.add_argument(
        "--data",
        default=None,
        help="data (default: ../shared/data/tiktok, or the built-in data for noise)",
    )
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument(
        "--set",
        dest="settings",
        type=_setting,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="an option of the loop or of a model, for every run that has it (repeatable)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads")
    ap.add_argument("--runs", default="runs/grcn", help="training output folders")
    ap.add_argument("--out", default=None, help=f"results folder (default {RESULTS})")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    name = f"grcn_{args.experiment}"
    rows = []

    def save():  # after every run, so an interrupted experiment keeps what it measured
        payload = {
            "environment": environment("cpu"),
            "threads": torch.get_num_threads(),
            "machine_shared": True,
            "experiment": args.experiment,
            "epochs": args.epochs,
            "settings": dict(args.settings),
            "runs": rows,
        }
        path = write_json(name, payload, args.out)
        _plot(rows, path.with_suffix(".png"), f"{name}: validation recall@20")
        return path

    if args.experiment == "tiktok":
        jobs = [
            (model, args.data or str(TIKTOK), runs / f"tiktok-{model}", 0.0)
            for model in args.models
        ]
    else:
        jobs = [
            (model, args.data, runs / f"noise{ratio:g}-{model}", ratio)
            for ratio in args.ratios
            for model in args.models
        ]
    for model, data, out, ratio in jobs:
        rows.append(
            run_one(
                model,
                data,
                out,
                args.epochs,
                dict(args.settings),
                noise=ratio,
                score_noise=args.experiment == "noise" and model == "grcn",
            )
        )
        path = save()
    for r in rows:
        extra = f"  keep AUC {r['keep_scores']['roc_auc']:.3f}" if "keep_scores" in r else ""
        print(
            f"{r['model']:9s} noise {r['noise']:.2f}  best epoch {r['best_epoch']:3d}  test "
            f"R@20 {r['test']['recall@20']:.4f}  N@20 {r['test']['ndcg@20']:.4f}{extra}"
        )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
