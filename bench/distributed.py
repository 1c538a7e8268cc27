"""Distributed LightGCN training steps at P = 1, 2, 4 processes on one machine (gloo on CPU).

    python -m bench.distributed [--interactions 5e6] [--worlds 1 2 4] [--dim 64] [--layers 3]
                                [--batch 2048] [--steps 5] [--balance contiguous|degree]
                                [--device cpu|cuda] [--out bench/results/distributed_cpu.json]
                                [--model-only]

A synthetic power-law graph (``common.power_law_graph``, the shape of ``synthetic_graph``) is
built by every rank from the same seed, partitioned (``graph_partition``) and dropped; each rank
then times full BPR steps of ``pipelines.distributed.PartitionedRecommender`` (propagation over
the whole graph with the halo exchanges, the loss on one global batch, backward, Adam), the
steps separated by barriers so a step's time is the slowest rank's. Each P uses
``cores // P`` torch threads per rank (at least 1). The row ``world_size: 0`` is the plain
single-process step (``LightGCN.loss`` on the whole graph, ``masked_spmm``), the reference.

Per row: ``step_ms`` (median), ``halo_rows_per_layer`` (rows received over all ranks per
propagation; the backward moves as many again), ``bytes_sent_per_step`` (rows between different
ranks in one step: halo forward + backward per layer, and the batch's item rows forward +
backward, float32), ``peak_rss_mb_per_rank`` (the largest ru_maxrss: it includes building the
whole graph before partitioning), ``rss_mb_per_rank`` (the largest resident size after the
steps, once the global graph is freed), ``tables_mb_per_rank`` / ``graph_mb_per_rank`` (tensor
bytes kept by the largest rank: embedding rows + Adam state, and the partition).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastgcn_denoise.graph_partition import partition_bounds, partition_graph
from fastgcn_denoise.models.base import Batch
from fastgcn_denoise.models.lightgcn import LightGCN
from fastgcn_denoise.pipelines.distributed import PartitionedRecommender

from .common import RESULTS, environment, power_law_graph


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _graph(args):
    users = max(40, round(args.interactions / 29))
    return power_law_graph(users, max(60, round(1.4 * users)), int(args.interactions), seed=0)


def _batches(num_edges: int, args):
    gen = torch.Generator().manual_seed(1)
    for _ in range(args.steps + 1):
        yield (
            torch.randint(num_edges, (args.batch,), generator=gen),
            torch.rand(args.batch, generator=gen, dtype=torch.float64),
        )


def _nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _single(args, out: str) -> None:
    """The plain single-process step on the whole graph (the reference row)."""
    from fastgcn_denoise.data import sample_bpr

    torch.set_num_threads(os.cpu_count() or 1)
    device = torch.device(args.device)
    g = _graph(args).to(device)
    model = LightGCN(g.num_users, g.num_items, args.dim, args.layers).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    gen = torch.Generator().manual_seed(1)
    times = []
    for step in range(args.steps + 1):
        users, pos, neg = sample_bpr(g, args.batch, gen)
        _sync(device)
        t0 = time.perf_counter()
        loss = model.loss(g, Batch(users, pos, neg))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if step:
            times.append((time.perf_counter() - t0) * 1e3)
    graph = _nbytes(*(getattr(g, n) for n in g._TENSORS))
    tables = _nbytes(model.user_emb, model.item_emb) * 3  # + Adam's two moments
    # masked_spmm keeps w [E] and r [U + I] per layer for the backward; sample_bpr caches the
    # users of the edges and the shifted keys.
    weights = args.layers * 4 * (g.num_edges + g.num_users + g.num_items)
    sampler = 2 * 8 * g.num_edges
    Path(out).write_text(
        json.dumps(
            {
                "world_size": 0,
                "what": "single process (LightGCN.loss, masked_spmm)",
                "step_ms": statistics.median(times),
                "halo_rows_per_layer": 0,
                "bytes_sent_per_step": 0,
                "peak_rss_mb_per_rank": _peak_mb(),
                "rss_mb_per_rank": _rss_mb(),
                "tables_mb_per_rank": tables / 2**20,
                "graph_mb_per_rank": graph / 2**20,
                "edge_weights_mb_per_rank": weights / 2**20,
                "sampler_mb_per_rank": sampler / 2**20,
                "threads_per_rank": torch.get_num_threads(),
                "edges": g.num_edges,
                "users": g.num_users,
                "items": g.num_items,
            }
        )
    )


def _worker(rank: int, world: int, port: int, args, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world
    )
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    g = _graph(args)
    num_edges = g.num_edges
    ub = partition_bounds(g.deg_u, world, args.balance)
    ib = partition_bounds(g.deg_i, world, args.balance)
    part = partition_graph(g, rank, ub, ib).to(device)
    torch.manual_seed(rank)
    model = LightGCN(part.num_own_users, part.num_own_items, args.dim, args.layers).to(device)
    del g
    gc.collect()
    net = PartitionedRecommender(model, part)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    times, batch_rows = [], []
    for step, (edges, unif) in enumerate(_batches(num_edges, args)):
        edges, unif = edges.to(device), unif.to(device)
        dist.barrier()
        _sync(device)
        t0 = time.perf_counter()
        users, pos, neg, _ = net.triples(edges, unif)
        loss = net.loss(users, pos, neg, args.batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        dist.barrier()
        if step:
            times.append((time.perf_counter() - t0) * 1e3)
            batch_rows.append(net.remote_rows_per_step)
    mem = net.nbytes(opt)
    width = args.dim  # LightGCN's layers are all d wide
    stats = {
        "step_ms": statistics.median(times),
        "halo": part.num_halo,
        "batch_rows": statistics.mean(batch_rows),
        "peak": _peak_mb(),
        "rss": _rss_mb(),
        "width": width,
        **mem,
    }
    gathered = [None] * world
    dist.all_gather_object(gathered, stats)
    if rank == 0:
        halo = sum(s["halo"] for s in gathered)
        # Per layer the halo goes out (forward) and its gradient back (backward): d floats a row;
        # a batch item row carries its L + 1 layer rows each way.
        sent = 4 * (
            2 * args.layers * halo * args.dim
            + 2 * sum(s["batch_rows"] for s in gathered) * (args.layers + 1) * width
        )
        Path(out).write_text(
            json.dumps(
                {
                    "world_size": world,
                    "what": f"PartitionedRecommender step, {dist.get_backend()}",
                    "step_ms": max(s["step_ms"] for s in gathered),
                    "halo_rows_per_layer": halo,
                    "halo_rows_per_rank": [s["halo"] for s in gathered],
                    "bytes_sent_per_step": int(sent),
                    "peak_rss_mb_per_rank": max(s["peak"] for s in gathered),
                    "rss_mb_per_rank": max(s["rss"] for s in gathered),
                    **{
                        f"{k}_mb_per_rank": max(s[k] for s in gathered) / 2**20
                        for k in ("tables", "graph", "edge_weights", "sampler")
                    },
                    "threads_per_rank": torch.get_num_threads(),
                    "edges": num_edges,
                    "user_bounds": ub,
                    "item_bounds": ib,
                }
            )
        )
    dist.destroy_process_group()


# ---------------------------------------------------------------------- the scaling model
# A node of degree k whose neighbours are spread evenly over P ranks is in the halo of each other
# rank that holds at least one of them: (P - 1) (1 - (1 - 1/P)^k) halo rows per propagation.
# Assumed GPU figures (not measured here): effective bandwidth of the row gathers in HBM, and the
# all-to-all bandwidth per GPU inside one 8-GPU NVLink node and across InfiniBand NDR nodes.
GPU_ASSUMPTIONS = {
    "hbm_gather_gbps": 1500.0,
    "nvlink_alltoall_gbps": 300.0,
    "infiniband_alltoall_gbps": 40.0,
    "gpus_per_node": 8,
}


def expected_halo(degrees: np.ndarray, world: int) -> float:
    """Halo rows over all ranks for nodes of the given degrees (the comment above)."""
    keep = (1.0 - 1.0 / world) ** degrees.astype(np.float64)
    return float((world - 1) * (1.0 - keep).sum())


def _power_law_halo(interactions: float, world: int, chunk: int = 10_000_000) -> tuple:
    """(users, items, expected halo rows over all ranks) for ``power_law_graph``'s shape at
    ``interactions`` edges, from its degree laws (lognormal users, Zipf(0.9) items with Poisson
    degrees), in chunks: no graph is built."""
    users = max(40, round(interactions / 29))
    items = max(60, round(1.4 * users))
    rng = np.random.default_rng(0)
    mean_activity = np.exp(0.5)  # E[lognormal(0, 1)]
    halo = 0.0
    for start in range(0, users, chunk):
        act = rng.lognormal(0.0, 1.0, min(chunk, users - start))
        deg = np.maximum(1, np.rint(act * interactions / (users * mean_activity)))
        halo += expected_halo(deg, world)
    norm = sum(
        float((1.0 / np.arange(s + 1, min(s + chunk, items) + 1) ** 0.9).sum())
        for s in range(0, items, chunk)
    )
    for start in range(0, items, chunk):
        lam = interactions / norm / np.arange(start + 1, min(start + chunk, items) + 1) ** 0.9
        halo += float((world - 1) * (-np.expm1(-lam / world)).sum())
    return users, items, halo


def scaling_model(args, measured: list) -> dict:
    """The halo model checked against the measured rows, then evaluated for 1e9 interactions on
    8 and 64 GPUs with ``GPU_ASSUMPTIONS`` (per layer, forward; the backward doubles both)."""
    g = _graph(args)
    degrees = np.concatenate([g.deg_u.numpy(), g.deg_i.numpy()])
    check = [
        {
            "world_size": r["world_size"],
            "measured_halo_rows": r["halo_rows_per_layer"],
            "model_halo_rows": round(expected_halo(degrees, r["world_size"])),
            "model_from_degree_laws": round(_power_law_halo(args.interactions, r["world_size"])[2]),
        }
        for r in measured
        if r["world_size"] > 1
    ]
    a, dim, rows = GPU_ASSUMPTIONS, args.dim, []
    for world in (8, 64):
        users, items, halo = _power_law_halo(1e9, world)
        halo_rank = halo / world
        comm = halo_rank * dim * 4
        link = (
            a["nvlink_alltoall_gbps"]
            if world <= a["gpus_per_node"]
            else a["infiniband_alltoall_gbps"]
        )
        # Both directions read each edge once: a gathered row, a column index, a weight.
        compute = 2 * 1e9 / world * (dim * 4 + 8 + 4)
        rows.append(
            {
                "interactions": 1e9,
                "world_size": world,
                "users": users,
                "items": items,
                "owned_rows_per_rank": (users + items) / world,
                "halo_rows_per_rank": halo_rank,
                "halo_bytes_per_layer_per_rank": comm,
                "edge_bytes_per_layer_per_rank": compute,
                "comm_ms_per_layer": comm / (link * 1e9) * 1e3,
                "compute_ms_per_layer": compute / (a["hbm_gather_gbps"] * 1e9) * 1e3,
                "tables_gb_per_rank": (users + items) / world * dim * 4 * 3 / 1e9,
                "graph_gb_per_rank": 3 * 8 * 1e9 / world / 1e9,
            }
        )
    return {"assumptions": a, "check": check, "predictions": rows}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--interactions", type=float, default=5e6)
    p.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--balance", default="contiguous", choices=["contiguous", "degree"])
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU a rank)")
    p.add_argument("--out", default=None, help="default bench/results/distributed_<device>.json")
    p.add_argument(
        "--model-only",
        action="store_true",
        help="add the scaling model to the rows already in --out (no timing)",
    )
    args = p.parse_args(argv)
    args.out = args.out or str(RESULTS / f"distributed_{torch.device(args.device).type}.json")
    if args.model_only:
        result = json.loads(Path(args.out).read_text())
        result["model"] = scaling_model(args, result["rows"])
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["model"], indent=2))
        return 0
    env = environment(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        row_file = os.path.join(tmp, "row.json")
        ctx = mp.get_context("spawn")
        proc = ctx.Process(target=_single, args=(args, row_file))
        proc.start()
        proc.join()
        if proc.exitcode:
            print(f"single-process reference failed (exit {proc.exitcode})", file=sys.stderr)
            return 1
        rows.append(json.loads(Path(row_file).read_text()))
        print(json.dumps(rows[-1]), flush=True)
        for world in args.worlds:
            mp.spawn(_worker, args=(world, _free_port(), args, row_file), nprocs=world)
            rows.append(json.loads(Path(row_file).read_text()))
            print(json.dumps(rows[-1]), flush=True)
    env["loadavg_end"] = list(os.getloadavg())
    env["settings"] = vars(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
