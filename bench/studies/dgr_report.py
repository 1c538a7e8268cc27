"""Collect DGR quality runs (``fastgcn-denoise train`` output folders) into one JSON and a PNG.

Study: does DGR improve LightGCN / SimGCL / XSimGCL on the Yelp split (issue 12)? Answer:
bench/results/dgr_yelp_cpu.json (+ .png); a reproduction row that the future bench/reproduce.py
harness (issue 23) will gather.

    python -m bench.studies.dgr_report runs/q/* --out bench/results/dgr_yelp_cpu

Writes ``<out>.json``: per run the model, whether DGR was on, its DGR/backbone settings, best
epoch, valid and test Recall/NDCG@20, row-diff and MAD of the selected model, epochs and seconds
per epoch, and the relative test Recall@20 change against the run named as its baseline (the
same backbone without DGR, and LightGCN); where the runs' epoch budgets differ, also
``equal_budget_valid``: each run's best valid Recall@20 within the largest budget every run
reached, and its change against LightGCN's (selection on validation at equal epochs, since a
shorter run has no test figure of the other runs at its budget); ``<out>.png``: valid Recall@20 and row-diff per
evaluation for every run (the learning curves).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..common import environment


def load(folder: Path) -> dict | None:
    """One run's summary from its metrics.json and log.jsonl (None if it has not finished)."""
    path = folder / "metrics.json"
    if not path.exists():
        return None
    m = json.loads(path.read_text())
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line]
    curve = [
        {
            "epoch": r["epoch"],
            "valid_recall@20": r["valid"]["recall@20"],
            "row_diff": r["valid"].get("row_diff"),
            "loss": r["loss"],
        }
        for r in log
        if "valid" in r
    ]
    cfg = m["config"]
    return {
        "run": folder.name,
        "model": m["model"],
        "dgr": "dgr" in cfg["plugins"],
        "model_config": cfg["model_config"],
        "dgr_config": cfg["plugins"].get("dgr"),
        "schedule": {
            k: cfg[k] for k in ("lr", "batch_size", "epochs", "eval_every", "patience", "seed")
        },
        "best_epoch": m["best_epoch"],
        "epochs_run": m["epochs_run"],
        "stopped_early": m["stopped_early"],
        "valid_recall@20": m["valid"]["recall@20"],
        "valid_ndcg@20": m["valid"]["ndcg@20"],
        "test_recall@20": m["test"]["recall@20"],
        "test_ndcg@20": m["test"]["ndcg@20"],
        "row_diff": m["test"].get("row_diff"),
        "mad": m["test"].get("mad"),
        "seconds_per_epoch": m["timing"]["seconds_per_epoch"],
        "train_minutes": m["timing"]["train_seconds"] / 60,
        "eval_minutes": m["timing"]["eval_seconds"] / 60,
        "curve": curve,
    }


def equal_budget_valid(runs: list[dict], lightgcn: dict | None) -> dict:
    """Best valid Recall@20 of every run within the largest epoch all runs were evaluated at."""
    budget = min(max(c["epoch"] for c in r["curve"]) for r in runs)
    best = {
        r["run"]: max(c["valid_recall@20"] for c in r["curve"] if c["epoch"] <= budget)
        for r in runs
    }
    out = {"epochs": budget, "valid_recall@20": best}
    if lightgcn is not None:
        out["change_vs_lightgcn"] = {
            name: v / best[lightgcn["run"]] - 1
            for name, v in best.items()
            if name != lightgcn["run"]
        }
    return out


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        xs = [c["epoch"] for c in r["curve"]]
        style = "-" if r["dgr"] else "--"
        axes[0].plot(xs, [c["valid_recall@20"] for c in r["curve"]], style, label=r["run"])
        axes[1].plot(xs, [c["row_diff"] for c in r["curve"]], style, label=r["run"])
    axes[0].set_ylabel("valid Recall@20")
    axes[1].set_ylabel("row-diff of the final embeddings")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.studies.dgr_report", description=__doc__.split("\n")[0]
    )
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="path without suffix")
    ap.add_argument("--note", default="", help="the conditions, stored with the table")
    args = ap.parse_args(argv)
    runs = [r for r in (load(f) for f in args.folders) if r is not None]
    if not runs:
        raise SystemExit("no finished runs (metrics.json) in the given folders")
    by_name = {r["run"]: r for r in runs}
    lightgcn = next((r for r in runs if r["model"] == "lightgcn" and not r["dgr"]), None)
    for r in runs:
        base = next((b for b in runs if b["model"] == r["model"] and not b["dgr"]), None)
        for name, ref in (("vs_backbone", base if r["dgr"] else None), ("vs_lightgcn", lightgcn)):
            if ref is not None and ref is not r:
                r[f"test_recall_change_{name}"] = r["test_recall@20"] / ref["test_recall@20"] - 1
                r[f"valid_recall_change_{name}"] = r["valid_recall@20"] / ref["valid_recall@20"] - 1
    report = {"note": args.note, "environment": environment("cpu"), "runs": list(by_name.values())}
    if len({r["schedule"]["epochs"] for r in runs}) > 1:
        report["equal_budget_valid"] = equal_budget_valid(runs, lightgcn)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    plot(runs, args.out.with_suffix(".png"))
    print(
        f"{'run':28s} {'best':>5s} {'valid R@20':>10s} {'test R@20':>10s} {'test N@20':>10s} "
        f"{'row-diff':>8s} {'s/epoch':>7s}"
    )
    for r in runs:
        print(
            f"{r['run']:28s} {r['best_epoch']:5d} {r['valid_recall@20']:10.4f} "
            f"{r['test_recall@20']:10.4f} {r['test_ndcg@20']:10.4f} {r['row_diff']:8.3f} "
            f"{r['seconds_per_epoch']:7.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
