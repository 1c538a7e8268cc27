"""The PyG-compatible layer (``fastgcn_denoise.pyg.LGConv``) against PyTorch Geometric's ``LGConv``.

One LightGCN propagation of the homogeneous (U + I)-node graph, x [N, d] -> [N, d], forward and
forward + backward (the gradient of the output's sum w.r.t. x), on the same graph and x:
  ours: pyg.LGConv   our layer through the PyG call ``conv(x, edge_index)`` (the edge_index
                     layout and the normalised adjacency cached after the first call, as in
                     training: one ``weighted_spmm`` over the (U + I)-row CSR);
  masked_spmm        ``ops.masked_spmm`` called directly on x[:U], x[U:] (target: the layer
                     costs <= 1.1x this);
  pyg.LGConv[interaction_weight]  the layer's masked path (per-interaction weights, here ones:
                     ``masked_spmm`` under the layer), against masked_spmm direct with the same
                     edge_weight: the layer's own overhead (index mapping, concatenation);
  LGConv csr         PyG's LGConv(normalize=False) on the pre-normalised adjacency as a
                     torch.sparse CSR tensor (the primary peer; targets: ours >= 4x faster for
                     forward + backward, and no slower for forward alone);
  LGConv edge_index  PyG's LGConv on edge_index, gcn_norm every call (PyG's LightGCN example).
The edge_index is coalesced (sorted by source, then target), as ``to_undirected`` returns it.
Cases are timed in turns (``time_benches(interleave=True)``). PyG cases are skipped, with the
reason, when torch_geometric is not importable.

Run: python -m bench.ops.pyg [--graphs gowalla] [--dims 64] [--threads 1 2]
     (writes bench/results/pyg_<graphs>_cpu.json with every thread count), or as the ``pyg`` op
     of the suite: python -m bench --ops pyg.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from fastgcn_denoise import ops, pyg

from ..common import Bench, build_graph, environment, time_benches, write_json

warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")
DIRECTIONS = ("fwd", "fwd+bwd")


def _pyg_or_reason():
    try:
        from torch_geometric.nn import LGConv

        return LGConv, None
    except ImportError as exc:
        return None, f"torch_geometric not importable ({exc}); pip install torch_geometric"


def normalised_adjacency(graph, device) -> torch.Tensor:
    """[N, N] torch.sparse CSR of D^-1/2 A D^-1/2 for A = [[0, R], [R^T, 0]]."""
    ei = graph.to_edge_index()
    deg = torch.cat([graph.deg_u, graph.deg_i]).to(torch.float32)
    r = deg.clamp_min(1).rsqrt()
    vals = r[ei[0]] * r[ei[1]]
    n = graph.num_users + graph.num_items
    return torch.sparse_coo_tensor(ei, vals, (n, n)).coalesce().to_sparse_csr().to(device)


def _step(fn, x, backward: bool):
    def once():
        out = fn(x)
        if backward:
            sum(t.sum() for t in (out if isinstance(out, tuple) else (out,))).backward()
            x.grad = None

    return once


def run(device, graph, dims, quick: bool) -> list[dict]:
    device = torch.device(device)
    pyg_lgconv, why = _pyg_or_reason()
    edge_index = graph.to_edge_index().to(device)
    adj = normalised_adjacency(graph, device)
    users = graph.num_users
    ones = torch.ones(graph.num_edges, device=device)  # unit interaction weights: the masked path
    ours = pyg.LGConv()
    cases = []
    for d in dims:
        gen = torch.Generator(device=device).manual_seed(0)
        x0 = torch.randn(users + graph.num_items, d, device=device, generator=gen)
        for direction in DIRECTIONS:
            backward = direction == "fwd+bwd"
            x = x0.clone().requires_grad_(backward)
            tag = f"{direction} d={d}"
            csr, by_index = f"LGConv csr {tag}", f"LGConv edge_index {tag}"
            direct = f"masked_spmm direct {tag}"
            weighted = f"masked_spmm direct[edge_weight] {tag}"
            benches = [
                Bench(
                    direct,
                    tag,
                    _step(lambda x: ops.masked_spmm(graph, x[:users], x[users:]), x, backward),
                ),
                Bench(
                    f"pyg.LGConv {tag}",
                    tag,
                    _step(lambda x: ours(x, edge_index), x, backward),
                    peer=csr,
                    other_peers=(direct, by_index),
                ),
                Bench(
                    weighted,
                    tag,
                    _step(
                        lambda x: ops.masked_spmm(graph, x[:users], x[users:], edge_weight=ones),
                        x,
                        backward,
                    ),
                ),
                Bench(
                    f"pyg.LGConv[interaction_weight] {tag}",
                    tag,
                    _step(lambda x: ours(x, edge_index, interaction_weight=ones), x, backward),
                    peer=weighted,
                ),
            ]
            if pyg_lgconv is None:
                benches += [Bench(csr, tag, skipped=why), Bench(by_index, tag, skipped=why)]
            else:
                plain, normed = pyg_lgconv(normalize=False), pyg_lgconv()
                benches += [
                    Bench(csr, tag, _step(lambda x: plain(x, adj), x, backward)),
                    Bench(
                        by_index,
                        tag,
                        _step(lambda x: normed(x, edge_index), x, backward),
                        slow=True,
                    ),
                ]
            ours(x0, edge_index)  # the layout is parsed once, before timing (cached in training)
            cases += time_benches(benches, device, quick, interleave=True)
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ops.pyg", description=__doc__.split("\n")[0])
    ap.add_argument("--graphs", nargs="+", default=["gowalla"])
    ap.add_argument("--dims", type=int, nargs="+", default=[64])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args(argv)
    env = environment("cpu")
    env["note"] = "shared 2-core machine: other jobs were running; ratios timed in turns"
    graphs, cases = [], []
    for spec in args.graphs:
        graph, info = build_graph(spec, "cpu")
        graphs.append(info)
        if graph is None:
            print(f"skipping {spec}: {info['skipped']}")
            continue
        for threads in args.threads:
            torch.set_num_threads(threads)
            for c in run("cpu", graph, args.dims, args.quick):
                cases.append({"graph": spec, "threads": threads, **c})
                if "median_ms" in c:
                    ratios = ", ".join(f"{k} {v:.2f}x" for k, v in c.get("speedup_vs", {}).items())
                    print(
                        f"{spec} t={threads} {c['name']}: {c['median_ms']:.1f} ms"
                        + (f" (vs {ratios})" if ratios else ""),
                        flush=True,
                    )
    env["device"] = env["device"].split(" (")[0] + f" ({torch.get_num_threads()} threads last)"
    path = write_json(
        f"pyg_{'_'.join(args.graphs)}_cpu",
        {**env, "graphs": graphs, "threads": args.threads, "dims": args.dims, "cases": cases},
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
