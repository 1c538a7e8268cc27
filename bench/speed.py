"""The speed scoreboard: every path of a training step against its peer, side by side, in turns.

    python -m bench.speed [--cases mask_step ...] [--threads 1 2] [--repeats 5] [--epoch-steps 10]
                          [--device cpu|cuda] [--quick] [--out bench/results]

Writes ``<out>/speed_scoreboard.json``: ``{"environment": {..., "loadavg": [1, 5, 15 min] at the
start, "loadavg_end": at the end}, "rows": [{"case", "threads", "ours_ms", "peer", "peer_ms",
"ratio", ...}]}`` with ``ratio`` = peer_ms / ours_ms (above 1: ours is faster). A row also names
its ``graph`` (data set), the ``unit`` its times are per, the ``loadavg`` when it finished, and
its ``goal`` (the ratio it should reach) with ``met``. Rows, d = 64, 3 layers, batch 2048 (``bench/ops/sgcn_step.stepper``: loss +
backward + the training optimiser's step, on fixed BPR batches):

  mask_step            the mask plug-in's step (``--mask`` defaults: ``bench/ops/mask_step``)
                       against ``lightgcn_step`` (ours: plain LightGCN's step), on synth-1e5 and
                       Gowalla; goal ratio >= 1 / 1.3.
  l0sign_step_twitter  L0-SIGN's step on the compiled all-pairs kernel against the same model on
  l0sign_step_dblp     PyTorch Geometric (``bench/ops/l0sign``), per step; goal ratio >= 3.
  gmp_overhead         DGR's GMP on every layer (alpha 0.1, 1.1, 0.1, self-loops: the LightGCN+GMP
                       step of ``bench/ops/dgr_step``) against ``lightgcn_step``. Encoded as a
                       step ratio, so "GMP adds at most 5 %" is ratio >= 1 / 1.05 (the overhead is
                       1 / ratio - 1, also in the row as ``overhead``).
  simgcl_step          SimGCL's step against ``lightgcn_step``; goal ratio >= 1 / 1.6.
  lightgcn_epoch       a LightGCN training epoch on Gowalla: ``RankingTask.train_epoch`` (sampling,
                       steps, the trainer's optimiser) against PyG's ``LightGCN`` model with
                       ``LGConv(normalize=False)`` on the normalised adjacency as a torch.sparse
                       CSR tensor, the same BPR triples (``sample_bpr``, drawn inside the timed
                       call for both), the same loss, and ``torch.optim.Adam`` as PyG's example
                       trains it. Timed on the epoch's first ``--epoch-steps`` steps and scaled
                       to the whole epoch (``steps_timed``, ``steps_per_epoch`` in the row;
                       ``--epoch-steps 0`` times whole epochs); goal ratio >= 8.
  layer_fwd            one LightGCN layer on Gowalla, x [U + I, 64] -> [U + I, 64]: ours the PyG
  layer_fwd_bwd        drop-in ``fastgcn_denoise.pyg.LGConv`` (the product LightGCN trains with),
                       the peer PyG's ``LGConv`` on the CSR adjacency (``bench/ops/pyg``); forward
                       + backward is the gradient of the output's sum. ``layer_fwd`` also has the
                       achieved bandwidth (``bytes``: each of the 2E entries reads its column id,
                       weight and gathered row, each of the U + I rows its row pointer and writes
                       its output row; ``gbps``), the machine's copy bandwidth measured in the
                       same turns (``copy_bandwidth_gbps``: a 512 MiB tensor copy, read + write,
                       ``common.copy_bench``) and their ratio ``fraction_of_copy_bandwidth``;
                       goal >= 0.6.

Each row's two callables take turns (``time_benches(interleave=True)``: ours, peer, ours, peer,
... ``--repeats`` times each after one warm-up call), and the medians are compared, so a ratio
is not a measure of a shared machine's drift. A peer that cannot run (PyG not installed, data
not found) leaves its row with ``peer_ms`` and ``ratio`` null and ``skipped`` saying why.
``--quick`` (a smoke test: every graph synth-1e4, tiny random L0-SIGN graphs, 2 repeats, 2 epoch
steps) writes under runs/bench-quick, never into bench/results. On a machine shared with other
jobs set ``OMP_WAIT_POLICY=PASSIVE`` (bench/__init__.py): with OpenMP's active wait the 2-thread
rows measured the contention (a LightGCN epoch 4.7x slower at 2 threads than at 1, load 20).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from fastgcn_denoise import pyg as fpyg
from fastgcn_denoise.data import sample_bpr
from fastgcn_denoise.data.feature_graphs import FeatureGraphs, load_feature_graphs
from fastgcn_denoise.denoisers import DGR, DGRConfig
from fastgcn_denoise.models import LightGCN, SimGCL
from fastgcn_denoise.pipelines.train import build_optimizer, make_config
from fastgcn_denoise.tasks.ranking import RankingTask

from .common import (
    RESULTS,
    SHARED_DATA,
    Bench,
    build_graph,
    copy_bench,
    environment,
    subject_missing,
    time_benches,
    write_json,
)
from .ops import l0sign as l0sign_bench
from .ops.dgr_step import ALPHA
from .ops.mask_step import _model as mask_model
from .ops.pyg import _pyg_or_reason, _step, normalised_adjacency
from .ops.sgcn_step import BATCH, LAYERS, STEPS, stepper
from .suite import QUICK_OUT

CASES = (
    "mask_step",
    "l0sign_step_twitter",
    "l0sign_step_dblp",
    "gmp_overhead",
    "simgcl_step",
    "lightgcn_epoch",
    "layer_fwd",
    "layer_fwd_bwd",
)
LIGHTGCN_STEP = "lightgcn_step"  # the peer of the ratios against our own LightGCN step
DIM = 64
GOALS = {  # case -> (the field that meets it, its least value)
    "mask_step": ("ratio", 1 / 1.3),
    "l0sign_step_twitter": ("ratio", 3.0),
    "l0sign_step_dblp": ("ratio", 3.0),
    "gmp_overhead": ("ratio", 1 / 1.05),
    "simgcl_step": ("ratio", 1 / 1.6),
    "lightgcn_epoch": ("ratio", 8.0),
    "layer_fwd": ("fraction_of_copy_bandwidth", 0.6),
}
GRAPHS = {  # case -> its graphs (--quick: synth-1e4 for all)
    "mask_step": ("synth-1e5", "gowalla"),
    "gmp_overhead": ("gowalla",),
    "simgcl_step": ("gowalla",),
    "lightgcn_epoch": ("gowalla",),
    "layer_fwd": ("gowalla",),
    "layer_fwd_bwd": ("gowalla",),
}
L0SIGN_DATA = {"l0sign_step_twitter": "twitter", "l0sign_step_dblp": "DBLP_v1"}
QUICK_GRAPH = "synth-1e4"


class Row(SimpleNamespace):
    """One row to time: ``ours`` and ``peer`` (``Bench``es, the peer possibly skipped), ``per``
    (calls' time is divided by it: steps per call, or the share of an epoch timed), ``unit``,
    ``info`` (extra fields of the row) and ``copy`` (a ``copy_bench`` timed in the same turns, or
    None)."""

    copy = None


def _lightgcn(graph, device, plugin_config=None, cls=LightGCN):
    torch.manual_seed(0)
    model = cls(graph.num_users, graph.num_items, dim=DIM, num_layers=LAYERS)
    if plugin_config is not None:
        model.add_plugin(DGR(plugin_config, graph, LAYERS).attach(model))
    return model.to(device)


def _against_lightgcn_step(name: str, model, graph, device) -> Row:
    """``name``'s step against plain LightGCN's step on the same graph and batches."""
    return Row(
        ours=Bench(name, name, stepper(model, graph)),
        peer=Bench(LIGHTGCN_STEP, name, stepper(_lightgcn(graph, device), graph)),
        per=STEPS,
        unit="step",
        info={"steps_per_call": STEPS, "batch": BATCH},
    )


def mask_step(graph, device, quick) -> Row:
    return _against_lightgcn_step("mask_step", mask_model(graph, DIM, device, {}), graph, device)


def gmp_overhead(graph, device, quick) -> Row:
    gmp = DGRConfig(dgr_alpha=ALPHA, dgr_lec=False)
    row = _against_lightgcn_step("gmp_overhead", _lightgcn(graph, device, gmp), graph, device)
    row.info["gmp_alpha"] = list(ALPHA)
    return row


def simgcl_step(graph, device, quick) -> Row:
    return _against_lightgcn_step(
        "simgcl_step", _lightgcn(graph, device, cls=SimGCL), graph, device
    )


def _bpr(u, p, n, ego_sq, decay):
    """The BPR loss of ``models.base.bpr_loss``, for the PyG peer's rows."""
    return F.softplus((u * n).sum(-1) - (u * p).sum(-1)).mean() + decay * ego_sq / (2 * u.shape[0])


def _pyg_epoch(graph, device, num_samples: int):
    """PyG's LightGCN trained over ``num_samples`` BPR triples (module docstring)."""
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    torch.manual_seed(0)
    model = PygLightGCN(graph.num_users + graph.num_items, DIM, LAYERS, normalize=False)
    model = model.to(device)
    adj = normalised_adjacency(graph, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=make_config("lightgcn").lr)
    decay = LightGCN(1, 1).decay
    gen = torch.Generator().manual_seed(0)
    users_off = graph.num_users

    def run():
        users, pos, neg = sample_bpr(graph, num_samples, gen)
        for s in range(math.ceil(num_samples / BATCH)):
            sl = slice(s * BATCH, (s + 1) * BATCH)
            u, p, n = users[sl], pos[sl] + users_off, neg[sl] + users_off
            final = model.get_embedding(adj)
            ego = model.embedding.weight
            sq = ego[u].pow(2).sum() + ego[p].pow(2).sum() + ego[n].pow(2).sum()
            loss = _bpr(final[u], final[p], final[n], sq, decay)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def lightgcn_epoch(graph, device, quick, epoch_steps: int) -> Row:
    steps_per_epoch = math.ceil(graph.num_edges / BATCH)
    steps = steps_per_epoch if epoch_steps <= 0 else min(epoch_steps, steps_per_epoch)
    num_samples = graph.num_edges if steps == steps_per_epoch else steps * BATCH
    config = make_config("lightgcn", batch_size=BATCH, device=str(device))
    model = _lightgcn(graph, device)
    optimizer = build_optimizer(model, config)
    prep = SimpleNamespace(train=graph)  # train_epoch reads the training graph only
    gen = torch.Generator().manual_seed(0)

    def ours():
        RankingTask.train_epoch(model, optimizer, prep, config, 1, gen, False, num_samples)

    why = _pyg_or_reason()[1]
    peer_name = "pyg LightGCN on CSR"
    peer = (
        Bench(peer_name, "epoch", skipped=why)
        if why
        else Bench(peer_name, "epoch", _pyg_epoch(graph, device, num_samples))
    )
    return Row(
        ours=Bench("lightgcn_epoch", "epoch", ours),
        peer=peer,
        per=num_samples / graph.num_edges,
        unit="epoch",
        info={"steps_timed": steps, "steps_per_epoch": steps_per_epoch, "batch": BATCH},
    )


def operator_bytes(graph, d: int, itemsize: int = 4) -> int:
    """Bytes one plain layer moves (module docstring): 2E entries, U + I rows."""
    entries, rows = 2 * graph.num_edges, graph.num_users + graph.num_items
    return entries * (8 + itemsize + d * itemsize) + rows * (8 + d * itemsize)


def _layer(backward: bool):
    def build(graph, device, quick) -> Row:
        direction = "fwd+bwd" if backward else "fwd"
        edge_index = graph.to_edge_index().to(device)
        n = graph.num_users + graph.num_items
        x = torch.randn(n, DIM, device=device, generator=torch.Generator(device).manual_seed(0))
        x.requires_grad_(backward)
        ours = fpyg.LGConv()
        ours(x.detach(), edge_index)  # the layout is parsed once, before timing (as in training)
        name = "layer_fwd_bwd" if backward else "layer_fwd"
        pyg_lgconv, why = _pyg_or_reason()
        peer_name = f"PyG LGConv csr {direction}"
        if why:
            peer = Bench(peer_name, name, skipped=why)
        else:
            adj, plain = normalised_adjacency(graph, device), pyg_lgconv(normalize=False)
            peer = Bench(peer_name, name, _step(lambda x: plain(x, adj), x, backward))
        return Row(
            ours=Bench(
                name,
                name,
                _step(lambda x: ours(x, edge_index), x, backward),
                bytes_moved=None if backward else operator_bytes(graph, DIM),
            ),
            peer=peer,
            per=1,
            unit="call",
            info={"d": DIM},
            copy=None if backward else copy_bench(device, (64 if quick else 512) * 2**20),
        )

    return build


BUILDERS = {
    "mask_step": mask_step,
    "gmp_overhead": gmp_overhead,
    "simgcl_step": simgcl_step,
    "lightgcn_epoch": lightgcn_epoch,
    "layer_fwd": _layer(backward=False),
    "layer_fwd_bwd": _layer(backward=True),
}


def tiny_feature_graphs(num_graphs: int = 5000, nodes: int = 6, features: int = 60):
    """Random L0-SIGN graphs for --quick (enough for the bench's 4 batches of 1024)."""
    rng = np.random.default_rng(0)
    ids = np.stack([rng.choice(features, nodes, replace=False) for _ in range(num_graphs)])
    ptr = np.arange(num_graphs + 1, dtype=np.int64) * nodes
    labels = rng.integers(0, 2, num_graphs).astype(np.float32)
    return FeatureGraphs("random", ptr, ids.reshape(-1).astype(np.int64), labels, features)


@functools.lru_cache(maxsize=None)
def _feature_graphs(name: str, quick: bool):
    """(graphs or None, their description)."""
    if quick:
        return tiny_feature_graphs(), {"name": "random (--quick)"}
    path = SHARED_DATA / "l0sign" / f"{name}.data"
    if not path.is_file():
        return None, {"name": name, "skipped": f"{path} not found (set FASTGCN_SHARED_DATA)"}
    return load_feature_graphs(path), {"name": name, "source": str(path)}


def l0sign_row(case: str, device, quick) -> tuple[Row | None, dict]:
    """L0-SIGN's step (ours on the fused backend) against the PyG model, per step."""
    graphs, data = _feature_graphs(L0SIGN_DATA[case], quick)
    if graphs is None:
        return None, data
    fused = "cpu" if torch.device(device).type == "cpu" else "triton"
    benches = {b.name: b for b in l0sign_bench.benches(graphs, device)}
    ours = benches[f"ours[{fused}] l0-sign"]
    ours.name = case
    info = {k: v for k, v in ours.info.items() if k in ("pairs_per_step", "batch")}
    row = Row(ours=ours, peer=benches["pyg l0-sign"], per=l0sign_bench.STEPS, unit="step")
    row.info = {"steps_per_call": l0sign_bench.STEPS, **info}
    return row, data


def time_row(case: str, row: Row, device, repeats: int, threads: int) -> dict:
    """Ours and the peer (and the copy) in turns; the row of the scoreboard."""
    benches = [row.ours, row.peer] + ([row.copy] if row.copy is not None else [])
    ours, peer, *copy = time_benches(benches, device, False, interleave=True, repeat=repeats)
    out = {"case": case, "threads": threads}
    out["ours_ms"] = ours["median_ms"] / row.per if "median_ms" in ours else None
    out["peer"] = row.peer.name
    out["peer_ms"] = peer["median_ms"] / row.per if "median_ms" in peer else None
    both = out["ours_ms"] is not None and out["peer_ms"] is not None
    out["ratio"] = out["peer_ms"] / out["ours_ms"] if both else None
    skipped = [c["skipped"] for c in (ours, peer) if "skipped" in c]
    if skipped:
        out["skipped"] = "; ".join(skipped)
    out["unit"] = row.unit
    out["repeats"] = repeats
    out["loadavg"] = list(os.getloadavg())  # when the row finished: a shared machine shows here
    out.update(row.info)
    if "gbps" in ours:
        out["bytes"], out["gbps"] = ours["bytes"], ours["gbps"]
        if copy and "gbps" in copy[0]:
            out["copy_bandwidth_gbps"] = copy[0]["gbps"]
            out["fraction_of_copy_bandwidth"] = ours["gbps"] / copy[0]["gbps"]
    return out


def judge(row: dict) -> dict:
    """Add the case's goal and whether the row meets it (None when the figure is missing)."""
    if row["case"] == "gmp_overhead" and row["ratio"]:
        row["overhead"] = 1 / row["ratio"] - 1
    if row["case"] in GOALS:
        field, least = GOALS[row["case"]]
        row["goal"] = f"{field} >= {least:.3g}"
        row["met"] = None if row.get(field) is None else bool(row[field] >= least)
    return row


def _carried_over(path: Path, rows: list[dict]) -> list[dict]:
    """The rows of an earlier scoreboard at ``path`` for (case, threads) not timed now, each
    marked with that run's ``measured`` date and commit: ``--cases`` re-times a few rows without
    losing the others."""
    if not path.exists():
        return []
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    done = {(r["case"], r["threads"]) for r in rows}
    env = old.get("environment", {})
    return [
        {**r, "measured": r.get("measured") or {k: env.get(k) for k in ("date", "commit")}}
        for r in old.get("rows", [])
        if (r.get("case"), r.get("threads")) not in done
    ]


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5, help="timed calls of each side (median)")
    ap.add_argument(
        "--epoch-steps",
        type=int,
        default=10,
        help="lightgcn_epoch: steps timed, scaled to the epoch (0: whole epochs)",
    )
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (the threads then set the CPU's)")
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny graphs, 2 repeats")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    out = Path(args.out) if args.out else (QUICK_OUT if args.quick else RESULTS)
    if args.quick and out.resolve() == RESULTS.resolve():
        print("python -m bench.speed: --quick results never go to bench/results", file=sys.stderr)
        return 2
    missing = subject_missing(device)
    if missing:
        print(f"python -m bench.speed: error: {missing}", file=sys.stderr)
        return 2
    repeats = 2 if args.quick else args.repeats
    epoch_steps = 2 if args.quick else args.epoch_steps
    env = environment(device)
    env.update(
        threads=args.threads,
        repeats=repeats,
        quick=args.quick,
        command="python -m bench.speed " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    graphs, data, rows = {}, {}, []
    threads_before = torch.get_num_threads()
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for case in args.cases:
                specs = []  # (graph or data name, the row to time or None, why not)
                if case in L0SIGN_DATA:
                    row, data[case] = l0sign_row(case, device, args.quick)
                    specs.append((data[case]["name"], row, data[case].get("skipped")))
                for spec in (
                    () if case in L0SIGN_DATA else GRAPHS[case][: 1 if args.quick else None]
                ):
                    spec = QUICK_GRAPH if args.quick else spec
                    if spec not in graphs:
                        graphs[spec] = build_graph(spec, device)
                    graph, info = graphs[spec]
                    if graph is None:
                        specs.append((spec, None, info["skipped"]))
                        continue
                    extra = (epoch_steps,) if case == "lightgcn_epoch" else ()
                    specs.append((spec, BUILDERS[case](graph, device, args.quick, *extra), None))
                for spec, row, why in specs:
                    if row is None:
                        timed = {"case": case, "threads": threads, "ours_ms": None, "peer": None}
                        timed.update(peer_ms=None, ratio=None, skipped=why)
                    else:
                        timed = time_row(case, row, device, repeats, threads)
                    timed["graph"] = spec
                    rows.append(judge(timed))
                    print(_line(timed), flush=True)
    finally:
        torch.set_num_threads(threads_before)
    env["graphs"] = [info for _, info in graphs.values()] + list(data.values())
    env["loadavg_end"] = list(os.getloadavg())
    rows += _carried_over(out / "speed_scoreboard.json", rows)
    path = write_json("speed_scoreboard", {"environment": env, "rows": rows}, out)
    print(f"wrote {path}")
    return 0


def _line(row: dict) -> str:
    def ms(v):
        return "-" if v is None else f"{v:.1f} ms"

    text = (
        f"{row['case']:20s} {row['graph']:10s} t={row['threads']} ours {ms(row['ours_ms'])}  "
        f"{row['peer']} {ms(row['peer_ms'])}"
    )
    if row["ratio"] is not None:
        text += f"  ratio {row['ratio']:.2f}"
    if "fraction_of_copy_bandwidth" in row:
        text += f"  {row['gbps']:.1f} GB/s = {row['fraction_of_copy_bandwidth']:.0%} of copy"
    if "met" in row:
        text += f"  goal {row['goal']}: {'met' if row['met'] else 'not met'}"
    return text + (f"  ({row['skipped']})" if "skipped" in row else "")


if __name__ == "__main__":
    raise SystemExit(main())
