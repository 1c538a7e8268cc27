"""L0-SIGN training steps: the fused all-pairs op against PyTorch Geometric on the same batches.

A step is loss + backward + Adagrad update of the whole model (batch 1024 graphs, d = 8,
hidden 32), ``STEPS`` steps on fixed batches of the training split (seed 0) of each data set:

  ours[cpu]        L0SIGN on ``ops.all_pairs_interaction`` (the compiled kernel);
  ours[reference]  the same model on the op's reference backend (explicit pair lists, index_add:
                   the plain-PyTorch composition);
  pyg              the peer: the same model written the way the official code is, on PyTorch
                   Geometric: explicit pair edges (i <= j, built outside the timed step), the
                   gate MLP and hard-concrete sample per pair in torch, the dropped pairs
                   compacted away, a ``MessagePassing(aggr="mean")`` layer whose message is
                   h(x_i * x_j) * s over both directions of each kept pair, ``global_mean_pool``
                   and the linear readout. Same weights, same loss (the peer's noise comes from
                   torch.rand instead of Philox, the only difference; at inference the two agree
                   to rounding, which the benchmark checks before timing).

Cases for L0-SIGN and SIGN (every pair kept) per data set, timed in turns
(``time_benches(interleave=True)``), at each ``--threads``. Also the seconds of one epoch over
the training split (``classification.train_epoch``, ours) and of the peer's epoch.

    python -m bench.ops.l0sign [--data twitter DBLP_v1] [--threads 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from fastgcn_denoise.data.feature_graphs import load_feature_graphs
from fastgcn_denoise.models.l0sign import L0SIGN, L0SignConfig
from fastgcn_denoise.ops.all_pairs import l0_shift, upper_pairs
from fastgcn_denoise.tasks import classification as task

from ..common import SHARED_DATA, Bench, environment, time_benches, write_json

STEPS = 4


def pyg_or_reason():
    try:
        import torch_geometric  # noqa: F401
        from torch_geometric.nn import MessagePassing  # noqa: F401
    except ImportError as exc:
        return f"torch_geometric not importable ({exc}); pip install torch_geometric"
    return None


def pyg_model(model: L0SIGN):
    """The PyG peer with a copy of ``model``'s weights (module docstring)."""
    from torch_geometric.nn import MessagePassing, global_mean_pool

    class PairConv(MessagePassing):
        def __init__(self, h1, h2):
            super().__init__(aggr="mean")
            self.h1, self.h2 = h1, h2
            self.z = None

        def forward(self, x, edge_index, s):
            return self.propagate(edge_index, x=x, s=s)

        def message(self, x_i, x_j, s):
            self.z = self.h2(torch.relu(self.h1(x_i * x_j)))
            return self.z * s.unsqueeze(-1)

    class PygL0SIGN(nn.Module):
        def __init__(self, src: L0SIGN):
            super().__init__()
            src = copy.deepcopy(src)
            self.config = src.config
            self.node_emb, self.readout = src.node_emb, src.readout
            self.conv = PairConv(src.h1, src.h2)
            if src.config.edge_prediction:
                self.edge_emb, self.g1, self.g2 = src.edge_emb, src.g1, src.g2
            c = src.config
            self.shift = l0_shift("hard_concrete", c.gate_temperature, c.gate_gamma, c.gate_zeta)

        def forward(self, data):
            c = self.config
            x, p0, p1, pair_graph, num_graphs = data
            u = self.node_emb[x]
            zeros = u.new_zeros(num_graphs)
            if c.edge_prediction:
                e = self.edge_emb[x]
                logit = self.g2(torch.relu(self.g1(e[p0] * e[p1]))).squeeze(-1)
                if self.training:
                    noise = torch.rand_like(logit).clamp(1e-7, 1 - 1e-7)
                    s = torch.sigmoid((logit + noise.log() - (-noise).log1p()) / c.gate_temperature)
                else:
                    s = torch.sigmoid(logit)
                s = (s * (c.gate_zeta - c.gate_gamma) + c.gate_gamma).clamp(0, 1)
                l0 = zeros.index_add(0, pair_graph, torch.sigmoid(logit + self.shift))
                keep = s > 0
                p0, p1, s, pair_graph = p0[keep], p1[keep], s[keep], pair_graph[keep]
            else:
                s = u.new_ones(p0.shape[0])
                l0 = zeros
            # Both directions of each kept pair (a self pair once), messages at edge_index[1].
            if c.directed:
                src, dst, weight, first = p0, p1, s, torch.ones_like(s, dtype=torch.bool)
            else:
                off = p0 != p1
                src, dst = torch.cat([p0, p1[off]]), torch.cat([p1, p0[off]])
                weight = torch.cat([s, s[off]])
                first = torch.cat(
                    [
                        torch.ones_like(s, dtype=torch.bool),
                        torch.zeros_like(s[off], dtype=torch.bool),
                    ]
                )
            out = self.conv(u, torch.stack([src, dst]), weight)
            z2 = torch.where(first, (self.conv.z * self.conv.z).sum(-1), 0.0)
            l2 = zeros.index_add(
                0, torch.cat([pair_graph, pair_graph[off]]) if not c.directed else pair_graph, z2
            )
            batch = torch.repeat_interleave(torch.arange(num_graphs, device=x.device), data.sizes)
            pooled = global_mean_pool(out, batch, size=num_graphs)
            return self.readout(pooled).squeeze(-1), l0, l2

        def loss(self, data, labels):
            c = self.config
            score, l0, l2 = self(data)
            pred = nn.functional.binary_cross_entropy_with_logits(score, labels)
            return pred + c.l0_weight * l0.mean() + c.l2_weight * l2.mean()

    return PygL0SIGN(model)


class PygBatch(tuple):
    """(x [N] feature ids, p0 [P], p1 [P] node positions of the pairs i <= j, pair_graph [P], B)."""

    sizes: torch.Tensor


def pyg_batch(batch) -> PygBatch:
    graph, i, j, _ = upper_pairs(batch.ptr)
    start = batch.ptr[graph]
    data = PygBatch((batch.nodes, start + i, start + j, graph, batch.num_graphs))
    data.sizes = batch.ptr.diff()
    return data


def stepper(loss_fn, model, batches):
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05, lr_decay=1e-5)

    def run():
        for b in batches:
            loss = loss_fn(b)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def check_same_model(ours: L0SIGN, peer, batch) -> float:
    """Max |score difference| at inference (deterministic gates) between ours and the peer."""
    ours.eval()
    peer.eval()
    with torch.no_grad():
        a, _ = ours(batch)
        b, _, _ = peer(pyg_batch(batch))
    ours.train()
    peer.train()
    diff = float((a - b).abs().max())
    if diff > 1e-4:
        raise AssertionError(f"the PyG peer is not the same model: scores differ by {diff}")
    return diff


def benches(graphs, device) -> list[Bench]:
    device = torch.device(device)
    train = graphs.split(0)["train"]
    order = np.random.default_rng(0).permutation(train.num_graphs)
    batches = [train.batch(order[s * 1024 : (s + 1) * 1024], device) for s in range(STEPS)]
    pyg_batches = [(pyg_batch(b), b.labels) for b in batches]
    why = pyg_or_reason()
    out = []
    for model_name, edge_prediction in (("l0-sign", True), ("sign", False)):
        group = f"{graphs.name} {model_name} step"
        peer = f"pyg {model_name}"
        model = L0SIGN(
            graphs.num_features, L0SignConfig(edge_prediction=edge_prediction), seed=0
        ).to(device)
        info = {
            "data": graphs.name,
            "model": model_name,
            "steps": STEPS,
            "batch": 1024,
            "pairs_per_step": int(
                np.mean([int((b.ptr.diff() * (b.ptr.diff() + 1) // 2).sum()) for b in batches])
            ),
        }
        if why is None:
            pyg = pyg_model(model)
            info["max_score_diff_vs_ours"] = check_same_model(model, pyg, batches[0])
            out.append(
                Bench(
                    peer, group, stepper(lambda d: pyg.loss(*d), pyg, pyg_batches), info=dict(info)
                )
            )
        else:
            out.append(Bench(peer, group, skipped=why))
        fused = "cpu" if device.type == "cpu" else "triton"
        for backend in (fused, "reference"):
            m = copy.deepcopy(model)
            m.backend = backend
            out.append(
                Bench(
                    f"ours[{backend}] {model_name}",
                    group,
                    stepper(lambda b, m=m: m.loss(b)["loss"], m, batches),
                    peer=peer,
                    other_peers=()
                    if backend == "reference"
                    else (f"ours[reference] {model_name}",),
                    info=dict(info),
                )
            )
    return out


def epoch_seconds(graphs, model_name: str, peer: bool) -> float:
    """Seconds of one training epoch over the split's training graphs (ours, or the peer)."""
    prepared = task.ClassificationData(graphs, graphs.split(0), {})
    model = L0SIGN(graphs.num_features, L0SignConfig(edge_prediction=model_name == "l0-sign"))
    config = SimpleNamespace(device="cpu", batch_size=1024)
    gen = torch.Generator().manual_seed(0)
    if not peer:
        optimizer = model.make_optimizer(0.05)
        t0 = time.perf_counter()
        task.train_epoch(model, optimizer, prepared, config, 1, gen)
        return time.perf_counter() - t0
    pyg = pyg_model(model)
    train = prepared.splits["train"]
    order = torch.randperm(train.num_graphs, generator=gen).numpy()
    run = stepper(
        lambda d: pyg.loss(*d), pyg, [(pyg_batch(b), b.labels) for b in train.batches(1024, order)]
    )
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.ops.l0sign", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--data", nargs="+", default=["twitter", "DBLP_v1"])
    ap.add_argument("--device", default="cpu", help="cpu (the cpu kernel) or cuda (triton)")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no epochs")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args(argv)
    cases, epochs = [], []
    env = environment(args.device)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.data:
            graphs = load_feature_graphs(SHARED_DATA / "l0sign" / f"{name}.data")
            for c in time_benches(
                benches(graphs, args.device), args.device, args.quick, interleave=True
            ):
                cases.append({"threads": threads, **c})
                if "median_ms" in c:
                    print(
                        f"threads {threads} {c['name']:24s} {graphs.name:8s} "
                        f"{c['median_ms']:9.1f} ms / {STEPS} steps"
                        + (
                            f"  {c['speedup_vs_peer']:.2f}x vs {c['peer']}"
                            if "speedup_vs_peer" in c
                            else ""
                        ),
                        flush=True,
                    )
            if not args.quick and name == "twitter" and args.device == "cpu":
                for model_name in ("l0-sign", "sign"):
                    row = {
                        "threads": threads,
                        "data": name,
                        "model": model_name,
                        "ours_seconds": epoch_seconds(graphs, model_name, peer=False),
                    }
                    if pyg_or_reason() is None:
                        row["pyg_seconds"] = epoch_seconds(graphs, model_name, peer=True)
                    print("epoch", row, flush=True)
                    epochs.append(row)
    path = write_json(
        f"bench_l0sign_{torch.device(args.device).type}",
        {
            **env,
            "suite": "python -m bench.ops.l0sign",
            "steps_per_case": STEPS,
            "machine_shared": "2-core machine shared with other sessions' jobs (timed in turns)",
            "quick": args.quick,
            "cases": cases,
            "epochs": epochs,
        },
        args.out,
    )
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
