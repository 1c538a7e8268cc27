"""Masked renormalised propagation (one layer, both directions) against its peers, side by side.

For each mode group (``ones``; ``bernoulli``, standing for the sampled binary modes; ``expect``
and ``hard``, differentiable in the logits; the relaxed gates ``concrete_st`` and ``hard_concrete``
of the pathwise estimator, without and with a target-edge holdout of ``HOLDOUT`` edges), forward
and forward + backward (gradients w.r.t. both embedding tables, and the logits where the mode is
differentiable), ours on every fused backend against, on the same graph and inputs:
  composition  what a user writes in plain PyTorch: the mask (torch.rand for the sampled modes;
               the gates' logistic noise, straight-through as hard + soft - soft.detach()), the
               held-out edges zeroed, index_add_ degrees, the two normalised CSR blocks, two
               torch.sparse.mm (the primary peer);
  bare         two torch.sparse.mm on a pre-normalised CSR (the floor without masking);
  scipy        the same two products with scipy.sparse CSR (CPU, forward only);
  cupy         cuSPARSE through cupyx.scipy.sparse csr_matrix @ dense (CUDA with cupy, forward
               only).
The relaxed cases are also compared with ours in ``ones`` and ``bernoulli`` mode (a LightGCN
layer and an SGCN sample): what the pathwise estimator's layer costs over them.
And the dual ARM pass (``masked_spmm_dual``: arm_pos and arm_neg from one set of uniforms) against
two single passes on the same backend. All cases are timed in turns (``interleave``).

Bytes model of one fused layer with ``n`` outputs (1, or 2 for the dual pass), stated so GB/s can
be compared with the copy ceiling: every edge reads its column index (8 B), n weights (4 B) and n
of the other side's r (4 B) and one gathered row (4d B, no reuse assumed), each row reads rowptr
(8 B) and writes n output rows (4d B), the item side also reads perm (8 B per edge), and the mask
pass reads phi (4 B) and writes n weights per edge. Forward only; backward has no stated model.

Run: python -m bench --ops masked_spmm [--device cpu|cuda] [--graphs gowalla] [--dims 64] [--threads 1]
"""

from __future__ import annotations

import os
import warnings

import torch

from fastgcn_denoise import ops

from ..common import Bench, cupy_or_reason, fused_backends, time_benches

# torch's notes on building CSR tensors (beta support, invariant checks off): not findings.
warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")

MODES = ("ones", "bernoulli", "expect", "hard")
DIFFERENTIABLE = ("expect", "hard")
RELAXED = ("concrete_st", "hard_concrete")
HOLDOUT = 2048  # target edges held out per step: a batch's positives
DIRECTIONS = ("fwd", "fwd+bwd")
TEMPERATURE, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1  # the op's defaults


def layer_bytes(graph, d: int, outputs: int = 1, itemsize: int = 4) -> int:
    e, rows = graph.num_edges, graph.num_users + graph.num_items
    per_edge = 2 * (8 + 2 * outputs * itemsize + d * itemsize) + 8 + (1 + outputs) * itemsize
    return e * per_edge + rows * (8 + outputs * d * itemsize)


def mask_values(mode: str, phi: torch.Tensor) -> torch.Tensor:
    """The mask z in plain PyTorch (bernoulli draws from torch.rand, not Philox)."""
    if mode == "ones":
        return torch.ones_like(phi)
    sig = torch.sigmoid(phi)
    if mode == "bernoulli":
        return (torch.rand_like(phi) < sig).to(phi.dtype)
    return sig if mode == "expect" else sig * (sig > 0.5)


def relaxed_values(mode: str, phi: torch.Tensor, held: torch.Tensor | None) -> torch.Tensor:
    """The relaxed gate in plain PyTorch (torch.rand noise), the held-out edges set to 0."""
    u = torch.rand_like(phi).clamp(1e-7, 1 - 1e-7)
    logit = phi + torch.log(u) - torch.log1p(-u)
    s = torch.sigmoid(logit / TEMPERATURE)
    if mode == "concrete_st":
        z = (logit > 0).to(phi.dtype) + s - s.detach()
    else:
        z = (s * (ZETA - GAMMA) + GAMMA).clamp(0, 1)
    return z if held is None else z.index_fill(0, held, 0.0)


def _inv_sqrt(deg):
    """deg^-1/2, 0 where deg = 0 (and a zero, not NaN, gradient there)."""
    pos = deg > 0
    safe = torch.where(pos, deg, torch.ones_like(deg))
    return torch.where(pos, safe.rsqrt(), torch.zeros_like(deg))


def normalised_blocks(graph, z):
    """(A [U, I], A^T [I, U]) as torch CSR tensors with D^-1/2 (R ⊙ z) D^-1/2 values."""
    users, items = graph.edges()
    du = torch.zeros(graph.num_users, device=z.device, dtype=z.dtype).index_add(0, users, z)
    di = torch.zeros(graph.num_items, device=z.device, dtype=z.dtype).index_add(0, items, z)
    vals = _inv_sqrt(du)[users] * z * _inv_sqrt(di)[items]
    a = torch.sparse_csr_tensor(
        graph.rowptr_u, graph.col_item, vals, (graph.num_users, graph.num_items)
    )
    at = torch.sparse_csr_tensor(
        graph.rowptr_i, graph.col_user, vals[graph.perm], (graph.num_items, graph.num_users)
    )
    return a, at


def _flat(out):
    return [t for o in out for t in (_flat(o) if isinstance(o, tuple) else [o])]


def _step(fn, leaves, backward: bool):
    """One call of ``fn(*leaves)``; with ``backward`` also the gradients of the outputs' sum."""

    def once():
        out = fn(*leaves)
        if backward:
            sum(t.sum() for t in _flat(out)).backward()
            for t in leaves:
                t.grad = None

    return once


def _host_peers(a0, at0, x_u, x_i, device):
    """(name, fn or None, skip reason) for the scipy and cupy forward peers."""
    to_scipy = None
    if torch.device(device).type == "cpu":
        import scipy.sparse as sp

        a_sp = sp.csr_matrix(
            (a0.values().numpy(), a0.col_indices().numpy(), a0.crow_indices().numpy()),
            shape=a0.shape,
        )
        at_sp = a_sp.T.tocsr()
        xu_np, xi_np = x_u.numpy(), x_i.numpy()
        to_scipy = lambda: (a_sp @ xi_np, at_sp @ xu_np)  # noqa: E731
    peers = [("scipy csr", to_scipy, None if to_scipy else "scipy runs on the host CPU only")]
    cupy, why = cupy_or_reason(device)
    if cupy is None:
        return peers + [("cupy csr", None, why)]
    import cupyx.scipy.sparse as csp

    def to_cupy(m):
        return csp.csr_matrix(
            (
                cupy.from_dlpack(m.values().detach()),
                cupy.from_dlpack(m.col_indices().int()),
                cupy.from_dlpack(m.crow_indices().int()),
            ),
            shape=m.shape,
        )

    a_cp, at_cp = to_cupy(a0), to_cupy(at0)
    xu_cp, xi_cp = cupy.from_dlpack(x_u), cupy.from_dlpack(x_i)
    return peers + [("cupy csr", lambda: (a_cp @ xi_cp, at_cp @ xu_cp), None)]


def _mode_benches(graph, mode, direction, tag, xu, xi, phi, backends, others) -> list[Bench]:
    """The composition for ``mode`` and ours on every backend, compared with it (and ``others``)."""
    backward = direction == "fwd+bwd"
    p = phi.clone().requires_grad_(backward and mode in DIFFERENTIABLE)
    leaves = [xu, xi] + ([p] if p.requires_grad else [])
    group, composition = f"{mode} {direction} {tag}", f"composition[{mode}] {direction} {tag}"

    def plain(u, i, *_):
        a, at = normalised_blocks(graph, mask_values(mode, p))
        return torch.sparse.mm(a, i), torch.sparse.mm(at, u)

    out = [Bench(composition, group, _step(plain, leaves, backward))]
    for b in backends:

        def fused(u, i, *_, b=b):
            return ops.masked_spmm(
                graph, u, i, None if mode == "ones" else p, mode=mode, seed=1, backend=b
            )

        out.append(
            Bench(
                f"fused[{b}][{mode}] {direction} {tag}",
                group,
                _step(fused, leaves, backward),
                peer=composition,
                other_peers=tuple(others),
                bytes_moved=None if backward else layer_bytes(graph, xu.shape[1]),
            )
        )
    return out


def _relaxed_benches(graph, mode, held, direction, tag, xu, xi, phi, backends, others):
    """A relaxed gate (with ``held`` edges held out, or None): the composition and ours, each of
    ours also compared with ours in ``ones`` and ``bernoulli`` mode."""
    backward = direction == "fwd+bwd"
    p = phi.clone().requires_grad_(backward)
    leaves = [xu, xi] + ([p] if backward else [])
    label = mode if held is None else f"{mode} holdout={held.numel()}"
    group, composition = f"{label} {direction} {tag}", f"composition[{label}] {direction} {tag}"

    def plain(u, i, *_):
        a, at = normalised_blocks(graph, relaxed_values(mode, p, held))
        return torch.sparse.mm(a, i), torch.sparse.mm(at, u)

    out = [Bench(composition, group, _step(plain, leaves, backward))]
    for b in backends:

        def fused(u, i, *_, b=b):
            return ops.masked_spmm(graph, u, i, p, mode=mode, seed=1, backend=b, holdout=held)

        plain_modes = tuple(f"fused[{b}][{m}] {direction} {tag}" for m in ("ones", "bernoulli"))
        out.append(
            Bench(
                f"fused[{b}][{label}] {direction} {tag}",
                group,
                _step(fused, leaves, backward),
                peer=composition,
                other_peers=tuple(others) + plain_modes,
                bytes_moved=None if backward else layer_bytes(graph, xu.shape[1]),
            )
        )
    return out


def _dual_benches(graph, direction, tag, xu, xi, phi, backends) -> list[Bench]:
    """The dual ARM pass against two single passes, on every backend."""
    backward, group, out = direction == "fwd+bwd", f"dual {direction} {tag}", []
    for b in backends:
        two = f"two single ARM passes[{b}] {direction} {tag}"
        out.append(
            Bench(
                two,
                group,
                _step(
                    lambda u, i, b=b: (
                        ops.masked_spmm(graph, u, i, phi, "arm_pos", 1, backend=b),
                        ops.masked_spmm(graph, u, i, phi, "arm_neg", 1, backend=b),
                    ),
                    [xu, xi],
                    backward,
                ),
            )
        )
        out.append(
            Bench(
                f"dual ARM pass[{b}] {direction} {tag}",
                group,
                _step(
                    lambda u, i, b=b: ops.masked_spmm_dual(graph, u, i, phi, seed=1, backend=b),
                    [xu, xi],
                    backward,
                ),
                peer=two,
                bytes_moved=None if backward else layer_bytes(graph, xu.shape[1], outputs=2),
            )
        )
    return out


def benches(device, graph, dims, quick: bool) -> list[Bench]:
    device = torch.device(device)
    backends = fused_backends(device)
    out = []
    for d in dims:
        tag = f"d={d}"
        gen = torch.Generator(device=device).manual_seed(0)
        x_u = torch.randn(graph.num_users, d, device=device, generator=gen)
        x_i = torch.randn(graph.num_items, d, device=device, generator=gen)
        phi = torch.randn(graph.num_edges, device=device, generator=gen)
        # A batch's positive edges: drawn with repeats, as a batch of interactions is.
        holdout = torch.randint(
            0, graph.num_edges, (min(HOLDOUT, graph.num_edges),), device=device, generator=gen
        )
        a0, at0 = normalised_blocks(graph, torch.ones(graph.num_edges, device=device))
        host = _host_peers(a0, at0, x_u, x_i, device)
        for direction in DIRECTIONS:
            backward = direction == "fwd+bwd"
            xu = x_u.clone().requires_grad_(backward)
            xi = x_i.clone().requires_grad_(backward)
            bare = f"bare torch.sparse.mm {direction} {tag}"
            bare_fn = lambda u, i: (torch.sparse.mm(a0, i), torch.sparse.mm(at0, u))  # noqa: E731
            out.append(Bench(bare, f"ones {direction} {tag}", _step(bare_fn, [xu, xi], backward)))
            others = [bare]
            if not backward:  # the scipy and cupy peers: forward only
                out += [
                    Bench(f"{name} fwd {tag}", f"ones fwd {tag}", fn, skipped=why)
                    for name, fn, why in host
                ]
                others += [f"{name} fwd {tag}" for name, _, _ in host]
            for mode in MODES:
                out += _mode_benches(graph, mode, direction, tag, xu, xi, phi, backends, others)
            for mode in RELAXED:
                for held in (None, holdout):
                    out += _relaxed_benches(
                        graph, mode, held, direction, tag, xu, xi, phi, backends, others
                    )
            out += _dual_benches(graph, direction, tag, xu, xi, phi, backends)
    return out


def run(device, graph, dims, quick: bool) -> list[dict]:
    """The cases of ``benches`` timed in turns: a ratio sees one machine state. Each case records
    the threads and the machine's load average when the op started (a shared CPU)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cases = time_benches(benches(device, graph, dims, quick), device, quick, interleave=True)
    return [{**c, "threads": torch.get_num_threads(), "load_avg_1min": load} for c in cases]
