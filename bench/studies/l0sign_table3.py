"""L0-SIGN and SIGN on the paper's graph-classification sets (its Table 3), several seeds.

Study: does L0-SIGN / SIGN reach the paper's Table 3 on Twitter and DBLP? Answer:
bench/results/l0sign_table3.json (+ .png, the kept interactions in l0sign/); a reproduction row
that the future bench/reproduce.py harness (issue 23) will gather.

Each (data set, model, seed) run: the seeded 70/15/15 split, the model's defaults (Adagrad, batch
1024, d = 8, hidden 32), one validation evaluation per epoch, the epoch with the best validation
AUC selected (early stop after ``--patience`` epochs without a better one), its weights tested.
A run writes ``<work>/<data>-<model>-s<seed>/`` (log.jsonl: one line per epoch; metrics.json) and
is skipped when its metrics.json exists, so an interrupted sweep resumes where it stopped. The
summary (mean +- std of test AUC / ACC over seeds, next to the paper's figures and the naive
Bayes baseline) goes to ``<out>/l0sign_table3.json`` with the validation curves in a PNG.

    python -m bench.studies.l0sign_table3 [--data twitter DBLP_v1] [--models l0-sign sign]
                                  [--seeds 0 1 2 3 4] [--epochs 40] [--patience 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from fastgcn_denoise.models.l0sign import L0SIGN, TRAIN_DEFAULTS, L0SignConfig, interaction_table
from fastgcn_denoise.tasks import classification as task

from ..common import RESULTS, SHARED_DATA, environment, write_json

PAPER = {  # Table 3 of the paper: (AUC, ACC)
    ("twitter", "l0-sign"): (0.7231, 0.6670),
    ("twitter", "sign"): (0.7201, 0.6615),
    ("DBLP_v1", "l0-sign"): (0.9836, 0.9427),
    ("DBLP_v1", "sign"): (0.9761, 0.9316),
}


def run_one(data_name: str, model_name: str, seed: int, args, prepared) -> dict:
    out = Path(args.work) / f"{data_name}-{model_name}-s{seed}"
    metrics_path = out / "metrics.json"
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    config = L0SignConfig(
        edge_prediction=model_name == "l0-sign",
        l0_weight=args.l0_weight,
        l2_weight=args.l2_weight,
        loss=args.loss,
        directed=args.directed,
    )
    torch.manual_seed(seed)
    model = L0SIGN(prepared.num_features, config, seed=seed)
    optimizer = model.make_optimizer(TRAIN_DEFAULTS["lr"])
    run_config = SimpleNamespace(
        device="cpu", eval_batch=4096, seed=seed, data=None, batch_size=TRAIN_DEFAULTS["batch_size"]
    )
    gen = torch.Generator().manual_seed(seed)
    best, best_state, since_best, history = None, None, 0, []
    train_seconds = 0.0
    with open(out / "log.jsonl", "w") as log:
        for epoch in range(1, args.epochs + 1):
            t0 = time.perf_counter()
            terms = task.train_epoch(model, optimizer, prepared, run_config, epoch, gen)
            seconds = time.perf_counter() - t0
            train_seconds += seconds
            valid = task.evaluate(model, prepared, "valid", run_config)
            record = {"epoch": epoch, **terms, "seconds": seconds, "valid": valid}
            history.append(record)
            log.write(json.dumps(record) + "\n")
            log.flush()
            if best is None or valid[task.HEADLINE] > best["valid"][task.HEADLINE]:
                best, best_state, since_best = record, copy.deepcopy(model.state_dict()), 0
            else:
                since_best += 1
            print(
                f"{data_name} {model_name} s{seed} epoch {epoch:3d} loss {terms['loss']:.4f} "
                f"kept {terms['kept']:.3f} valid auc {valid['auc']:.4f} acc {valid['acc']:.4f}"
                f" ({seconds:.1f} s)",
                flush=True,
            )
            if since_best >= args.patience:
                break
    model.load_state_dict(best_state)
    result = {
        "data": data_name,
        "model": model_name,
        "seed": seed,
        "config": dict(vars(config), **TRAIN_DEFAULTS),
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "valid": best["valid"],
        "test": task.evaluate(model, prepared, "test", run_config),
        "baseline_test": task.baseline(prepared, "test"),
        "info": prepared.info,
        "seconds_per_epoch": train_seconds / len(history),
        "threads": torch.get_num_threads(),
    }
    if config.edge_prediction:
        result["interactions"] = export_interactions(model, prepared, out / "interactions.csv")
    metrics_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def export_interactions(model, prepared, path: Path) -> dict:
    """The test graphs' feature pairs with their keep rates (``interaction_table``) as CSV;
    returns summary counts: pairs, kept, distinct pairs, and the self pairs' keep rate."""
    table = interaction_table(model, prepared.splits["test"])
    with open(path, "w") as f:
        f.write("feature_a,feature_b,count,keep_rate,mean_gate\n")
        for row in zip(
            table["feature_a"],
            table["feature_b"],
            table["count"],
            table["keep_rate"],
            table["mean_gate"],
        ):
            f.write(f"{row[0]},{row[1]},{row[2]},{row[3]:.4f},{row[4]:.4f}\n")
    self_pair = table["feature_a"] == table["feature_b"]
    counts = table["count"]
    rate = lambda m: float((table["keep_rate"][m] * counts[m]).sum() / max(counts[m].sum(), 1))  # noqa: E731
    return {
        "pairs": table["pairs"],
        "kept": table["kept"],
        "distinct_pairs": int(counts.size),
        "self_pair_keep_rate": rate(self_pair),
        "cross_pair_keep_rate": rate(~self_pair),
        "csv": str(path),
    }


def summarise(results: list[dict]) -> dict:
    rows = {}
    for r in results:
        rows.setdefault((r["data"], r["model"]), []).append(r)
    table = []
    for (data_name, model_name), runs in sorted(rows.items()):
        auc = np.array([r["test"]["auc"] for r in runs])
        acc = np.array([r["test"]["acc"] for r in runs])
        paper = PAPER.get((data_name, model_name))
        table.append(
            {
                "data": data_name,
                "model": model_name,
                "seeds": [r["seed"] for r in runs],
                "test_auc_mean": float(auc.mean()),
                "test_auc_std": float(auc.std(ddof=1)) if len(runs) > 1 else 0.0,
                "test_acc_mean": float(acc.mean()),
                "test_acc_std": float(acc.std(ddof=1)) if len(runs) > 1 else 0.0,
                "valid_auc_mean": float(np.mean([r["valid"]["auc"] for r in runs])),
                "kept_mean": float(np.mean([r["test"]["kept"] for r in runs])),
                "best_epochs": [r["best_epoch"] for r in runs],
                "epochs_run": [r["epochs_run"] for r in runs],
                "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"] for r in runs])),
                "paper_auc_acc": paper,
                "baseline_test": runs[0]["baseline_test"],
            }
        )
    return {"rows": table}


def plot_curves(work: Path, results: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    datasets = sorted({r["data"] for r in results})
    fig, axes = plt.subplots(2, len(datasets), figsize=(5 * len(datasets), 6), squeeze=False)
    for col, data_name in enumerate(datasets):
        for r in results:
            if r["data"] != data_name:
                continue
            log = work / f"{r['data']}-{r['model']}-s{r['seed']}" / "log.jsonl"
            recs = [json.loads(line) for line in log.read_text().splitlines() if line]
            epochs = [x["epoch"] for x in recs]
            color = "tab:blue" if r["model"] == "l0-sign" else "tab:orange"
            label = r["model"] if r["seed"] == min(x["seed"] for x in results) else None
            axes[0][col].plot(
                epochs, [x["valid"]["auc"] for x in recs], color=color, alpha=0.7, label=label
            )
            axes[1][col].plot(
                epochs, [x["valid"]["kept"] for x in recs], color=color, alpha=0.7, label=label
            )
        axes[0][col].set_title(data_name)
        axes[0][col].set_ylabel("valid AUC")
        axes[1][col].set_ylabel("pairs kept (valid, inference)")
        axes[1][col].set_xlabel("epoch")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.studies.l0sign_table3", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--data",
        nargs="+",
        default=["twitter", "DBLP_v1"],
        help="data sets under ../shared/data/l0sign (file stem)",
    )
    ap.add_argument("--models", nargs="+", default=["l0-sign", "sign"], choices=["l0-sign", "sign"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--epochs", type=int, default=40, help="maximum epochs per run")
    ap.add_argument("--patience", type=int, default=8, help="epochs without a better valid AUC")
    ap.add_argument("--l0-weight", type=float, default=L0SignConfig.l0_weight)
    ap.add_argument("--l2-weight", type=float, default=L0SignConfig.l2_weight)
    ap.add_argument("--loss", default=L0SignConfig.loss, choices=["bce", "mse"])
    ap.add_argument("--directed", action="store_true", help="the official code's directed pairs")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads")
    ap.add_argument("--work", default="runs/l0sign", help="run folders")
    ap.add_argument("--out", default=str(RESULTS), help="summary folder")
    ap.add_argument("--name", default="l0sign_table3", help="summary file name (no suffix)")
    ap.add_argument(
        "--summary-only",
        action="store_true",
        help="summarise the runs that finished (metrics.json present); train none",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for data_name in args.data:
        path = SHARED_DATA / "l0sign" / f"{data_name}.data"
        for seed in args.seeds:
            if args.summary_only:
                for model_name in args.models:
                    done = Path(args.work) / f"{data_name}-{model_name}-s{seed}" / "metrics.json"
                    if done.exists():
                        results.append(json.loads(done.read_text()))
                continue
            prepared = task.prepare(SimpleNamespace(data=str(path), seed=seed))
            for model_name in args.models:
                results.append(run_one(data_name, model_name, seed, args, prepared))
    summary = {
        "environment": environment("cpu"),
        "torch_threads": torch.get_num_threads(),
        "machine_shared": "2-core machine shared with other sessions' jobs",
        "schedule": {
            "epochs": args.epochs,
            "patience": args.patience,
            "selection": "best valid AUC epoch",
            "batch_size": 1024,
            "optimizer": "adagrad lr 0.05 lr_decay 1e-5",
        },
        "args": vars(args),
        **summarise(results),
    }
    path = write_json(args.name, summary, args.out)
    plot_curves(Path(args.work), results, path.with_suffix(".png"))
    for row in summary["rows"]:
        paper = row["paper_auc_acc"]
        print(
            f"{row['data']:8s} {row['model']:8s} test AUC {row['test_auc_mean']:.4f} +- "
            f"{row['test_auc_std']:.4f}  ACC {row['test_acc_mean']:.4f} +- "
            f"{row['test_acc_std']:.4f}  (paper {paper}; naive Bayes "
            f"{row['baseline_test']['auc']:.4f} / {row['baseline_test']['acc']:.4f})"
        )
    print("wrote", path)
    return 0 if all(math.isfinite(r["test_auc_mean"]) for r in summary["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
