"""The LightGNN pipeline's results on one data set as one JSON: per stage (teacher, intermediate
model, each student pruning run and the selected one) the epochs run, the selected epoch,
validation and test metrics, the kept fractions, the seconds spent and the stage's settings.

Study: what does the LightGNN pipeline reach on the Yelp split, per stage? Answer:
bench/results/lightgnn_yelp_cpu.json (+ .png); a reproduction row that the future
bench/reproduce.py harness (issue 23) will gather.

It reads a finished ``fastgcn-denoise lightgnn`` output folder (``OUT/teacher``,
``OUT/intermediate``, ``OUT/student``) and adds the run's context (commit, date, threads, the
shared machine, the command line), which the stage folders do not record; NAME.png beside it
plots the validation curves.

Run: python -m bench.studies.lightgnn_report --runs runs/lightgnn_cpu --name lightgnn_yelp_cpu
         --threads teacher=2,intermediate=1,student=1 --command "bash runs/cpu_schedule.sh ..."
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..common import environment, write_json


def curve(run_dir: Path, k: int) -> list[dict]:
    """Per evaluated epoch of a run (its log.jsonl): loss and validation recall/ndcg@k."""
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line]
    return [
        {
            "epoch": r["epoch"],
            "loss": r["loss"],
            f"recall@{k}": r["valid"][f"recall@{k}"],
            f"ndcg@{k}": r["valid"][f"ndcg@{k}"],
        }
        for r in rows
        if "valid" in r
    ]


def plot_curves(stages: dict, k: int, path: Path) -> Path:
    """Validation recall@k per epoch, the student's runs one after another."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in ("teacher", "intermediate"):
        c = stages[name]["curve"]
        ax.plot([r["epoch"] for r in c], [r[f"recall@{k}"] for r in c], "o-", label=name)
    offset = 0
    for r in stages["student"]["runs"]:
        c = r["curve"]
        ax.plot(
            [offset + x["epoch"] for x in c],
            [x[f"recall@{k}"] for x in c],
            "s-",
            label=f"student run {r['run']} (entries {r['kept']['edges']:.3f}, "
            f"emb. {r['kept']['embeddings']:.3f})",
        )
        offset += r["epochs_run"]
    ax.set_xlabel("epoch (student: runs one after another)")
    ax.set_ylabel(f"validation recall@{k}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _stage(metrics: dict, kept: dict | None, threads: int | None) -> dict:
    timing = metrics["timing"]
    return {
        "model": metrics["model"],
        "epochs_run": metrics["epochs_run"],
        "selected_epoch": metrics["best_epoch"],
        "selection": metrics["selection"]["rule"],
        "valid": metrics["valid"],
        "test": metrics["test"],
        "kept": kept or {"edges": 1.0, "embeddings": 1.0},
        "seconds": {
            "train": timing["train_seconds"],
            "eval": timing["eval_seconds"],
            "test": timing["test_seconds"],
            "per_epoch": timing["seconds_per_epoch"],
        },
        "threads": threads,
        "model_config": metrics["config"]["model_config"],
        "loop": {k: v for k, v in metrics["config"].items() if k != "model_config"},
    }


def interaction_kept(run_dir: Path, data: str) -> dict:
    """What a student run's edge mask keeps per interaction (both directed entries, at least one)
    and of the self-loop entries: the "edges kept" of ``kept`` counts every directed entry."""
    from fastgcn_denoise.data import load_lightgcn
    from fastgcn_denoise.denoisers.lightgnn import NodeGraph
    from fastgcn_denoise.pipelines.train import load_checkpoint

    graph = load_lightgcn(data).train_graph()
    mask = load_checkpoint(run_dir)["best_model"]["edge_mask"] > 0
    ng = NodeGraph.build(graph, 1)
    both = mask[ng.interaction_entries(graph)]
    loops = mask[ng.entry_rows() == ng.pattern.col]
    return {
        "interactions_both_directions": float(both.all(0).double().mean()),
        "interactions_either_direction": float(both.any(0).double().mean()),
        "self_loops": float(loops.double().mean()),
    }


def collect(runs: Path, threads: dict) -> dict:
    stages = {}
    student = json.loads((runs / "student" / "metrics.json").read_text())
    k = student["pipeline"]["ks"][0]
    for name in ("teacher", "intermediate"):
        stages[name] = _stage(
            json.loads((runs / name / "metrics.json").read_text()), None, threads.get(name)
        )
        stages[name]["curve"] = curve(runs / name, k)
    pruning_runs = []
    for r in student["runs"]:
        run_dir = runs / "student" / f"run_{r['run']:02d}"
        entry = _stage(
            json.loads((run_dir / "metrics.json").read_text()), r["kept"], threads.get("student")
        )
        pruning = json.loads((run_dir / "pruning.json").read_text())
        pruning_runs.append(
            {
                "run": r["run"],
                **entry,
                "sizes": r["sizes"],
                "subspace_slack": r["subspace_slack"],
                "pruned_after": {
                    k: pruning[k] for k in ("edges_dropped", "embeddings_dropped", "kept_after")
                },
                "curve": curve(run_dir, k),
            }
        )
    selected = student["selected"]
    stages["student"] = {
        "selection": student["selection"],
        "runs": pruning_runs,
        "selected_run": selected["run"] if selected else None,
        "pipeline": student["pipeline"],
    }
    metrics = (f"recall@{k}", f"ndcg@{k}")
    table = {
        name: {m: stages[name]["test"][m] for m in metrics} for name in ("teacher", "intermediate")
    }
    if selected:
        run_dir = runs / "student" / f"run_{selected['run']:02d}"
        stages["student"]["selected_kept_detail"] = interaction_kept(
            run_dir, stages["teacher"]["loop"]["data"]
        )
        table["student"] = {
            **{m: selected["test"][m] for m in metrics},
            "kept": selected["kept"],
            "kept_detail": stages["student"]["selected_kept_detail"],
        }
    return {"table_test": table, "stages": stages}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.studies.lightgnn_report", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--runs", type=Path, required=True, help="the pipeline's --out folder")
    ap.add_argument("--name", required=True, help="JSON name under bench/results")
    ap.add_argument("--threads", default="", help="threads per stage: STAGE=N,...")
    ap.add_argument("--command", default=None, help="the command line(s) that ran the stages")
    ap.add_argument("--note", default=None, help="what ran, in words (e.g. a shortened schedule)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    threads = {k: int(v) for k, v in (p.split("=") for p in args.threads.split(",") if p)}
    env = environment("cpu")
    env["shared_machine"] = "2-core machine shared with other sessions (other jobs running)"
    payload = {
        **env,
        "suite": "python -m bench.studies.lightgnn_report",
        "runs": str(args.runs),
        "command": args.command,
        "note": args.note,
        "threads": threads,
        **collect(args.runs, threads),
    }
    path = write_json(args.name, payload, args.out)
    k = payload["stages"]["student"]["pipeline"]["ks"][0]
    plot_curves(payload["stages"], k, path.with_suffix(".png"))
    for name, row in payload["table_test"].items():
        print(
            f"{name:13s} "
            + "  ".join(f"{m} {v:.4f}" for m, v in row.items() if isinstance(v, float))
            + (f"  kept {row['kept']} {row['kept_detail']}" if "kept" in row else "")
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
