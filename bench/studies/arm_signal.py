"""How much does the ARM gradient know about each interaction? Signal vs noise per mask logit.

Study: is the ARM gradient's per-logit signal above its noise, i.e. can SGCN's masks learn which
interactions are noisy? Answer: bench/results/arm_signal_synthetic.json.

SGCN's masks learn from (f_pos - f_neg)(u - 1/2): one scalar loss difference per step shared by
all K x E logits. This measures, on a trained LightGCN and the given data:
  signal  the exact gradient of the batch BPR loss w.r.t. each logit with the mask relaxed to
          its expectation (``expect`` mode at keep probability ``--keep``), accumulated over one
          epoch of batches: what a perfect estimator would follow; reported as its mean |value|
          per step and, where the noise is known (built-in data), its ROC AUC against it;
  noise   the ARM estimate's per-logit standard deviation per step, |f_pos - f_neg| * std(u - 1/2)
          (std(u - 1/2) = 1/sqrt(12)), from ``--steps`` antithetic pairs;
and the number of steps ARM would need for a signal-to-noise ratio of 3 per logit.

    python -m bench.studies.arm_signal [--data DIR] [--epochs 60] [--keep 0.9] [--out bench/results]
"""

from __future__ import annotations

import argparse
import math

import torch

from fastgcn_denoise.data import sample_bpr
from fastgcn_denoise.denoisers.sgcn import SLightGCNConfig
from fastgcn_denoise.models import Batch
from fastgcn_denoise.pipelines.denoise import roc_auc
from fastgcn_denoise.pipelines.train import make_config, restore_run, train

from ..common import environment, write_json

BATCH = 2048


def measure(net, graph, noise, keep: float, steps: int, seed: int = 1) -> dict:
    layers, e = net.num_layers, graph.num_edges
    phi = torch.full((layers, e), math.log(keep / (1 - keep)), requires_grad=True)
    users, pos, neg = sample_bpr(graph, e, torch.Generator().manual_seed(seed))
    signal = torch.zeros_like(phi)
    batches = 0
    for s in range(0, e, BATCH):
        sl = slice(s, s + BATCH)
        spec = [{"logits": phi[k], "mode": "expect"} for k in range(layers)]
        bpr = net.loss(graph, Batch(users[sl], pos[sl], neg[sl]), spec)["bpr"]
        signal += torch.autograd.grad(bpr, phi)[0]
        batches += 1
    diffs = []
    with torch.no_grad():
        for s in range(steps):
            sl = slice(s * BATCH, (s + 1) * BATCH)
            f = [
                net.loss(
                    graph,
                    Batch(users[sl], pos[sl], neg[sl]),
                    [
                        {"logits": phi[k].detach(), "mode": mode, "seed": s, "offset": k * e}
                        for k in range(layers)
                    ],
                )["bpr"].item()
                for mode in ("arm_pos", "arm_neg")
            ]
            diffs.append(abs(f[0] - f[1]))
    signal_per_step = float(signal.abs().mean() / batches)
    noise_per_step = float(torch.tensor(diffs).mean()) / math.sqrt(12)
    out = {
        "keep": keep,
        "layers": layers,
        "edges": e,
        "batches_per_epoch": batches,
        "signal_mean_abs_per_step": signal_per_step,
        "arm_noise_std_per_step": noise_per_step,
        "snr_per_step": signal_per_step / noise_per_step,
        "steps_for_snr_3": (3 * noise_per_step / signal_per_step) ** 2,
    }
    if noise is not None:
        out["exact_gradient_roc_auc_per_layer"] = [
            roc_auc(signal[k].numpy(), noise) for k in range(layers)
        ]
        out["exact_gradient_roc_auc"] = roc_auc(signal.sum(0).numpy(), noise)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.studies.arm_signal", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--data", default=None, help="data source (default: the built-in data)")
    ap.add_argument("--epochs", type=int, default=60, help="LightGCN training epochs first")
    ap.add_argument("--keep", type=float, default=SLightGCNConfig.init_keep)
    ap.add_argument("--steps", type=int, default=20, help="antithetic pairs for the ARM noise")
    ap.add_argument("--runs", default="runs/arm_signal")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    config = make_config(
        model="lightgcn",
        data=args.data,
        epochs=args.epochs,
        out=args.runs,
        eval_every=max(1, args.epochs // 3),
        progress=False,
        verbose=False,
        overwrite=True,
    )
    result = train(config)
    _, _, prep, net = restore_run(f"{args.runs}/checkpoint.pt", weights="last")
    stats = measure(net, prep.train, prep.data.noise_per_edge(prep.train), args.keep, args.steps)
    stats["lightgcn_test"] = result["test"]
    for key, value in stats.items():
        print(f"{key}: {value}")
    name = args.data.rstrip("/").split("/")[-1] if args.data else "synthetic"
    print(
        "written to",
        write_json(
            f"arm_signal_{name}",
            {"environment": environment("cpu"), "epochs": args.epochs, **stats},
            args.out,
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
