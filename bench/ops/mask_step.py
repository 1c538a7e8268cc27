"""One training step of LightGCN with the learned mask (pathwise estimator + holdout) against one
of plain LightGCN, on the same backend, graph and batches.

A step is loss + backward + Adam update (``train.build_optimizer``), batch 2048, 3 layers, d as
given, as ``sgcn_step``. Cases, timed in turns (``time_benches(interleave=True)``):
  LightGCN step                  the peer;
  holdout step                   LightGCN with target-edge holdout (``--holdout``);
  mask step (gumbel, score)      ``--mask`` defaults: straight-through gates, score head on the
                                 last step's embeddings, holdout, keep target 0.85 (the
                                 issue's target: at most 1.3x LightGCN's step,
                                 ``speedup_vs_peer`` >= 0.77);
  mask step (gumbel, free)       free per-edge logits instead of the head;
  mask step (hard concrete)      the hard concrete gate, score head.
``fused`` in each case says whether the gates and the holdout ran inside ``masked_spmm`` (the
fused modes) or as a separate gate op times the edge weights.

Run: python -m bench --ops mask_step [--device cpu|cuda] [--graphs gowalla synth-1e5] [--threads N]
"""

from __future__ import annotations

import torch

from fastgcn_denoise.denoisers.masks import _FUSED, EdgeMask, Holdout
from fastgcn_denoise.models import LightGCN

from ..common import Bench, add_ratios, time_benches
from .sgcn_step import BATCH, LAYERS, STEPS, stepper

VARIANTS = {  # name -> EdgeMask options (None: the holdout plug-in alone)
    "holdout step": None,
    "mask step (gumbel, score)": {},
    "mask step (gumbel, free)": {"head": "free"},
    "mask step (hard concrete)": {"estimator": "hard_concrete", "temperature": 2 / 3},
}


def _model(graph, d, device, options):
    torch.manual_seed(0)
    model = LightGCN(graph.num_users, graph.num_items, dim=d, num_layers=LAYERS)
    if options is None:
        model.add_plugin(Holdout())
    elif options is not False:
        model.add_plugin(EdgeMask(model, graph.num_edges, warmup_epochs=0.0, **options))
    return model.to(device)


def run(device, graph, dims, quick: bool) -> list[dict]:
    device = torch.device(device)
    cases = []
    for d in dims:
        tag = f"d={d}"
        peer = f"LightGCN step {tag}"
        info = {"steps_per_call": STEPS, "batch": BATCH, "layers": LAYERS, "fused": _FUSED}
        benches = [Bench(peer, tag, stepper(_model(graph, d, device, False), graph), info=info)]
        benches += [
            Bench(
                f"{name} {tag}",
                tag,
                stepper(_model(graph, d, device, opts), graph),
                peer=peer,
                info=info,
            )
            for name, opts in VARIANTS.items()
        ]
        step_cases = time_benches(benches, device, quick, interleave=True)
        for c in step_cases:  # per step, not per call
            for key in ("median_ms", "min_ms", "max_ms"):
                if key in c:
                    c[key] /= STEPS
        cases += step_cases
    return add_ratios(cases)
