"""Where the ``ones`` forward of masked_spmm spends its time, next to torch's CSR product.

Study: why is the ``ones`` forward of masked_spmm slower than PyG's single CSR product? Answer:
bench/results/ones_forward_profile_gowalla_cpu.json.

    python -m bench.studies.ones_forward_profile [--threads 1] [--dim 64] [--out FILE]

On Gowalla, in turns (one call of each per round, medians): the pieces of one ``ones``
propagation on the cpu backend (the unit w buffer, the degree pass, the user-side and item-side
products with their r gathers) against PyG's peer (one torch.sparse.mm of the pre-normalised
[N, N] CSR) and against the same kernel on pre-normalised values (the homogeneous CSR with
weights r_u r_i, no r gathers, no w through the permutation: what the fix would leave).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

from fastgcn_denoise.graph import parse_edge_index
from fastgcn_denoise.ops import get_backend
from fastgcn_denoise.pyg import _Entry, _plain_operator

from ..common import SHARED_DATA, environment
from ..ops.pyg import normalised_adjacency

warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from fastgcn_denoise.data import load_lightgcn

    g = load_lightgcn(SHARED_DATA / "gowalla").train_graph()
    be = get_backend(torch.device("cpu"), "cpu")
    gen = torch.Generator().manual_seed(0)
    xu = torch.randn(g.num_users, args.dim, generator=gen)
    xi = torch.randn(g.num_items, args.dim, generator=gen)
    x = torch.cat([xu, xi])
    w = be.edge_weights(None, None, (0,), 0, 0, g.num_edges, torch.float32, "cpu")
    r_u, r_i = be.degree_rsqrt(g, w, False)
    adj = normalised_adjacency(g, "cpu")
    pattern, weight = _plain_operator(
        _Entry(None, parse_edge_index(g.to_edge_index())), torch.float32, True
    )
    cases = {
        "w buffer (edge_weights, ones)": lambda: be.edge_weights(
            None, None, (0,), 0, 0, g.num_edges, torch.float32, "cpu"
        ),
        "degree pass (degree_rsqrt)": lambda: be.degree_rsqrt(g, w, False),
        "user-side spmm (w, r gathers)": lambda: be.spmm(
            g.rowptr_u, g.col_item, None, w, r_u, r_i, xi, None
        ),
        "item-side spmm (w via perm, r)": lambda: be.spmm(
            g.rowptr_i, g.col_user, g.perm, w, r_i, r_u, xu, None
        ),
        "user-side spmm, no r": lambda: be.spmm(
            g.rowptr_u, g.col_item, None, w, None, None, xi, None
        ),
        "item-side spmm, no r": lambda: be.spmm(
            g.rowptr_i, g.col_user, g.perm, w, None, None, xu, None
        ),
        "torch.sparse.mm [N, N] CSR (PyG LGConv csr)": lambda: torch.sparse.mm(adj, x),
        "our spmm on [N, N] pre-normalised CSR": lambda: be.spmm(
            pattern.rowptr, pattern.col, None, weight[None], None, None, x, None
        ),
    }
    times = {k: [] for k in cases}
    for f in cases.values():
        f()
    for _ in range(args.rounds):
        for k, f in cases.items():
            t0 = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    pieces = [
        "w buffer (edge_weights, ones)",
        "degree pass (degree_rsqrt)",
        "user-side spmm (w, r gathers)",
        "item-side spmm (w via perm, r)",
    ]
    med["ones forward, sum of pieces"] = sum(med[k] for k in pieces)
    for k, v in med.items():
        print(f"{k:46s} {v:8.2f} ms")
    if args.out:
        env = environment("cpu")
        env["note"] = "shared 2-core machine, other jobs running; medians of calls in turns"
        with open(args.out, "w") as f:
            json.dump(
                {
                    **env,
                    "graph": "gowalla",
                    "dim": args.dim,
                    "threads": args.threads,
                    "rounds": args.rounds,
                    "median_ms": med,
                },
                f,
                indent=2,
            )
            f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
