"""Eager cost of the torch.library registration: the same op calls timed in two installs.

Study: does the torch.library registration of the ops cost eager time? Answer:
bench/results/library_eager_overhead_cpu.json.

    python -m bench.studies.eager_overhead --a /work/venvs/main/bin/python --b .venv/bin/python

Each install (A: before, B: after) runs this module's ``--worker`` in its own process, in turns
(A B, B A, A B, ...), so both see the same machine state; the worker times masked_spmm (ones,
bernoulli, expect, hard_concrete with a holdout of every 10th edge; forward and forward +
backward), the dual ARM pass, sddmm and gate on
Gowalla (or ``--graph``) and prints medians as JSON. The report is the ratio B / A per case.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def worker(graph_spec: str, d: int, threads: int, repeat: int) -> dict:
    import torch

    from fastgcn_denoise import ops
    from fastgcn_denoise.data import load_lightgcn

    torch.set_num_threads(threads)
    if graph_spec == "gowalla":
        root = Path(__file__).resolve().parents[3] / "shared" / "data" / "gowalla"
        graph = load_lightgcn(root).train_graph()
    else:
        import numpy as np

        from fastgcn_denoise import BipartiteGraph

        rng = np.random.default_rng(0)
        graph = BipartiteGraph(rng.integers(0, 3000, 100000), rng.integers(0, 4000, 100000))
    gen = torch.Generator().manual_seed(0)
    xu = torch.randn(graph.num_users, d, generator=gen)
    xi = torch.randn(graph.num_items, d, generator=gen)
    phi = torch.randn(graph.num_edges, generator=gen)

    def fwd_bwd(fn, leaves):
        # Dense upstream gradients, as a loss's readout gives them (not a sum's expanded ones).
        grads = None

        def once():
            nonlocal grads
            out = fn(*leaves)
            if grads is None:
                grads = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in out]
            torch.autograd.backward(list(out), grads)
            for t in leaves:
                t.grad = None

        return once

    gxu, gxi, gphi = (t.clone().requires_grad_() for t in (xu, xi, phi))
    held = torch.arange(0, graph.num_edges, 10)
    cases = {
        "masked_spmm ones fwd": lambda: ops.masked_spmm(graph, xu, xi),
        "masked_spmm bernoulli fwd": lambda: ops.masked_spmm(graph, xu, xi, phi, "bernoulli"),
        "masked_spmm ones fwd+bwd": fwd_bwd(lambda u, i: ops.masked_spmm(graph, u, i), [gxu, gxi]),
        "masked_spmm expect fwd+bwd": fwd_bwd(
            lambda u, i, p: ops.masked_spmm(graph, u, i, p, "expect"), [gxu, gxi, gphi]
        ),
        "masked_spmm hard_concrete+holdout fwd+bwd": fwd_bwd(
            lambda u, i, p: ops.masked_spmm(graph, u, i, p, "hard_concrete", holdout=held),
            [gxu, gxi, gphi],
        ),
        "masked_spmm_dual fwd": lambda: ops.masked_spmm_dual(graph, xu, xi, phi),
        "sddmm fwd": lambda: ops.sddmm(graph, xu, xi),
        "gate fwd+bwd": fwd_bwd(lambda p: (ops.gate(p, "hard_concrete"),), [gphi]),
    }
    out = {}
    for name, fn in cases.items():
        fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        out[name] = statistics.median(times)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="python of the install before")
    ap.add_argument("--b", required=True, help="python of the install after")
    ap.add_argument("--a-cwd", default="/tmp", help="working directory of A's process")
    ap.add_argument("--graph", default="gowalla")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.graph, args.dim, args.threads, args.repeat)))
        return 0
    here = Path(__file__).resolve()
    runs = {"a": [], "b": []}
    sides = [("a", args.a, args.a_cwd), ("b", args.b, str(here.parent.parent))]
    for turn in range(args.turns):
        # A B, then B A: neither install always runs first (the machine drifts within a turn).
        for side, python, cwd in sides if turn % 2 == 0 else sides[::-1]:
            cmd = [
                python,
                str(here),
                "--worker",
                "--graph",
                args.graph,
                "--dim",
                str(args.dim),
                "--threads",
                str(args.threads),
                "--repeat",
                str(args.repeat),
                "--a",
                "-",
                "--b",
                "-",
            ]
            res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True)
            runs[side].append(json.loads(res.stdout.strip().splitlines()[-1]))
    cases = {}
    for name in runs["a"][0]:
        a = statistics.median(r[name] for r in runs["a"])
        b = statistics.median(r[name] for r in runs["b"])
        cases[name] = {"before_ms": a, "after_ms": b, "after_over_before": b / a}
        print(f"{name:30s} before {a:8.2f} ms  after {b:8.2f} ms  ratio {b / a:.3f}")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "what": "eager cost of the torch.library registration, same kernels, in turns",
                    "graph": args.graph,
                    "dim": args.dim,
                    "threads": args.threads,
                    "turns": args.turns,
                    "repeat": args.repeat,
                    "machine": "shared 2-core AMD EPYC, other jobs running",
                    "cases": cases,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
