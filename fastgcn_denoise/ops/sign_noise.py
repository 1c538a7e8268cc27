"""SimGCL's noise (Yu et al., SIGIR'22): sign-aligned, of L2 norm ε per row, from Philox.

    sign_noise(clean [n, d], eps, seed, offsets [V], prop [V, n, d] | None, nodes [n] | None)
        -> out [V, n, d],   out_v = prop_v + ε sign(clean + prop_v) ⊙ u_v / max(|u_v|, 1e-12)
    u_v[r, c] = word c % 4 of Philox(seed, offsets[v] + node_r ⌈d / 4⌉ + ⌊c / 4⌋)
                (``reference.philox_uniform4``; node_r = nodes[r], default r)

A perturbed layer is E + Δ with Δ = ``sign_noise(E, ...)[0]`` (prop None); SimGCL's views propagate
their deviations D_v from the clean layer C, and D_v = ``sign_noise(C, ..., prop = Â D_v^prev)``
is the next deviation, the sign that of the perturbed layer's input C + Â D_v^prev. A row's
uniforms are a function of its node's counters, so a layer's rows can be drawn without the rest
(the last layer's contrast rows) and every backend draws the same bits; all four words of a
Philox call are used (the ten rounds are most of the cost). No gradient: the noise has none (sign
is flat), and a view's gradient is the clean pass's.

Backends: ``reference`` (torch: ``reference.philox_uniform4``, any device), ``cpu``
(csrc/cpu/sign_noise.cpp, one OpenMP pass), ``triton`` (kernels/sign_noise.py, ``tl.rand4x``; the
``cuda`` backend runs it too).
"""

from __future__ import annotations

import torch

from . import reference
from ._backend import BackendUnavailable, resolve_name


def counters_per_row(d: int) -> int:
    """Philox counters a row of width d draws per view: ⌈d / 4⌉ (four words each)."""
    return (int(d) + 3) // 4


def _reference(clean, prop, nodes, offsets, seed, eps):
    n, d = clean.shape
    q = counters_per_row(d)
    node = nodes if nodes is not None else torch.arange(n, device=clean.device)
    counters = node[:, None] * q + torch.arange(q, device=clean.device)
    out = []
    for v, offset in enumerate(offsets.tolist()):
        u = reference.philox_uniform4(seed, offset + counters).reshape(n, 4 * q)[:, :d]
        u = u.to(clean.dtype)
        scale = eps / torch.linalg.vector_norm(u, dim=1, keepdim=True).clamp_min(1e-12)
        base = prop[v] if prop is not None else torch.zeros_like(clean)
        out.append(base + torch.sign(clean + base) * (u * scale))
    return torch.stack(out)


def _cpu(clean, prop, nodes, offsets, seed, eps):
    from .. import _C

    if not hasattr(_C, "sign_noise"):
        raise BackendUnavailable(
            "fastgcn_denoise._C has no sign_noise (built before it was added); "
            "rebuild the extension (pip install -e . or make build)"
        )
    return _C.sign_noise(clean, prop, nodes, offsets, _signed64(seed), float(eps))


def _triton(*args):
    from fastgcn_denoise.kernels.sign_noise import sign_noise as kernel

    return kernel(*args)


def _signed64(seed: int) -> int:
    """A 64-bit key as the signed int64 with the same bits (what the C++ binding takes)."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return seed - (1 << 64) if seed >= 1 << 63 else seed


# No CUDA C++ kernel: the cuda backend runs the Triton one.
_IMPLS = {"reference": _reference, "cpu": _cpu, "triton": _triton, "cuda": _triton}


@torch.no_grad()
def sign_noise(
    clean: torch.Tensor,
    eps: float,
    seed: int,
    offsets,
    prop: torch.Tensor | None = None,
    nodes: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """[V, n, d]: the V views' next deviations (module docstring), without gradient.

    Args:
        clean: float32/float64 [n, d], the clean layer's rows.
        eps: the noise's L2 norm per row and view, ε >= 0.
        seed: the Philox key (64 bits).
        offsets: V ints, each view's first Philox counter (int64).
        prop: [V, n, d] the views' propagated deviations (None: zero, a plain perturbation).
        nodes: int64 [n] the rows' node ids in the counters (None: 0..n-1).
        backend: force one (default: by device / FASTGCN_BACKEND).
    """
    name = resolve_name(clean.device, backend)
    if name not in _IMPLS:
        raise BackendUnavailable(f"sign_noise has no {name!r} kernel; triton covers GPUs")
    n, d = clean.shape
    offsets = torch.as_tensor(offsets, dtype=torch.int64).reshape(-1).to(clean.device)
    if prop is not None and (prop.shape != (offsets.numel(), n, d) or prop.dtype != clean.dtype):
        raise ValueError(
            f"sign_noise: prop is {tuple(prop.shape)} {prop.dtype}; "
            f"[{offsets.numel()}, {n}, {d}] {clean.dtype} expected"
        )
    if nodes is not None and nodes.shape != (n,):
        raise ValueError(f"sign_noise: nodes has shape {tuple(nodes.shape)}, ({n},) expected")
    if nodes is not None:
        nodes = nodes.to(torch.int64).contiguous()
    clean = clean.contiguous()
    prop = prop.contiguous() if prop is not None else None
    return _IMPLS[name](clean, prop, nodes, offsets, seed, eps)
