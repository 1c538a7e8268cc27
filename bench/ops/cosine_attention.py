"""ops.cosine_attention (GRCN's refining step) against the PyTorch composition and PyG.

    python -m bench.ops.cosine_attention [--graphs tiktok synth-1e6] [--dims 64] [--threads 1 2]
                                           [--quick] [--out bench/results]

The computation, both directions: cosine of every edge's endpoint keys, softmax over each user's
and each item's edges, the weighted aggregation of the values into both sides. Peers on the same
inputs: ``composition`` (``ops.cosine_attention.composition``: F.normalize, [E, d] gathers,
scatter-max / index_add softmax, index_add aggregation; autograd for the backward) and, when
torch_geometric imports, a ``MessagePassing`` layer per direction with ``torch_geometric.utils.
softmax``. Forward, and forward + backward of sum(outputs * fixed weights) into keys and values.
Ours and the peers are timed in turns (``time_benches(..., interleave=True)``) at each thread
count. Writes ``<out>/cosine_attention_<device>.json`` (+ .png).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fastgcn_denoise import ops
from fastgcn_denoise.ops.cosine_attention import composition

from ..common import (
    Bench,
    build_graph,
    environment,
    fused_backends,
    plot,
    time_benches,
    write_json,
)

TIKTOK = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiktok"


def _pyg_layer():
    """A PyG MessagePassing version of one direction, or (None, why) when PyG is missing."""
    try:
        from torch_geometric.nn import MessagePassing
        from torch_geometric.utils import softmax
    except ImportError as exc:
        return None, f"torch_geometric not importable ({exc}); pip install torch_geometric"

    class CosineAttention(MessagePassing):
        """Messages v_j weighted by softmax over the target's in-edges of cos(k_i, k_j)."""

        def __init__(self):
            super().__init__(aggr="add")

        def forward(self, edge_index, k_src, k_dst, v_src, size):
            return self.propagate(edge_index, k=(k_src, k_dst), v=(v_src, None), size=size)

        def message(self, k_i, k_j, v_j, index, ptr, size_i):
            alpha = softmax((k_i * k_j).sum(-1), index, ptr, size_i)
            return alpha.unsqueeze(-1) * v_j

    return CosineAttention(), None


def _inputs(graph, d, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [
        (graph.num_users, d),
        (graph.num_items, d),
        (graph.num_users, d),
        (graph.num_items, d),
    ]
    leaves = [torch.randn(s, generator=gen).to(device).requires_grad_() for s in shapes]
    weights = [torch.randn(s, generator=gen).to(device) for s in shapes[:2]]  # for y_user, y_item
    return leaves, weights


def benches(device, graph, dims, quick) -> list[Bench]:
    users, items = graph.edges()
    layer, pyg_missing = _pyg_layer()
    to_item = torch.stack([users, items])  # source user -> target item
    to_user = torch.stack([items, users])  # source item -> target user
    out = []
    for d in dims:
        leaves, (w_user, w_item) = _inputs(graph, d, device)
        k_u, k_i, v_u, v_i = leaves

        def ours(backend):
            return lambda: ops.cosine_attention(graph, k_u, k_i, v_u, v_i, backend=backend)[:2]

        def comp():
            return composition(graph, k_u, k_i, v_u, v_i)[:2]

        def pyg():
            ku = torch.nn.functional.normalize(k_u, dim=1)
            ki = torch.nn.functional.normalize(k_i, dim=1)
            y_u = layer(to_user, ki, ku, v_i, (graph.num_items, graph.num_users))
            y_i = layer(to_item, ku, ki, v_u, (graph.num_users, graph.num_items))
            return y_u, y_i

        def fwd(fn):
            def run():
                with torch.no_grad():
                    fn()

            return run

        def fwd_bwd(fn):
            def run():
                y_u, y_i = fn()
                ((y_u * w_user).sum() + (y_i * w_item).sum()).backward()
                for t in leaves:
                    t.grad = None

            return run

        for mode, wrap in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
            peer = f"composition {mode} d={d}"
            pyg_name = f"PyG MessagePassing {mode} d={d}"
            for backend in fused_backends(device):
                out.append(
                    Bench(
                        f"fused[{backend}] {mode} d={d}",
                        f"cosine_attention {mode} d={d}",
                        wrap(ours(backend)),
                        peer=peer,
                        other_peers=(pyg_name,),
                    )
                )
            out.append(Bench(peer, f"cosine_attention {mode} d={d}", wrap(comp)))
            out.append(
                Bench(
                    pyg_name,
                    f"cosine_attention {mode} d={d}",
                    None if layer is None else wrap(pyg),
                    skipped=pyg_missing,
                )
            )
    return out


def _graph(spec: str, device):
    if spec == "tiktok":
        from fastgcn_denoise.data import load_lightgcn

        g = load_lightgcn(TIKTOK).train_graph().to(device)
        return g, {
            "name": spec,
            "source": str(TIKTOK / "train.txt"),
            "users": g.num_users,
            "items": g.num_items,
            "interactions": g.num_edges,
        }
    return build_graph(spec, device)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.ops.cosine_attention", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--graphs", nargs="+", default=["tiktok", "synth-1e6"])
    ap.add_argument("--dims", type=int, nargs="+", default=[64])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    cases, graphs = [], []
    for spec in args.graphs:
        graph, info = _graph(spec, args.device)
        graphs.append(info)
        if graph is None:
            continue
        for threads in args.threads:
            torch.set_num_threads(threads)
            for c in time_benches(
                benches(args.device, graph, args.dims, args.quick),
                args.device,
                args.quick,
                interleave=True,
            ):
                cases.append(dict(c, graph=spec, threads=threads))
                if "median_ms" in c:
                    ratio = f"  {c['speedup_vs']}" if "speedup_vs" in c else ""
                    print(
                        f"{spec:9s} t={threads} {c['name']:36s} {c['median_ms']:9.2f} ms{ratio}",
                        flush=True,
                    )
    suffix = torch.device(args.device).type
    path = write_json(
        f"cosine_attention_{suffix}",
        {
            "environment": environment(args.device),
            "machine_shared": True,
            "graphs": graphs,
            "threads": args.threads,
            "cases": cases,
        },
        args.out,
    )
    plot(
        [dict(c, graph=f"{c['graph']} t={c['threads']}") for c in cases],
        path.with_suffix(".png"),
        "cosine_attention vs composition / PyG",
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
