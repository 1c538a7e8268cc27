"""DGR's LEC neighbour lists: the sparse blocked route (``ops.lec_neighbors``) against the dense
route of the official code, time and peak memory, timed in turns.

Cases (K1 = K2 = 10, the 3·K2 rule, diagonal left out):
  lec_neighbors[<backend>]   ours: blocked RᵀR product (never the dense I x I), ω, segmented
                             top-k / bottom-k per block;
  dense route                the official code's: dense G = RᵀR and ω (float64, I x I), the
                             row top-k of ω, the K2 lowest non-zero ω per row. Only where the two
                             I x I float64 matrices fit (``DENSE_MAX_ITEMS``); otherwise skipped
                             with the memory it would need.
Each call is timed and its peak memory measured as the highest resident set size a sampling
thread sees during the call, minus the RSS just before it (``peak_extra_mb``). On CPU, ours also
runs once in a fresh process that only loads the graph and computes the lists
(``fresh_process``: its peak RSS after loading and at the end, torch included; the suite's own
process has other buffers, e.g. the 1 GB of its copy-bandwidth probe). Targets (issue 12):
Gowalla's lists in < 10 s on 2 cores and < 1 GB peak.

Run: python -m bench --ops lec [--graphs gowalla synth-1e5] [--threads 2]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import threading
import time

import torch

from fastgcn_denoise import BipartiteGraph, ops
from fastgcn_denoise.ops.cooccurrence import cooccurrence_mass

from ..common import ROOT, sync

K1 = K2 = 10
DEFAULT = False  # not in the default suite: python -m bench --ops lec
DENSE_MAX_ITEMS = 12_000  # two I x I float64 matrices: 2.3 GB at this size
_PAGE = resource.getpagesize()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def measured(fn, device) -> dict:
    """Wall time (ms) and peak extra RSS (MB, host memory) of one ``fn()`` call."""
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    fn()
    sync(device)
    ms = (time.perf_counter() - t0) * 1e3
    done.set()
    t.join()
    peak[0] = max(peak[0], _rss_bytes())
    return {"ms": ms, "peak_extra_mb": (peak[0] - base) / 2**20}


def dense_route(graph) -> ops.LECNeighbors:
    """The official code's computation in torch: dense G, dense ω, row top-k / bottom-k."""
    u, i = graph.edges()
    r = torch.zeros(graph.num_users, graph.num_items, dtype=torch.float64)
    r[u, i] = 1.0
    g = r.T @ r
    del r
    g.fill_diagonal_(0.0)  # the diagonal left out, as ours by default (D keeps it)
    scale = (cooccurrence_mass(graph) + 1).rsqrt()
    omega = g.mul_(scale[:, None]).mul_(scale[None, :])  # in place: G becomes ω
    sim_w, sim = omega.topk(K1, dim=1)
    count = (omega > 0).sum(1)
    omega[omega == 0] = float("inf")
    mar_w, mar = omega.topk(K2, dim=1, largest=False)
    ok = (count >= 3 * K2)[:, None]
    return ops.LECNeighbors(
        torch.where(sim_w > 0, sim, -1),
        sim_w.float(),
        torch.where(ok, mar, -1),
        torch.where(ok, mar_w, 0.0).float(),
    )


def fresh_process(graph) -> dict:
    """Peak RSS (MB) and seconds of ``graph``'s lists computed in a new process (CPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/graph.npz"
        graph.save(path)
        out = subprocess.run(
            [sys.executable, "-m", "bench.ops.lec", "--child", path],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it starts afresh at exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def _child(path: str) -> None:
    graph = BipartiteGraph.load(path)
    loaded = _peak_rss_mb()
    t0 = time.perf_counter()
    ops.lec_neighbors(graph, K1, K2)
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - t0,
                "peak_rss_after_load_mb": loaded,
                "peak_rss_mb": _peak_rss_mb(),
                "threads": torch.get_num_threads(),
            }
        )
    )


def run(device, graph, dims, quick: bool) -> list[dict]:
    on_cpu = torch.device(device).type == "cpu"
    backends = ["cpu"] if on_cpu else ["triton"]  # the product is cuSPARSE under either on GPUs
    repeats = 2 if quick else 3
    benches = [(f"lec_neighbors[{b}]", b) for b in backends]
    dense_gb = 2 * graph.num_items**2 * 8 / 1e9
    cases = [
        {
            "name": name,
            "group": "lec",
            "peer": "dense route",
            "backend": b,
            "k_similar": K1,
            "k_marginal": K2,
            "runs": [],
        }
        for name, b in benches
    ]
    dense = {
        "name": "dense route",
        "group": "lec",
        "peer": None,
        "runs": [],
        "dense_matrices_gb": dense_gb,
    }
    if graph.num_items > DENSE_MAX_ITEMS or not on_cpu:
        dense["skipped"] = (
            f"the dense route needs two {graph.num_items} x {graph.num_items} "
            f"float64 matrices ({dense_gb:.1f} GB); run on CPU up to "
            f"{DENSE_MAX_ITEMS} items"
        )
    # Warm-up (first-call costs: the kernels, torch's sparse code), then in turns.
    ops.lec_neighbors(graph, K1, K2, backend=backends[0])
    for _ in range(repeats):
        for case, (_, b) in zip(cases, benches):
            case["runs"].append(
                measured(lambda: ops.lec_neighbors(graph, K1, K2, backend=b), device)
            )
        if "skipped" not in dense:
            dense["runs"].append(measured(lambda: dense_route(graph), device))
    out = []
    for c in cases + [dense]:
        runs = c.pop("runs")
        if runs:
            times = sorted(r["ms"] for r in runs)
            c.update(
                {
                    "median_ms": times[len(times) // 2],
                    "min_ms": times[0],
                    "max_ms": times[-1],
                    "repeats": len(runs),
                    "peak_extra_mb": max(r["peak_extra_mb"] for r in runs),
                }
            )
        out.append(c)
    if "median_ms" in dense:
        for c in cases:
            c["speedup_vs_peer"] = dense["median_ms"] / c["median_ms"]
            c["memory_ratio_vs_peer"] = dense["peak_extra_mb"] / max(c["peak_extra_mb"], 1e-9)
    if on_cpu:
        cases[0]["fresh_process"] = fresh_process(graph)
    return out


if (
    __name__ == "__main__"
):  # the fresh process of fresh_process: python -m bench.ops.lec --child GRAPH
    if sys.argv[1:2] != ["--child"] or len(sys.argv) != 3:
        raise SystemExit(
            "bench/ops/lec.py: run it with python -m bench --ops lec (--child GRAPH "
            "is the fresh process it starts)"
        )
    _child(sys.argv[2])
