"""What DGR and the contrastive backbones cost per training step, against LightGCN's step.

A step is loss + backward + Adam (``train.build_optimizer``), batch 2048, 3 layers, on fixed BPR
batches. Cases, all timed in turns with the LightGCN step (``time_benches(interleave=True)``):
  LightGCN step                  the peer (no plug-in);
  LightGCN+GMP step              GMP on every layer (α = 0.1, 1.1, 0.1, so no layer is skipped),
                                 with the paper's self-loops; target: at most 10% over the peer
                                 (``overhead_vs_peer`` <= 0.10);
  LightGCN+GMP step, no loops    the same without self-loops (the official code's graph);
  LightGCN+DGR step              GMP + the LEC loss (K1 = K2 = 10);
  SimGCL / XSimGCL (+DGR) step   the backbones (three passes / one pass per step);
  GMP alone, 3 layers fwd+bwd    the correction by itself on random layer outputs, and
  propagation alone, fwd+bwd     3 ``masked_spmm`` layers: what a fused epilogue could save is
                                 at most the first.

Run: python -m bench --ops dgr_step [--graphs gowalla] [--dims 64] [--threads 2]
"""

from __future__ import annotations

import torch

from fastgcn_denoise.denoisers import DGR, DGRConfig
from fastgcn_denoise.models import LightGCN, SimGCL, XSimGCL
from fastgcn_denoise.ops import masked_spmm

from ..common import Bench, add_ratios, time_benches
from .sgcn_step import BATCH, LAYERS, STEPS, stepper  # the same training step

DEFAULT = False  # not in the default suite: python -m bench --ops dgr_step
ALPHA = (0.1, 1.1, 0.1)


def layer_parts(graph, d, device, plugin):
    """(GMP alone, propagation alone): 3 layers forward + backward each."""
    gen = torch.Generator().manual_seed(1)
    xs = [
        (
            torch.randn(graph.num_users, d, generator=gen).to(device).requires_grad_(),
            torch.randn(graph.num_items, d, generator=gen).to(device).requires_grad_(),
        )
        for _ in range(LAYERS)
    ]

    def gmp():
        total = 0
        for k, (x_u, x_i) in enumerate(xs):
            y_u, y_i = plugin.after_layer(k, graph, x_u, x_i)
            total = total + y_u.sum() + y_i.sum()
        total.backward()

    def propagation():
        x_u, x_i = xs[0]
        for _ in range(LAYERS):
            x_u, x_i = masked_spmm(graph, x_u, x_i, self_loop=True)
        (x_u.sum() + x_i.sum()).backward()

    return gmp, propagation


def run(device, graph, dims, quick: bool) -> list[dict]:
    device = torch.device(device)
    cases = []
    gmp = DGRConfig(dgr_alpha=ALPHA, dgr_lec=False)
    for d in dims:
        tag = f"d={d}"
        size = dict(num_users=graph.num_users, num_items=graph.num_items, dim=d, num_layers=LAYERS)

        def model(cls, config=None):
            torch.manual_seed(0)
            m = cls(**size)
            if config is not None:
                m.add_plugin(DGR(config, graph, LAYERS).attach(m))
            return m.to(device)

        peer = f"LightGCN step {tag}"
        info = {"steps_per_call": STEPS, "batch": BATCH, "layers": LAYERS, "gmp_alpha": ALPHA}
        dgr_full = DGRConfig(dgr_alpha=ALPHA)
        no_loops = DGRConfig(dgr_alpha=ALPHA, dgr_lec=False, dgr_self_loops=False)
        steps = [
            (peer, model(LightGCN), None),
            (f"LightGCN+GMP step {tag}", model(LightGCN, gmp), peer),
            (f"LightGCN+GMP step, no loops {tag}", model(LightGCN, no_loops), peer),
            (f"LightGCN+DGR step {tag}", model(LightGCN, dgr_full), peer),
            (f"SimGCL step {tag}", model(SimGCL), peer),
            (f"SimGCL+DGR step {tag}", model(SimGCL, dgr_full), peer),
            (f"XSimGCL step {tag}", model(XSimGCL), peer),
            (f"XSimGCL+DGR step {tag}", model(XSimGCL, dgr_full), peer),
        ]
        gmp_fn, prop_fn = layer_parts(graph, d, device, DGR(gmp, graph, LAYERS).to(device))
        benches = [Bench(name, tag, stepper(m, graph), peer=p, info=info) for name, m, p in steps]
        benches += [
            Bench(
                f"GMP alone, 3 layers fwd+bwd {tag}",
                tag,
                gmp_fn,
                peer=f"propagation alone, fwd+bwd {tag}",
            ),
            Bench(f"propagation alone, fwd+bwd {tag}", tag, prop_fn),
        ]
        timed = time_benches(benches, device, quick, interleave=True)
        for c in timed[: len(steps)]:  # per step, not per call
            for key in ("median_ms", "min_ms", "max_ms"):
                if key in c:
                    c[key] /= STEPS
        cases += timed
    cases = add_ratios(cases)
    for c in cases:
        if "speedup_vs_peer" in c:
            c["overhead_vs_peer"] = 1 / c["speedup_vs_peer"] - 1
    return cases
