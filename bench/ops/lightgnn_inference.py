"""Inference cost of the LightGNN student against its teacher and LightGCN: one full propagation,
then the scoring of a batch of users (top-20 over all items), with time, FLOPs and parameters.

Models on the Yelp split's training graph, d = 64:
  LightGCN   the project's ``models.LightGCN``: 3 layers, mean readout, A without self-loops
             (``masked_spmm``, degrees normalised on the fly)
  teacher    LightGNN's teacher: 8 layers over D~^-1/2 (A + I) D~^-1/2, sum readout
  student    2 layers over the same graph, pruned: from a pipeline run (``--student`` = a run's
             ``pruned.pt`` or the student stage folder, whose selected run is taken) or, without
             one, random masks at the paper's Yelp operating point (0.95^5 = 77.4% of the entries,
             0.8^5 = 32.8% of the embedding entries; the cost depends only on the sizes). It runs
             as ``compacted()``: the kept entries only, weights folded into the values.
Cases, timed in turns: ``propagation`` (forward to the final embeddings) and ``propagation +
scoring`` (then one serving batch: the scores of 4096 users over all items and their top 20; the
scoring is the same dense product for the three, d = 64), the student and the teacher each
against LightGCN (the peer). Per model: ``parameters`` (learned numbers
inference stores: non-zero embedding entries + per-entry weights), ``graph_entries`` and
``propagation_flops`` (2 d per stored entry and layer).

Run: python -m bench.ops.lightgnn_inference [--threads 2] [--student runs/lightgnn/student]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fastgcn_denoise.data import load_lightgcn
from fastgcn_denoise.denoisers.lightgnn import NodeGraph, PrunableLightGCN
from fastgcn_denoise.models import LightGCN

from ..common import SHARED_DATA, Bench, environment, time_benches, write_json

DIM, TOPK, SCORE_BATCH = 64, 20, 4096
EDGE_KEEP, EMB_KEEP = 0.95**5, 0.8**5


def scorer(forward):
    """propagation + the top-k of one serving batch of users over all items."""

    def run():
        with torch.no_grad():
            user, item = forward()
            torch.topk(user[:SCORE_BATCH] @ item.T, TOPK, dim=1)

    return run


def _no_grad(forward):
    def run():
        with torch.no_grad():
            forward()

    return run


def student_state(path: Path | None, graph) -> tuple[dict | None, str]:
    if path is None:
        return None, f"random masks at {EDGE_KEEP:.3f} entries / {EMB_KEEP:.3f} embedding entries"
    if path.is_dir():
        summary = json.loads((path / "metrics.json").read_text())
        run = (summary["selected"] or summary["runs"][-1])["run"]
        path = path / f"run_{run:02d}" / "checkpoint.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)  # never runs code from a file
    return state.get("best_model", state), str(path)


def build(graph, student_path: Path | None, seed: int = 0):
    torch.manual_seed(seed)
    sg = NodeGraph.build(graph, 1)
    lightgcn = LightGCN(graph.num_users, graph.num_items, DIM, 3).requires_grad_(False)
    teacher = PrunableLightGCN(sg, DIM, 8, learn_weights=False).requires_grad_(False)
    student = PrunableLightGCN(sg, DIM, 2)
    state, source = student_state(student_path, graph)
    with torch.no_grad():
        if state is None:
            student.edge_mask.bernoulli_(EDGE_KEEP)
            student.emb_mask.bernoulli_(EMB_KEEP)
        else:
            student.load_state_dict(state)
    n = graph.num_users + graph.num_items
    sizes = {
        "LightGCN": {
            "layers": 3,
            "parameters": n * DIM,
            "graph_entries": graph.num_edges,
            "propagation_flops": 3 * 2 * 2 * graph.num_edges * DIM,
        },
        "teacher": {
            "layers": 8,
            "parameters": n * DIM,
            "graph_entries": sg.nnz,
            "propagation_flops": 8 * 2 * sg.nnz * DIM,
        },
    }
    counts = student.parameter_count()
    compact = student.compacted()
    sizes["student"] = {
        "layers": 2,
        "parameters": counts["total"],
        "graph_entries": compact.graph.nnz,
        "propagation_flops": 2 * 2 * compact.graph.nnz * DIM,
        "kept": student.kept_fractions(),
        "source": source,
    }
    return {"LightGCN": lambda: lightgcn(graph), "teacher": teacher, "student": compact}, sizes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.ops.lightgnn_inference", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads (CPU)")
    ap.add_argument("--data", default=str(SHARED_DATA / "yelp_lightgnn"))
    ap.add_argument(
        "--student",
        type=Path,
        default=None,
        help="a run's pruned.pt/checkpoint.pt, or the student stage folder",
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    graph = load_lightgcn(args.data).train_graph()
    models, sizes = build(graph, args.student)
    benches = []
    for kind, wrap in (("propagation", _no_grad), ("propagation + scoring", scorer)):
        peer = f"LightGCN {kind}"
        benches.append(Bench(peer, kind, wrap(models["LightGCN"]), info=sizes["LightGCN"]))
        for name in ("teacher", "student"):
            benches.append(
                Bench(f"{name} {kind}", kind, wrap(models[name]), peer=peer, info=sizes[name])
            )
    cases = time_benches(benches, "cpu", args.quick, interleave=True)
    env = environment("cpu")
    env["shared_machine"] = "2-core machine shared with other sessions; ratios timed in turns"
    threads = torch.get_num_threads()
    path = write_json(
        f"bench_lightgnn_inference_cpu_t{threads}",
        {
            **env,
            "suite": "python -m bench.ops.lightgnn_inference",
            "data": args.data,
            "threads": threads,
            "sizes": sizes,
            "cases": cases,
        },
        args.out,
    )
    for c in cases:
        ratio = f"  {c['speedup_vs_peer']:.2f}x vs LightGCN" if "speedup_vs_peer" in c else ""
        print(
            f"{c['name']:36s} {c['median_ms']:9.1f} ms  params {c['parameters']:>9d}  "
            f"entries {c['graph_entries']:>8d}{ratio}"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
