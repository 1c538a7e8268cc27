"""Masked renormalised propagation (one layer, both directions) against its peers, side by side.

Peers, on the same graph and inputs in the same run:
  composition  what a user writes in plain PyTorch: torch.rand mask, index_add_ degrees, build the
               two normalised CSR blocks, two torch.sparse.mm;
  bare         two torch.sparse.mm on a pre-normalised CSR (the floor without masking);
  scipy        the same two products with scipy.sparse CSR (forward only);
  cupy         cuSPARSE through cupyx.scipy.sparse (GPU, when cupy is installed).
Each for the forward and for forward + backward (gradients w.r.t. both embedding tables).

Bytes model of one fused layer, stated so GB/s can be compared with the copy ceiling: every edge
reads its column index (8 B), its weight (4 B), the other side's r (4 B) and one gathered row
(4d B, no reuse assumed), each row reads rowptr (8 B) and writes its output row (4d B), the item
side also reads perm (8 B per edge), and the mask pass reads phi and writes w (8 B per edge).

Run: python -m bench.bench_masked_spmm [--device cpu|cuda] [--dims 64] [--out bench/results]
"""
from __future__ import annotations

import argparse

import torch

from fastgcn_denoise import ops

from .common import (add_ratios, case, environment, gowalla_train, measure, plot, print_table,
                     write_json)


def layer_bytes(graph, d: int, itemsize: int = 4) -> int:
    e, rows = graph.num_edges, graph.num_users + graph.num_items
    per_edge = 2 * (8 + itemsize + itemsize + d * itemsize) + 8 + 2 * itemsize
    return e * per_edge + rows * (8 + d * itemsize)


def copy_bandwidth(device, nbytes: int = 512 * 2**20) -> float:
    """Measured device copy bandwidth in GB/s (bytes read + bytes written)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = measure(lambda: dst.copy_(src), device, repeat=9)
    return 2 * nbytes / (t["median_ms"] * 1e-3) / 1e9


def _normalised_blocks(graph, z):
    """(A [U, I], A^T [I, U]) as torch CSR tensors with D^-1/2 (R ⊙ z) D^-1/2 values."""
    users, items = graph.edges()
    du = torch.zeros(graph.num_users, device=z.device).index_add_(0, users, z)
    di = torch.zeros(graph.num_items, device=z.device).index_add_(0, items, z)
    ru = torch.where(du > 0, du.rsqrt(), torch.zeros_like(du))
    ri = torch.where(di > 0, di.rsqrt(), torch.zeros_like(di))
    vals = ru[users] * z * ri[items]
    a = torch.sparse_csr_tensor(graph.rowptr_u, graph.col_item, vals,
                                (graph.num_users, graph.num_items))
    at = torch.sparse_csr_tensor(graph.rowptr_i, graph.col_user, vals[graph.perm],
                                 (graph.num_items, graph.num_users))
    return a, at


def run(device="cpu", dims=(64,), repeat=7, graph=None) -> list[dict]:
    device = torch.device(device)
    graph = graph if graph is not None else gowalla_train(device)
    if graph is None:
        return []
    backends = [b for b, why in ops.availability(device).items() if why is None and b != "reference"]
    cases = []
    for d in dims:
        gen = torch.Generator(device=device).manual_seed(0)
        x_u = torch.randn(graph.num_users, d, device=device, generator=gen)
        x_i = torch.randn(graph.num_items, d, device=device, generator=gen)
        phi = torch.randn(graph.num_edges, device=device, generator=gen)
        sig = torch.sigmoid(phi)

        def composition(xu, xi):
            z = (torch.rand(graph.num_edges, device=device) < sig).float()
            a, at = _normalised_blocks(graph, z)
            return torch.sparse.mm(a, xi), torch.sparse.mm(at, xu)

        a0, at0 = _normalised_blocks(graph, torch.ones(graph.num_edges, device=device))

        def bare(xu, xi):
            return torch.sparse.mm(a0, xi), torch.sparse.mm(at0, xu)

        def fused(name):
            return lambda xu, xi: ops.masked_spmm(graph, xu, xi, phi, mode="bernoulli", seed=1,
                                                  backend=name)

        peers = {"composition": composition, "bare torch.sparse.mm": bare}
        if device.type == "cpu":
            import scipy.sparse as sp
            a_sp = sp.csr_matrix((a0.values().numpy(), a0.col_indices().numpy(),
                                  a0.crow_indices().numpy()), shape=a0.shape)
            at_sp = a_sp.T.tocsr()
            xu_np, xi_np = x_u.numpy(), x_i.numpy()
            scipy_fwd = lambda: (a_sp @ xi_np, at_sp @ xu_np)  # noqa: E731
        else:
            scipy_fwd = None
        nbytes = layer_bytes(graph, d)
        tag = f"d={d}"
        for direction in ("fwd", "fwd+bwd"):
            xu = x_u.clone().requires_grad_(direction != "fwd")
            xi = x_i.clone().requires_grad_(direction != "fwd")

            def timed(fn):
                def once():
                    yu, yi = fn(xu, xi)
                    if direction != "fwd":
                        (yu.sum() + yi.sum()).backward()
                        xu.grad = xi.grad = None
                return measure(once, device, repeat=repeat)

            for name, fn in peers.items():
                cases.append(case(f"{name} {direction} {tag}", timed(fn)))
            if scipy_fwd is not None and direction == "fwd":
                cases.append(case(f"scipy csr {direction} {tag}", measure(scipy_fwd, device, repeat=repeat)))
            bare_ms = cases[-1 - (scipy_fwd is not None and direction == "fwd")]["median_ms"]
            for b in backends:
                t = timed(fused(b))
                cases.append(case(f"fused[{b}] {direction} {tag}", t, peer=f"composition {direction} {tag}",
                                  bytes_moved=nbytes if direction == "fwd" else None,
                                  time_vs_bare=t["median_ms"] / bare_ms))
        # Dual ARM pass (arm_pos + arm_neg from one set of uniforms) vs two single passes.
        for b in backends:
            dual = measure(lambda: ops.masked_spmm_dual(graph, x_u, x_i, phi, seed=1, backend=b), device,
                           repeat=repeat)
            two = measure(lambda: (ops.masked_spmm(graph, x_u, x_i, phi, "arm_pos", 1, backend=b),
                                   ops.masked_spmm(graph, x_u, x_i, phi, "arm_neg", 1, backend=b)),
                          device, repeat=repeat)
            cases.append(case(f"two single ARM passes[{b}] fwd {tag}", two))
            cases.append(case(f"dual ARM pass[{b}] fwd {tag}", dual, peer=f"two single ARM passes[{b}] fwd {tag}"))
    return add_ratios(cases)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dims", type=int, nargs="+", default=[64])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads (CPU)")
    parser.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = run(args.device, args.dims, args.repeat)
    if not cases:
        return 1
    env = environment(args.device)
    env["copy_bandwidth_gbps"] = copy_bandwidth(args.device)
    for c in cases:
        if "gbps" in c:
            c["fraction_of_copy_bandwidth"] = c["gbps"] / env["copy_bandwidth_gbps"]
    name = f"masked_spmm_{torch.device(args.device).type}"
    path = write_json(name, {**env, "graph": "gowalla train", "cases": cases}, args.out)
    plot(cases, path.with_suffix(".png"), f"masked propagation, Gowalla, {env['device']}")
    print_table(cases, f"{name}: {env['device']}, copy {env['copy_bandwidth_gbps']:.1f} GB/s")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
