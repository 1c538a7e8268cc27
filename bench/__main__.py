"""The microbenchmark suite: every op against its peer, side by side, with achieved bandwidth.

    python -m bench [--device cpu|cuda] [--ops masked_spmm arm_grad truncated_svd eval sgcn_step]
                    [--graphs gowalla synth-1e5 synth-1e6 synth-5e7] [--dims 32 64 128]
                    [--quick] [--out bench/results] [--readme]

Writes one JSON, ``<out>/bench_<device type>.json`` (``bench_<ops>_<device type>.json`` for a
subset of ops): the environment (device, commit, date, versions, backends), the measured copy
bandwidth, the graphs, and every case (median/min/max ms, ratio to its peer, GB/s and fraction of
the copy bandwidth where a bytes model is stated, or the reason it was skipped); a PNG of the
speedups next to it. Prints the side-by-side markdown table; ``--readme`` also writes it between
the bench markers of README.md. An op that fails on a graph is recorded as an error, the others
still run, and the exit status is 1.
"""
from __future__ import annotations

import argparse
import math
import re
import traceback

import torch

from fastgcn_denoise import ops as fops

from . import (bench_arm_grad, bench_cosine_attention, bench_dot_logsumexp, bench_eval,
               bench_masked_spmm, bench_sgcn_step, bench_spgemm, bench_truncated_svd)
from .common import (ROOT, build_graph, copy_bandwidth, environment, plot, short_peer,
                     time_benches, write_json)

OPS = {"masked_spmm": bench_masked_spmm, "arm_grad": bench_arm_grad,
       "truncated_svd": bench_truncated_svd, "eval": bench_eval, "sgcn_step": bench_sgcn_step,
       "cosine_attention": bench_cosine_attention, "dot_logsumexp": bench_dot_logsumexp,
       "spgemm": bench_spgemm}
GRAPHS = {"cpu": ["synth-1e5", "gowalla", "synth-1e6"],  # small first: a run cut short keeps them
          "cuda": ["synth-1e5", "gowalla", "synth-1e6", "synth-5e7"]}
DIMS = [32, 64, 128]
QUICK_GRAPHS, QUICK_DIMS = ["synth-1e4"], [16]
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def parse_args(argv, ops):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ops", nargs="+", choices=list(OPS), default=ops or list(OPS))
    ap.add_argument("--graphs", nargs="+", default=None,
                    help="gowalla and/or synth-<interactions> (default: by device; --quick: "
                         f"{' '.join(QUICK_GRAPHS)})")
    ap.add_argument("--dims", type=int, nargs="+", default=None,
                    help=f"embedding widths, and SVD ranks (default {DIMS}; --quick: {QUICK_DIMS})")
    ap.add_argument("--quick", action="store_true", help="few repeats, a tiny graph (tests, CI)")
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads (CPU)")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    ap.add_argument("--readme", action="store_true", help="write the table into README.md")
    return ap.parse_args(argv)


def run_op(op: str, device, graph, dims, quick: bool) -> tuple[list[dict], bool]:
    """(cases, failed): a backend that cannot run is a skip, any other exception an error."""
    try:
        module = OPS[op]
        if hasattr(module, "run"):  # a module that derives cases from its timings
            return module.run(device, graph, dims, quick), False
        return time_benches(module.benches(device, graph, dims, quick), device, quick), False
    except fops.BackendUnavailable as exc:
        return [{"name": op, "peer": None, "skipped": str(exc)}], False
    except Exception as exc:  # noqa: BLE001 - recorded, and the exit status says so
        traceback.print_exc()
        return [{"name": op, "peer": None, "skipped": f"error: {type(exc).__name__}: {exc}",
                 "error": True}], True


def _base(name: str) -> str:
    return re.sub(r"( (fwd|fwd\+bwd|[dkK]=\d+))+$", "", name)


def _fmt(x, spec) -> str:
    return "" if x is None or not math.isfinite(x) else format(x, spec)


def markdown(env: dict, graphs: list[dict], cases: list[dict]) -> str:
    """One row per case of ours, next to its peer; the skipped cases grouped by reason."""
    lines = [f"{env['device']}, commit `{env['commit'][:12]}`, {env['date']}, copy bandwidth "
             f"{env['copy_bandwidth_gbps']:.1f} GB/s. Graphs: " + ", ".join(
                 f"{g['name']} ({g['users']} x {g['items']}, {g['interactions']} interactions)"
                 for g in graphs if "skipped" not in g) + ".", "",
             "| op | graph | case | ms | peer | peer ms | speedup | GB/s | % of copy "
             "| vs other peers |",
             "|---|---|---|---:|---|---:|---:|---:|---:|---|"]
    timed = {(c["op"], c["graph"], c["name"]): c for c in cases if "median_ms" in c}
    skipped = {}
    for c in cases:
        if "skipped" in c:
            skipped.setdefault(c["skipped"], []).append(f"{_base(c['name'])} ({c['graph']})")
        if c.get("peer") is None or "median_ms" not in c:
            continue
        peer = timed.get((c["op"], c["graph"], c["peer"]), {})
        others = ", ".join(f"{short_peer(p, c['name'])} {r:.2f}x"
                           for p, r in c.get("speedup_vs", {}).items() if p != c["peer"])
        frac = c.get("fraction_of_copy_bandwidth")
        lines.append(f"| {c['op']} | {c['graph']} | {c['name']} | {c['median_ms']:.3g} | "
                     f"{c['peer']} | {_fmt(peer.get('median_ms'), '.3g')} | "
                     f"{_fmt(c.get('speedup_vs_peer'), '.2f')}x | {_fmt(c.get('gbps'), '.1f')} | "
                     f"{_fmt(None if frac is None else 100 * frac, '.0f')} | {others} |")
    for g in graphs:
        if "skipped" in g:
            skipped.setdefault(g["skipped"], []).append(f"graph {g['name']}")
    if skipped:
        lines += ["", "Skipped:"] + [f"- {reason}: {', '.join(sorted(set(names)))}"
                                     for reason, names in skipped.items()]
    return "\n".join(lines)


def update_readme(block: str, readme=ROOT / "README.md") -> None:
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{readme}: no {README_START} ... {README_END} block to rewrite")
    start = text.index(README_START) + len(README_START)
    readme.write_text(text[:start] + "\n" + block + "\n" + text[text.index(README_END):])


def main(argv=None, ops=None) -> int:
    args = parse_args(argv, ops)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    dims = args.dims or (QUICK_DIMS if args.quick else DIMS)
    specs = args.graphs or (QUICK_GRAPHS if args.quick else GRAPHS[device.type])
    env = environment(device)
    env["copy_bandwidth_gbps"] = copy_bandwidth(device, (32 if args.quick else 512) * 2**20)
    missing = "; ".join(f"{b} ({why})" for b, why in env["backends"].items() if why)
    print(f"{env['device']}: copy {env['copy_bandwidth_gbps']:.1f} GB/s; "
          f"backends not here: {missing or 'none'}")
    name = "bench_" + ("" if args.ops == list(OPS) else "_".join(args.ops) + "_") + device.type
    graphs, cases, failed = [], [], False

    def save(complete: bool):
        """The JSON so far: rewritten after every op, so a run cut short keeps what it measured."""
        return write_json(name, {**env, "suite": "python -m bench", "complete": complete,
                                 "quick": args.quick, "ops": args.ops, "dims": dims,
                                 "graphs": graphs, "cases": cases}, args.out)

    for spec in specs:
        graph, info = build_graph(spec, device)
        graphs.append(info)
        if graph is None:
            print(f"skipping graph {spec}: {info['skipped']}")
            continue
        print(f"graph {spec}: {info['users']} users, {info['items']} items, "
              f"{info['interactions']} interactions ({info['build_s']} s)", flush=True)
        for op in args.ops:
            op_cases, op_failed = run_op(op, device, graph, dims, args.quick)
            failed |= op_failed
            for c in op_cases:
                if "gbps" in c:
                    c["fraction_of_copy_bandwidth"] = c["gbps"] / env["copy_bandwidth_gbps"]
            cases += [{"op": op, "graph": spec, **c} for c in op_cases]
            save(complete=False)
            print(f"  {op}: {len(op_cases)} cases", flush=True)
        del graph
        if device.type == "cuda":
            torch.cuda.empty_cache()
    path = save(complete=True)
    plot(cases, path.with_suffix(".png"), f"{name}: {env['device']}")
    table = markdown(env, graphs, cases)
    print("\n" + table + f"\n\nwrote {path}")
    if args.readme:
        update_readme(table)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
