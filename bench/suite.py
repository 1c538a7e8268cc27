"""The microbenchmark suite: every op of bench/ops/ against its peer, side by side.

    python -m bench [--device cpu|cuda] [--ops masked_spmm arm_grad truncated_svd eval sgcn_step
                    mask_step lec dgr_step]
                    [--graphs gowalla synth-1e5 synth-1e6 synth-5e7] [--dims 32 64 128]
                    [--threads 1 2] [--quick] [--out bench/results]

Writes one JSON, ``<out>/bench_<device type>.json`` (``bench_<ops>_<device type>.json`` for a
subset of ops): the environment (device, commit, date, versions, backends, the package measured
and where it was imported from), the measured copy bandwidth per thread count, the graphs, and
every case (threads, median/min/max ms, ratio to its peer, achieved GB/s and fraction of the copy
bandwidth where a bytes model is stated, or the reason it was skipped); a PNG of the speedups
next to it. Prints the side-by-side markdown table (the docs' performance page is generated from the JSON:
docs/gen_tables.py). ``--threads 1 2`` runs every case at each thread count. The cases of an op
are timed in turns (one call of each per round), so a ratio is not a measure of the drift of a
shared machine between two cases.

It measures the installed package (``bench/__init__.py`` puts the repository root behind
site-packages). It refuses to start (exit 2) when the backend it measures on the device (cpu:
the compiled extension; cuda: triton) cannot run, and exits 1 when an op fails, or when none of
an op's own cases could be timed on a graph; the other ops still run. ``--quick`` writes under
runs/bench-quick, never into bench/results.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import traceback
from pathlib import Path

import torch

from fastgcn_denoise import ops as fops

from .common import (
    RESULTS,
    ROOT,
    build_graph,
    copy_bandwidth,
    describe_device,
    environment,
    plot,
    short_peer,
    subject_missing,
    time_benches,
    write_json,
)
from .ops import (
    arm_grad,
    cosine_attention,
    dgr_step,
    dot_logsumexp,
    lec,
    mask_step,
    masked_spmm,
    pyg,
    sgcn_step,
    spgemm,
    truncated_svd,
)
from .ops import eval as evaluation

# The suite's registry: op name -> its module in bench/ops/ (``benches`` or ``run``).
OPS = {
    "masked_spmm": masked_spmm,
    "arm_grad": arm_grad,
    "truncated_svd": truncated_svd,
    "eval": evaluation,
    "sgcn_step": sgcn_step,
    "cosine_attention": cosine_attention,
    "mask_step": mask_step,
    "dot_logsumexp": dot_logsumexp,
    "spgemm": spgemm,
    "lec": lec,
    "dgr_step": dgr_step,
    "pyg": pyg,
}
# A module with DEFAULT = False runs only when named in --ops (slow, model-level benchmarks).
DEFAULT_OPS = [op for op, module in OPS.items() if getattr(module, "DEFAULT", True)]
GRAPHS = {
    "cpu": ["synth-1e5", "gowalla", "synth-1e6"],  # small first: a run cut short keeps them
    "cuda": ["synth-1e5", "gowalla", "synth-1e6", "synth-5e7"],
}
DIMS = [32, 64, 128]
QUICK_GRAPHS, QUICK_DIMS = ["synth-1e4"], [16]
QUICK_OUT = ROOT / "runs" / "bench-quick"  # git-ignored: a quick run is a smoke test, not results


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ops", nargs="+", choices=list(OPS), default=DEFAULT_OPS)
    ap.add_argument(
        "--graphs",
        nargs="+",
        default=None,
        help="gowalla and/or synth-<interactions> (default: by device; --quick: "
        f"{' '.join(QUICK_GRAPHS)})",
    )
    ap.add_argument(
        "--dims",
        type=int,
        nargs="+",
        default=None,
        help=f"embedding widths, and SVD ranks (default {DIMS}; --quick: {QUICK_DIMS})",
    )
    ap.add_argument("--quick", action="store_true", help="few repeats, a tiny graph (tests, CI)")
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="torch/OpenMP thread counts; every case runs at each (default: torch's, one per core)",
    )
    ap.add_argument(
        "--out",
        default=None,
        help="results folder (default bench/results; --quick: runs/bench-quick)",
    )
    return ap.parse_args(argv)


def run_op(op: str, device, graph, dims, quick: bool) -> tuple[list[dict], str | None]:
    """(cases, why it failed or None). A case that cannot run here is a skip; the op fails when
    it raises, or when none of its own cases (those with a peer) was timed: its subject did not
    run."""
    try:
        module = OPS[op]
        if hasattr(module, "run"):  # a module that derives cases from its timings
            cases = module.run(device, graph, dims, quick)
        else:
            # In turns: a case and its peers see the same machine state (a shared machine drifts).
            cases = time_benches(
                module.benches(device, graph, dims, quick), device, quick, interleave=True
            )
    except Exception as exc:  # noqa: BLE001 - recorded, and the exit status says so
        if not isinstance(exc, fops.BackendUnavailable):
            traceback.print_exc()
        why = f"{type(exc).__name__}: {exc}"
        return [{"name": op, "peer": None, "skipped": f"error: {why}", "error": True}], why
    ours = [c for c in cases if c.get("peer") is not None]
    if not any("median_ms" in c for c in ours):
        reasons = sorted({c.get("skipped", "not timed") for c in ours}) or ["no case of ours"]
        return cases, "none of its own cases ran: " + "; ".join(reasons)
    return cases, None


def _base(name: str) -> str:
    return re.sub(r"( (fwd|fwd\+bwd|[dkK]=\d+))+$", "", name)


def _fmt(x, spec) -> str:
    return "" if x is None or not math.isfinite(x) else format(x, spec)


def markdown(env: dict, graphs: list[dict], cases: list[dict]) -> str:
    """One row per case of ours, next to its peer; the skipped cases grouped by reason."""
    bandwidth = ", ".join(
        f"{bw:.1f} GB/s at {t} thread{'s' if int(t) > 1 else ''}"
        for t, bw in env["copy_bandwidth_gbps_by_threads"].items()
    )
    lines = [
        f"{env['device']}, commit `{env['commit'][:12]}`, {env['date']}, copy bandwidth "
        f"{bandwidth}. Graphs: "
        + ", ".join(
            f"{g['name']} ({g['users']} x {g['items']}, {g['interactions']} interactions)"
            for g in graphs
            if "skipped" not in g
        )
        + ".",
        "",
        (
            "| op | graph | threads | case | ms | peer | peer ms | speedup | GB/s | % of copy "
            "| vs other peers |"
        ),
        "|---|---|---:|---|---:|---|---:|---:|---:|---:|---|",
    ]
    timed = {(c["op"], c["graph"], c["threads"], c["name"]): c for c in cases if "median_ms" in c}
    skipped = {}
    for c in cases:
        if "skipped" in c:
            skipped.setdefault(c["skipped"], []).append(f"{_base(c['name'])} ({c['graph']})")
        if c.get("peer") is None or "median_ms" not in c:
            continue
        peer = timed.get((c["op"], c["graph"], c["threads"], c["peer"]), {})
        others = ", ".join(
            f"{short_peer(p, c['name'])} {r:.2f}x"
            for p, r in c.get("speedup_vs", {}).items()
            if p != c["peer"]
        )
        frac = c.get("fraction_of_copy_bandwidth")
        lines.append(
            f"| {c['op']} | {c['graph']} | {c['threads']} | {c['name']} | "
            f"{c['median_ms']:.3g} | {c['peer']} | {_fmt(peer.get('median_ms'), '.3g')} | "
            f"{_fmt(c.get('speedup_vs_peer'), '.2f')}x | {_fmt(c.get('gbps'), '.1f')} | "
            f"{_fmt(None if frac is None else 100 * frac, '.0f')} | {others} |"
        )
    for g in graphs:
        if "skipped" in g:
            skipped.setdefault(g["skipped"], []).append(f"graph {g['name']}")
    if skipped:
        lines += ["", "Skipped:"] + [
            f"- {reason}: {', '.join(sorted(set(names)))}" for reason, names in skipped.items()
        ]
    return "\n".join(lines)


def _same_dir(a, b) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def main(argv=None) -> int:
    threads_before = torch.get_num_threads()
    try:
        return _run(parse_args(argv))
    finally:
        torch.set_num_threads(threads_before)


def _run(args) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    out = Path(args.out) if args.out else (QUICK_OUT if args.quick else RESULTS)
    if args.quick and _same_dir(out, RESULTS):
        print(
            "python -m bench: --quick is a smoke test (a tiny graph, few repeats): its results "
            "are not written to bench/results; give another --out",
            file=sys.stderr,
        )
        return 2
    missing = subject_missing(device)
    if missing:
        print(f"python -m bench: error: {missing}", file=sys.stderr)
        return 2
    threads = args.threads or [torch.get_num_threads()]
    dims = args.dims or (QUICK_DIMS if args.quick else DIMS)
    specs = args.graphs or (QUICK_GRAPHS if args.quick else GRAPHS[device.type])
    env = environment(device)
    env["device"] = describe_device(device, threads=False)  # the threads are per case
    env["threads"] = threads
    env["copy_bandwidth_gbps_by_threads"] = {}
    for t in threads:
        torch.set_num_threads(t)
        env["copy_bandwidth_gbps_by_threads"][str(t)] = copy_bandwidth(
            device, (32 if args.quick else 512) * 2**20
        )
    env["copy_bandwidth_gbps"] = env["copy_bandwidth_gbps_by_threads"][str(threads[0])]
    not_here = "; ".join(f"{b} ({why})" for b, why in env["backends"].items() if why)
    print(
        f"{env['device']}: measuring fastgcn_denoise {env['package']['version']} from "
        f"{env['package']['path']}; copy {env['copy_bandwidth_gbps']:.1f} GB/s; "
        f"backends not here: {not_here or 'none'}"
    )
    name = "bench_" + ("" if args.ops == DEFAULT_OPS else "_".join(args.ops) + "_") + device.type
    graphs, cases, failures = [], [], []

    def save(complete: bool):
        """The JSON so far: rewritten after every op, so a run cut short keeps what it measured."""
        return write_json(
            name,
            {
                **env,
                "suite": "python -m bench",
                "complete": complete,
                "quick": args.quick,
                "ops": args.ops,
                "dims": dims,
                "graphs": graphs,
                "cases": cases,
            },
            out,
        )

    for spec in specs:
        graph, info = build_graph(spec, device)
        graphs.append(info)
        if graph is None:
            print(f"skipping graph {spec}: {info['skipped']}")
            continue
        print(
            f"graph {spec}: {info['users']} users, {info['items']} items, "
            f"{info['interactions']} interactions ({info['build_s']} s)",
            flush=True,
        )
        for t in threads:
            torch.set_num_threads(t)
            bandwidth = env["copy_bandwidth_gbps_by_threads"][str(t)]
            for op in args.ops:
                op_cases, why = run_op(op, device, graph, dims, args.quick)
                if why:
                    failures.append(f"{op} on {spec} ({t} threads): {why}")
                    print(f"  FAILED {failures[-1]}", file=sys.stderr, flush=True)
                for c in op_cases:
                    if "gbps" in c:
                        c["fraction_of_copy_bandwidth"] = c["gbps"] / bandwidth
                cases += [{"op": op, "graph": spec, "threads": t, **c} for c in op_cases]
                save(complete=False)
                print(f"  {op} ({t} threads): {len(op_cases)} cases", flush=True)
        del graph
        if device.type == "cuda":
            torch.cuda.empty_cache()
    path = save(complete=True)
    plot(cases, path.with_suffix(".png"), f"{name}: {env['device']}")
    table = markdown(env, graphs, cases)
    print("\n" + table + f"\n\nwrote {path}")
    if failures:
        print(
            "python -m bench: FAILED (the subject did not run or raised):\n  "
            + "\n  ".join(failures),
            file=sys.stderr,
        )
    return 1 if failures else 0
