"""The closure SpGEMM (``ops.spgemm`` / ``ops.power_sum``) against scipy and torch.sparse.

The product LightGNN's intermediate model needs: the 2-hop closure C = I + A + A^2 of the binary
bipartite adjacency A over U + I nodes, by Horner's rule C = A (A + I) + I (two products, the
identity added inside the kernel). Cases, timed in turns:
  ours[cpu] closure          ops.power_sum(graph, 2) (row-parallel Gustavson, OpenMP)
  scipy closure              the same two products with scipy.sparse CSR (single-threaded SMMP)
  torch.sparse.mm closure    the same with torch.sparse.mm on COO tensors (the reference backend)
All produce the same sorted CSR of path counts (checked once before timing).

Run: python -m bench.ops.spgemm [--threads 2] [--data ../shared/data/yelp_lightgnn]
     in the suite: python -m bench --ops spgemm
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from fastgcn_denoise import ops
from fastgcn_denoise.ops.spgemm import bipartite_adjacency

from ..common import SHARED_DATA, Bench, environment, fused_backends, time_benches, write_json

ORDER = 2


def _scipy_closure(graph):
    import scipy.sparse as sp

    adj = bipartite_adjacency(graph)
    a = sp.csr_matrix(
        (adj.val.numpy(), adj.col.numpy(), adj.rowptr.numpy()), shape=(adj.num_rows, adj.num_cols)
    )
    eye = sp.identity(adj.num_rows, format="csr", dtype=np.float64)

    def run():
        c = eye
        for _ in range(ORDER):
            c = a @ c + eye
        c.sort_indices()
        return c

    return run


def benches(device, graph, dims, quick: bool) -> list[Bench]:
    device = torch.device(device)
    graph = graph.to(device)
    tag = f"order={ORDER}"
    peer = f"scipy closure {tag}"
    out = []
    ours = {b: (lambda b=b: ops.power_sum(graph, ORDER, backend=b)) for b in fused_backends(device)}
    nnz = None
    for fn in ours.values():
        nnz = fn().nnz
    info = {
        "closure_nnz": nnz,
        "adjacency_nnz": 2 * graph.num_edges,
        "nodes": graph.num_users + graph.num_items,
    }
    if device.type == "cpu":
        scipy_run = _scipy_closure(graph.to("cpu"))
        check = scipy_run()
        ref = ops.power_sum(graph, ORDER, backend=next(iter(ours)) if ours else "reference")
        assert (
            check.nnz == ref.nnz
            and np.array_equal(check.indices, ref.col.numpy())
            and np.allclose(check.data, ref.val.numpy())
        ), "scipy and ours disagree on the closure"
        out.append(Bench(peer, tag, scipy_run, info=info))
    else:
        out.append(Bench(peer, tag, skipped="scipy runs on CPU only"))
    out.append(
        Bench(
            f"torch.sparse.mm closure {tag}",
            tag,
            lambda: ops.power_sum(graph, ORDER, backend="reference"),
            info=info,
        )
    )
    for b, fn in ours.items():
        out.append(
            Bench(
                f"ours[{b}] closure {tag}",
                tag,
                fn,
                peer=peer,
                other_peers=(f"torch.sparse.mm closure {tag}",),
                info=info,
            )
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.ops.spgemm", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads (CPU)")
    ap.add_argument("--data", default=str(SHARED_DATA / "yelp_lightgnn"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from fastgcn_denoise.data import load_lightgcn

    graph = load_lightgcn(args.data).train_graph()
    cases = time_benches(
        benches("cpu", graph, None, args.quick), "cpu", args.quick, interleave=True
    )
    env = environment("cpu")
    env["shared_machine"] = "2-core machine shared with other sessions; ratios timed in turns"
    threads = torch.get_num_threads()
    path = write_json(
        f"bench_spgemm_cpu_t{threads}",
        {
            **env,
            "suite": "python -m bench.ops.spgemm",
            "data": args.data,
            "threads": threads,
            "cases": cases,
        },
        args.out,
    )
    for c in cases:
        ratio = f"  {c['speedup_vs_peer']:.2f}x vs scipy" if "speedup_vs_peer" in c else ""
        print(f"{c['name']:40s} {c.get('median_ms', float('nan')):9.1f} ms{ratio}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
