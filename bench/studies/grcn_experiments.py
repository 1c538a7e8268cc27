"""GRCN against LightGCN (issues 15, 23): on TikTok, and on the built-in data with injected noise.

Study: does GRCN beat LightGCN and most-popular on TikTok, which of its parts carry it, and does
it beat LightGCN under injected noise? Answer: bench/results/reproduction_grcn.json (the rows
bench/reproduce.py gathers), grcn_ablation.json, grcn_tiktok.json and grcn_noise.json (+ .png).

    python -m bench.studies.grcn_experiments reproduce [--seeds 0 1 2 3 4] [--resume]
    python -m bench.studies.grcn_experiments ablation [--resume]
    python -m bench.studies.grcn_experiments tiktok [--epochs 60] [--set lr=0.001 --set grcn_routing=3 ...]
    python -m bench.studies.grcn_experiments noise [--ratios 0.1 0.2] [--epochs 60]

``reproduce`` and ``ablation`` run the issue-23 protocol (``PROTOCOL``: the same loop for both
models, each at its own learning rate, ``LR``) from the models' defaults; ``--resume`` keeps the
runs that finished (their metrics.json) and continues the interrupted ones from their
checkpoints, so a stopped study picks up where it was.

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
import statistics
from pathlib import Path

import torch

from fastgcn_denoise.pipelines.denoise import roc_auc
from fastgcn_denoise.pipelines.train import make_config, restore_run, train

from ..common import RESULTS, SHARED_DATA, environment, write_json
from . import robustness

TIKTOK = SHARED_DATA / "tiktok"
MODELS = ("lightgcn", "grcn")
METRIC = "recall@20"
# Issue 23's protocol on TikTok, both models: <= 60 epochs of batch 2048, validation Recall@20
# every 2 epochs, stop after 5 evaluations without a better one, the selected epoch tested once.
PROTOCOL = {"epochs": 60, "batch_size": 2048, "eval_every": 2, "patience": 5}
# Each model's learning rate, chosen on validation (LightGCN's from the issue-15 comparison;
# GRCN's seed 0 peaked at valid Recall@20 0.0956 with 2e-3 (epoch 6), 0.1013 with 1e-3 (epoch 24)).
LR = {"lightgcn": 5e-3, "grcn": 1e-3}
# The ablation (issue 23) runs at 2e-3, where GRCN peaks in about 6 epochs instead of 20 (the
# machine's budget): GRCN's defaults, then one part changed at a time.
ABLATION_LR = 2e-3
ABLATIONS = {
    "default": {},
    "no refinement (uniform 1/deg weights)": {"grcn_weight_mode": "mean", "grcn_temperature": 1e6},
    "refinement without pruning (soft)": {"grcn_pruning": "soft"},
    "image only": {"features": ("image=" + str(TIKTOK / "image_feat.npy"),)},
    "audio only": {"features": ("audio=" + str(TIKTOK / "audio_feat.npy"),)},
    "no edge dropout (the README's 0)": {"grcn_edge_dropout": 0.0},
    "L2-normalised embeddings (official has_norm)": {"grcn_normalize": True},
}


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
    resume: bool = False,
) -> dict:
    """One training run's summary; ``resume``: a finished run (metrics.json) is read back, an
    interrupted one (checkpoint.pt) continues, anything else starts afresh."""
    own = _options(model)  # a setting of one model only (grcn_*) skips the other
    done = resume and (out / "metrics.json").is_file()
    if done:
        result = json.loads((out / "metrics.json").read_text())
    else:
        started = resume and (out / "checkpoint.pt").is_file()
        config = make_config(
            model=model,
            data=data,
            out=str(out),
            epochs=epochs,
            noise=noise,
            progress=False,
            overwrite=not started,
            resume=started,
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


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _protocol_run(model, variant, settings, seed, args, lr) -> dict:
    out = Path(args.runs) / f"tiktok-{model}-{_slug(variant)}-lr{lr:g}-s{seed}"
    merged = {**PROTOCOL, "lr": lr, "seed": seed, **settings}
    epochs = merged.pop("epochs")
    row = run_one(model, args.data or str(TIKTOK), out, epochs, merged, resume=args.resume)
    return {**row, "variant": variant, "seed": seed, "settings": settings}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.split(" (")[0].lower()).strip("-")


def reproduction_rows(runs: list[dict], seeds: list[int], lightgcn_tiktok_issue: float) -> list:
    """The rows of reproduction_grcn.json (bench/reproduce.py's shape) from the protocol's runs."""
    by_model = {m: [r for r in runs if r["model"] == m] for m in MODELS}
    if not all(by_model.values()):  # a model not run yet (--models): no rows
        return []
    pop = by_model["lightgcn"][0]["baselines"]["most_popular"]["test"][METRIC]
    seed_flags = " ".join(map(str, seeds))
    command = f"python -m bench.studies.grcn_experiments reproduce --seeds {seed_flags} --resume"
    stats = {m: _mean_std([r["test"][METRIC] for r in rs]) for m, rs in by_model.items()}
    rows = []
    for model in MODELS:
        mean, std = stats[model]
        rs = by_model[model]
        row = {
            "method": model,
            "data": "tiktok",
            "metric": METRIC,
            "ours": mean,
            "ours_std": std,
            "seeds": len(rs),
            "epochs": max(r["epochs_run"] for r in rs),
            "selected_epochs": [r["best_epoch"] for r in rs],
            "seed_values": {str(r["seed"]): r["test"][METRIC] for r in rs},
            "lr": LR[model],
            "protocol": PROTOCOL,
            "baseline": "most-popular",
            "baseline_value": pop,
            "paper": None,
            "command": command,
        }
        if model == "grcn":
            lightgcn = stats["lightgcn"][0]
            row["lightgcn"] = lightgcn
            row["lightgcn_issue"] = lightgcn_tiktok_issue
            row["target"] = "above most-popular and >= LightGCN"
            row["status"] = "met" if mean > pop and mean >= lightgcn else "missed"
            row["paper_note"] = (
                "the GRCN paper reports Recall@10 on its own TikTok/Kwai/MovieLens splits, "
                "not this (DiffMM) split"
            )
        else:
            row["target"] = "above most-popular"
            row["status"] = "met" if mean > pop else "missed"
        rows.append(row)
    rows.append(
        {
            "method": "most-popular",
            "data": "tiktok",
            "metric": METRIC,
            "ours": pop,
            "ours_std": 0.0,
            "seeds": 1,
            "epochs": 0,
            "baseline": None,
            "baseline_value": None,
            "paper": None,
            "command": command + "  # every run's metrics.json: baselines.most_popular",
            "status": "reported",
            "paper_note": "every user's unseen items ranked by training popularity (deterministic)",
        }
    )
    return rows


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
    ap.add_argument("experiment", choices=["reproduce", "ablation", "tiktok", "noise"])
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
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="reproduce: seeds"
    )
    ap.add_argument(
        "--resume",
        action="store_true",
        help="reproduce/ablation: keep finished runs, continue interrupted ones",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads")
    ap.add_argument("--runs", default="runs/grcn", help="training output folders")
    ap.add_argument("--out", default=None, help=f"results folder (default {RESULTS})")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.experiment in ("reproduce", "ablation"):
        return protocol_main(args)
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


# The issue-15 comparison's LightGCN figure, quoted by issue 23 (grcn_tiktok.json, test R@20).
LIGHTGCN_ISSUE = 0.0964


def protocol_main(args) -> int:
    """``reproduce`` (both models, every seed) or ``ablation`` (GRCN's variants, seed 0)."""
    runs, summaries = [], []

    def brief(r):
        keep = ("model", "variant", "seed", "best_epoch", "epochs_run", "seconds_per_epoch")
        return {
            **{k: r[k] for k in keep},
            "valid": r["valid"][METRIC],
            "test": r["test"][METRIC],
            "ndcg@20": r["test"]["ndcg@20"],
            "settings": r["settings"],
            "curve": r["curve"],
        }

    if args.experiment == "reproduce":
        for seed in args.seeds:
            for model in args.models:
                runs.append(_protocol_run(model, "default", {}, seed, args, LR[model]))
                summaries.append(brief(runs[-1]))
                rows = reproduction_rows(runs, args.seeds, LIGHTGCN_ISSUE)
                payload = {
                    "environment": environment("cpu"),
                    "threads": torch.get_num_threads(),
                    "machine_shared": True,
                    "protocol": PROTOCOL,
                    "lr": LR,
                    "rows": rows,
                    "runs": summaries,
                }
                path = write_json("reproduction_grcn", payload, args.out)
        for r in payload["rows"]:
            print(
                f"{r['method']:13s} test {METRIC} {r['ours']:.4f} +- {r['ours_std']:.4f}"
                f"  seeds {r['seeds']}  {r['status']}"
            )
    else:
        # The default last: it is also the reproduction's seed 0 (a concurrent ``reproduce``
        # may be training it; with --resume its finished run is read back here).
        order = sorted(ABLATIONS, key=lambda v: v == "default")
        for variant in order:
            runs.append(_protocol_run("grcn", variant, ABLATIONS[variant], 0, args, ABLATION_LR))
            summaries.append(brief(runs[-1]))
            summaries.sort(key=lambda r: list(ABLATIONS).index(r["variant"]))
            payload = {
                "environment": environment("cpu"),
                "threads": torch.get_num_threads(),
                "machine_shared": True,
                "protocol": PROTOCOL,
                "lr": ABLATION_LR,
                "note": "GRCN on TikTok, seed 0, one part changed at a time from the defaults, "
                "at lr 2e-3 (the reproduction runs 1e-3: same defaults, slower, higher peak)",
                "runs": summaries,
            }
            path = write_json("grcn_ablation", payload, args.out)
        for r in summaries:
            print(
                f"{r['variant']:48s} best epoch {r['best_epoch']:3d}  valid {r['valid']:.4f}"
                f"  test {r['test']:.4f}"
            )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
