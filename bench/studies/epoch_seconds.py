"""Seconds per training epoch on a real data set, per model and backend (issue 3/4 timings).

Study: how many seconds does a training epoch take on Gowalla, per model and backend? Answer:
bench/results/epoch_seconds_gowalla_cpu.json (quiet machine) and
epoch_seconds_gowalla_shared_cpu.json (shared).

Trains each (model, backend) pair for ``--epochs`` epochs with the default hyper-parameters
(validation evaluated once, at the end) and records ``train`` 's own timing: seconds per epoch of
BPR steps (sampling included, evaluation excluded), plus the evaluation seconds.

    python -m bench.studies.epoch_seconds [--data ../shared/data/gowalla] [--device cpu] [--threads 1 2]
                                  [--runs lightgcn:cpu s-lightgcn:cpu lightgcn:reference]
"""

from __future__ import annotations

import argparse
import os

import torch

from fastgcn_denoise.pipelines.train import make_config, train

from ..common import SHARED_DATA, environment, write_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.studies.epoch_seconds", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--data", default=str(SHARED_DATA / "gowalla"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument(
        "--runs", nargs="+", default=["lightgcn:cpu", "s-lightgcn:cpu"], metavar="MODEL:BACKEND"
    )
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="torch/OpenMP thread counts, each run at each (default: torch's)",
    )
    ap.add_argument("--work", default="runs/epoch_seconds", help="training output folders")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows = []
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for spec in args.runs:
            model, _, backend = spec.partition(":")
            config = make_config(
                model=model,
                data=args.data,
                device=args.device,
                backend=backend or None,
                epochs=args.epochs,
                eval_every=args.epochs,
                progress=False,
                out=f"{args.work}/{model}-{backend or 'auto'}-{threads}",
                overwrite=True,
            )
            load = list(os.getloadavg())
            result = train(config)
            row = {
                "model": model,
                "backend": result["backend"],
                "threads": threads,
                "epochs": result["epochs_run"],
                "seconds_per_epoch": result["timing"]["seconds_per_epoch"],
                "eval_seconds": result["timing"]["eval_seconds"],
                "loadavg_before": load,
                "loadavg_after": list(os.getloadavg()),
                "valid": result["valid"],
                "test": result["test"],
            }
            print(row, flush=True)
            rows.append(row)
    name = args.data.rstrip("/").split("/")[-1]
    print(
        "written to",
        write_json(
            f"epoch_seconds_{name}_{torch.device(args.device).type}",
            {
                "environment": environment(args.device),
                "threads": args.threads or [torch.get_num_threads()],
                "runs": rows,
            },
            args.out,
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
