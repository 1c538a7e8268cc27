"""ARM / DisARM logit gradient (``ops.arm_grad``) against plain PyTorch with stored uniforms.

Logits [3, E] (one row per layer, as SGCN's three-layer masks), losses f1 = 0.7, f2 = 0.2.
Ours regenerates the uniforms from Philox inside the kernel; the peer is what one writes without
a counter-based RNG: ``u = torch.rand(3, E)`` drawn at the forward pass and kept in memory until
the gradient, then
  arm     (f1 - f2) * (u - 0.5)
  disarm  0.5 * (f1 - f2) * (1[u > σ(-φ)] - 1[u < σ(φ)]) * σ(|φ|)
The embedding width does not enter: one set of cases per graph, whatever --dims says.

Bytes model (per logit, float32): ours reads φ and writes the gradient (8 B, both estimators);
the peer's arm reads u and writes the gradient (8 B), its disarm reads u and φ and writes the
gradient (12 B). The peer also keeps 4 B per logit of uniforms resident (``resident_bytes``).

Run: python -m bench --ops arm_grad [--device cpu|cuda] [--graphs gowalla]
"""

from __future__ import annotations

import torch

from fastgcn_denoise import ops

from ..common import Bench, fused_backends

LAYERS = 3
F_POS, F_NEG = 0.7, 0.2


def stored_uniform_grad(estimator: str, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The gradient from stored uniforms ``u``, in plain PyTorch."""
    df = F_POS - F_NEG
    if estimator == "arm":
        return df * (u - 0.5)
    b1 = (u > torch.sigmoid(-logits)).to(logits.dtype)
    b2 = (u < torch.sigmoid(logits)).to(logits.dtype)
    return (0.5 * df) * (b1 - b2) * torch.sigmoid(logits.abs())


def benches(device, graph, dims, quick: bool) -> list[Bench]:
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(LAYERS, graph.num_edges, device=device, generator=gen)
    u = torch.rand(LAYERS, graph.num_edges, device=device, generator=gen)
    n, tag = logits.numel(), f"K={LAYERS}"
    out = []
    for estimator in ops.ESTIMATORS:
        peer = f"torch stored-u {estimator} {tag}"
        group = f"{estimator} {tag}"
        out.append(
            Bench(
                peer,
                group,
                lambda e=estimator: stored_uniform_grad(e, logits, u),
                bytes_moved=(8 if estimator == "arm" else 12) * n,
                info={"resident_bytes": 4 * n},
            )
        )
        for b in fused_backends(device):
            out.append(
                Bench(
                    f"arm_grad[{b}] {estimator} {tag}",
                    group,
                    lambda e=estimator, b=b: ops.arm_grad(logits, 1, 0, F_POS, F_NEG, e, backend=b),
                    peer=peer,
                    bytes_moved=8 * n,
                    info={"resident_bytes": 0},
                )
            )
    return out
