"""One training step of S-LightGCN against one of LightGCN, on the same backend, graph and batch.

A step is loss + backward + Adam update (``train.build_optimizer``) with batch 2048, 3 layers, d as
given. Cases:
  LightGCN step                 the peer;
  S-LightGCN step               both ARM passes (the dual kernel at layer 1, the ``arm_neg`` pass
                                without autograd), the ARM logit gradient, the L0 term, and the
                                nuclear-norm gradient reused from the last refresh;
  nuclear-norm refresh          what SGCN does every ``svd_every`` steps: the warm-started
                                truncated SVD (k = 128, depth ``svd_iters``) and its backward, for
                                each of the 3 layers;
  S-LightGCN step, amortised    derived: step + refresh / svd_every (the SGCN defaults), the
                                number the target is about: at most 1.6x LightGCN's step
                                (``speedup_vs_peer`` >= 0.625).

The cases are timed in turns, one call of each per round (``time_benches(interleave=True)``), so
the ratio compares steps run under the same machine state.

Run: python -m bench --ops sgcn_step [--device cpu|cuda] [--graphs gowalla]
"""

from __future__ import annotations

import torch

from fastgcn_denoise.data import sample_bpr
from fastgcn_denoise.denoisers import SLightGCN
from fastgcn_denoise.denoisers.sgcn import SLightGCNConfig
from fastgcn_denoise.models import Batch, LightGCN
from fastgcn_denoise.ops import NuclearNormState, nuclear_norm
from fastgcn_denoise.pipelines.train import build_optimizer, make_config

from ..common import Bench, add_ratios, time_benches

BATCH, LAYERS, STEPS = 2048, 3, 4
DEFAULTS = make_config("s-lightgcn")  # the loop's defaults (learning rate)
SGCN_DEFAULTS = SLightGCNConfig()  # the SGCN defaults (SVD rank, depth, refresh)


def stepper(model, graph):
    """A callable running STEPS training steps on fixed BPR batches."""
    gen = torch.Generator().manual_seed(0)
    users, pos, neg = sample_bpr(graph, BATCH * STEPS, gen)
    optimizer = build_optimizer(model, DEFAULTS)  # the optimiser training uses

    def run():
        for s in range(STEPS):
            sl = slice(s * BATCH, (s + 1) * BATCH)
            total = model.loss(graph, Batch(users[sl], pos[sl], neg[sl]))["loss"]
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()

    return run


def refresher(model, graph):
    """One nuclear-norm refresh of every layer, warm-started as in training."""
    states = [NuclearNormState() for _ in range(LAYERS)]

    def run():
        keep = model.keep_probabilities()
        for k in range(LAYERS):
            w = keep[k].clone().requires_grad_()
            nuclear_norm(graph, w, model.svd_rank, states[k], n_iter=model.svd_iters).backward()

    return run


def run(device, graph, dims, quick: bool) -> list[dict]:
    device = torch.device(device)
    cases = []
    for d in dims:
        tag = f"d={d}"
        base = {
            "num_users": graph.num_users,
            "num_items": graph.num_items,
            "dim": d,
            "num_layers": LAYERS,
        }
        # svd_every is huge here: the step reuses the nuclear gradient; the refresh is timed apart.
        sgcn = SLightGCN(
            **base,
            num_edges=graph.num_edges,
            svd_rank=SGCN_DEFAULTS.svd_rank,
            svd_iters=SGCN_DEFAULTS.svd_iters,
            svd_every=10**9,
        ).to(device)
        torch.manual_seed(0)
        peer = f"LightGCN step {tag}"
        info = {"steps_per_call": STEPS, "batch": BATCH, "layers": LAYERS}
        step_cases = time_benches(
            [
                Bench(peer, tag, stepper(LightGCN(**base).to(device), graph), info=info),
                Bench(f"S-LightGCN step {tag}", tag, stepper(sgcn, graph), peer=peer, info=info),
                Bench(
                    f"nuclear-norm refresh {tag}",
                    tag,
                    refresher(sgcn, graph),
                    slow=True,
                    info={"svd_rank": sgcn.svd_rank, "svd_iters": sgcn.svd_iters},
                ),
            ],
            device,
            quick,
            interleave=True,
        )
        for c in step_cases[:2]:  # per step, not per call
            for key in ("median_ms", "min_ms", "max_ms"):
                c[key] /= STEPS
        lightgcn, step, refresh = step_cases
        every = SGCN_DEFAULTS.svd_every
        amortised = {
            key: step[key] + refresh[key] / every for key in ("median_ms", "min_ms", "max_ms")
        }
        cases += step_cases + [
            {
                "name": f"S-LightGCN step amortised {tag}",
                "group": tag,
                "peer": peer,
                "derived": f"step + refresh / {every}",
                "svd_every": every,
                **amortised,
            }
        ]
    return add_ratios(cases)
