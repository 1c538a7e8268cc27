"""Training speed under each OpenMP wait policy, on a quiet core and beside a busy process.

Study: which OpenMP wait policy should training run with on a quiet and on a shared machine?
Answer: bench/results/wait_policy_shared_cpu.json.

OpenMP reads ``OMP_WAIT_POLICY`` when it loads, so every trial is a fresh process: it trains
``--model`` for ``--epochs`` on the built-in data (``--users 3000``; fewer users: the same
generator, scaled down) and reports the trainer's own timing (seconds per epoch of BPR steps,
and the evaluation seconds). With ``--loads 1`` a competing process
spins on one core during the trial, the way another user's job would; it counts its loop rounds,
so the JSON also says how much CPU each policy leaves to that neighbour. Conditions take turns
(one trial of each per round, the order rotated), so all see the same drift of a shared machine,
and the load average is recorded around every trial.

    python -m bench.studies.wait_policy [--threads 1 2] [--policies default PASSIVE] [--loads 0 1]
                                [--models lightgcn] [--users 3000] [--repeats 3] [--out DIR]

A policy is an ``OMP_WAIT_POLICY`` value, ``default`` (unset: GNU OpenMP then spins up to
300,000 rounds before it sleeps) or ``NAME=VALUE`` for another variable (``GOMP_SPINCOUNT=10000``:
spin briefly, then sleep). Writes ``<out>/wait_policy_cpu.json`` (every trial, and the median per condition).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from ..common import ROOT, environment, write_json

# The neighbour: spins on one core and, when stopped, prints how many loop rounds per second it
# managed (the CPU the trial left it).
_NEIGHBOUR = """
import signal, sys, time
n, t0 = 0, time.perf_counter()
def stop(*_):
    print(n / (time.perf_counter() - t0), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    n += 1
"""
_POLICY_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def child(model: str, epochs: int, data: str) -> dict:
    """One trial, inside the fresh process: train and return the trainer's timing."""
    import torch

    from fastgcn_denoise.pipelines.train import make_config, train

    with tempfile.TemporaryDirectory() as out:
        result = train(
            make_config(
                model,
                data=data,
                epochs=epochs,
                eval_every=epochs,
                out=out,
                progress=False,
                verbose=False,
            )
        )
    return {
        "epoch_s": result["timing"]["seconds_per_epoch"],
        "eval_s": result["timing"]["eval_seconds"],
        "torch_threads": torch.get_num_threads(),
        "backend": result["backend"],
    }


def _loadavg() -> float:
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except OSError:
        return float("nan")


def trial(model: str, epochs: int, data: str, threads: int, policy: str, load: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _POLICY_VARS}
    env["OMP_NUM_THREADS"] = str(threads)
    if "=" in policy:
        name, _, value = policy.partition("=")
        env[name] = value
    elif policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    neighbours = [
        subprocess.Popen([sys.executable, "-c", _NEIGHBOUR], stdout=subprocess.PIPE, text=True)
        for _ in range(load)
    ]
    before = _loadavg()
    t0 = time.perf_counter()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.studies.wait_policy",
            "--child",
            "--models",
            model,
            "--epochs",
            str(epochs),
            "--data",
            data,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    rates = []
    for p in neighbours:
        p.terminate()
        rates.append(float(p.communicate(timeout=30)[0].strip() or "nan"))
    if run.returncode != 0:
        raise SystemExit(
            f"trial {model} threads={threads} policy={policy} load={load} failed:\n"
            f"{run.stderr[-3000:]}"
        )
    row = {
        "model": model,
        "threads": threads,
        "policy": policy,
        "load": load,
        **json.loads(run.stdout.strip().splitlines()[-1]),
        "wall_s": round(wall, 2),
        "loadavg_before": before,
        "loadavg_after": _loadavg(),
    }
    if rates:
        row["neighbour_mrounds_per_s"] = statistics.mean(rates) / 1e6
    return row


def summarise(rows: list[dict]) -> list[dict]:
    """Median of each measured quantity per (model, threads, policy, load)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["threads"], r["policy"], r["load"]), []).append(r)
    out = []
    for (model, threads, policy, load), rs in sorted(groups.items()):
        s = {"model": model, "threads": threads, "policy": policy, "load": load, "trials": len(rs)}
        for key in ("epoch_s", "eval_s", "neighbour_mrounds_per_s"):
            values = [r[key] for r in rs if key in r]
            if values:
                s[key] = statistics.median(values)
                s[key + "_range"] = [min(values), max(values)]
        out.append(s)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.studies.wait_policy", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--policies",
        nargs="+",
        default=["default", "PASSIVE"],
        help="OMP_WAIT_POLICY values; 'default' leaves it unset",
    )
    ap.add_argument(
        "--loads",
        type=int,
        nargs="+",
        default=[0, 1],
        help="numbers of busy neighbour processes during a trial",
    )
    ap.add_argument("--models", nargs="+", default=["lightgcn"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument(
        "--users",
        type=int,
        default=3000,
        help="users of the built-in data (3000; items scale along, 2 per 3 users)",
    )
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    ap.add_argument(
        "--tag", default=None, help="name the JSON wait_policy_<tag>_cpu.json (e.g. quiet, shared)"
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.models[0], args.epochs, args.data)))
        return 0
    from fastgcn_denoise.data import make_synthetic, save_npz

    conditions = [
        (m, t, p, n)
        for m in args.models
        for t in args.threads
        for p in args.policies
        for n in args.loads
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.npz")
        save_npz(make_synthetic(num_users=args.users, num_items=round(args.users * 2 / 3)), data)
        for rep in range(args.repeats):
            shift = rep % len(conditions)
            for cond in conditions[shift:] + conditions[:shift]:
                row = trial(cond[0], args.epochs, data, *cond[1:])
                rows.append({"round": rep, **row})
                print(json.dumps(rows[-1]), flush=True)
    summary = summarise(rows)
    env = environment("cpu")
    env["device"] = env["device"].split(" (")[0]  # the threads are per trial here
    payload = {
        **env,
        "suite": "python -m bench.studies.wait_policy",
        "cpu_count": os.cpu_count(),
        "epochs": args.epochs,
        "users": args.users,
        "summary": summary,
        "trials": rows,
    }
    path = write_json(
        "wait_policy_" + (f"{args.tag}_" if args.tag else "") + "cpu", payload, args.out
    )
    print(
        f"\n{'model':12s} {'threads':>7s} {'policy':>22s} {'load':>4s} {'epoch s':>8s} "
        f"{'eval s':>7s} {'neighbour':>9s}"
    )
    for s in summary:
        nb = s.get("neighbour_mrounds_per_s")
        print(
            f"{s['model']:12s} {s['threads']:7d} {s['policy']:>22s} {s['load']:4d} "
            f"{s['epoch_s']:8.2f} {s['eval_s']:7.2f} {'' if nb is None else f'{nb:9.1f}'}"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
