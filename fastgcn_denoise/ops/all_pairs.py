"""L0-SIGN's fused all-pairs interaction: gated pair MLPs, mean into each node, mean pool.

For a batch of B small graphs in CSR form (graph g has the k_g nodes ``nodes[ptr[g]:ptr[g+1]]``,
feature ids into the embedding tables) and every unordered pair {i, j} (i <= j, self pairs
included: k(k+1)/2 pairs) of a graph's node positions:

    a_ij   = u_i * u_j                          u = node_emb[feature]        [d]
    z_ij   = W2 relu(W1 a_ij + b1) + b2         the interaction function h   [d]
    l_ij   = w2g . relu(W1g (e_i * e_j) + b1g) + b2g     log alpha, e = edge_emb[feature]
    s_ij   = gate(kind, l_ij, u = philox(seed, offset + pair_ptr[g] + q_ij))   in [0, 1]
    v'_t   = sum_{pairs delivering to t, s > 0} s_ij z_ij / #{those pairs}     (0 if none)
    pooled = mean_t v'_t                        [B, d] (0 for an empty graph)
    l0     = sum_ij P(s_ij != 0)                [B] (ops.l0_probability of l_ij; 0 for "none")
    l2     = sum_{ij : s_ij > 0} |z_ij|^2       [B] (the paper's L2 activation term on z)
    kept   = #{ij : s_ij > 0}                   [B] int64 (no gradient)

h runs on the linked pairs only (the paper: "the interaction modeling is performed on each node
pair (i, j) that e'_ij = 1"), so z, and its L2 term, exist for the kept pairs; the kernels skip
h for a dropped pair.

``q_ij = i k - i (i - 1) / 2 + (j - i)`` is the pair's row-major index in the upper triangle, so
pair counters run over the batch without gaps (``pair_ptr`` = exclusive cumsum of k(k+1)/2).

Which nodes a pair delivers to: ``directed=False`` (default, the paper's symmetric edges
e_ij = e_ji: a pair is a neighbour of both ends; a self pair once) or ``directed=True`` (the
official code: pair (i, j), i <= j, aggregated only at j, its later position). ``kind`` is
``hard_concrete`` (training), ``hard_concrete_mean`` (inference) or ``concrete``, gates of
``ops.gate`` (the formulas: ``reference.gate_from_uniforms`` / ``csrc/gates.h`` /
``kernels/gates.py``), or ``"none"``: every pair kept with s = 1 (SIGN, the ablation without edge
prediction).

Gradients flow to both embedding tables and all eight MLP tensors. The uniforms are regenerated
in backward, never stored; nothing per pair is stored either: backward recomputes the pairs and
keeps only the per-node counts of kept pairs from forward ([N] int32). The count is piecewise
constant in s, so it carries no gradient (a pair dropped by the gate has s = 0 and ds = 0).

Backends: ``reference`` (explicit pair lists in PyTorch, autograd; the truth), ``cpu``
(``_C.all_pairs_forward/backward``: each thread a range of graphs, their pairs in counter order
32 at a time as SIMD lanes, so that the MLPs are vector FMAs across pairs and the gates one
vectorised exp/log loop; h on a block's kept pairs only; csrc/cpu/all_pairs.cpp), ``triton`` (kernels/all_pairs.py: one program per graph,
one destination node at a time against chunks of sources).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch

from ..modes import GATE_ID, GATE_KINDS
from . import reference
from ._backend import BackendUnavailable, resolve_name
from .gates import l0_probability

# Gate kinds whose dropped pairs (s = 0) have ds/dlogit = 0, so that h is never needed for them.
# concrete_st is not one: its straight-through gradient would need z of a pair that is not there.
KINDS = ("hard_concrete", "hard_concrete_mean", "concrete", "none")
NO_GATE = -1  # kind id of "none" for the kernels


class AllPairsResult(NamedTuple):
    pooled: torch.Tensor  # [B, d]
    l0: torch.Tensor  # [B]
    l2: torch.Tensor  # [B]
    kept: torch.Tensor  # [B] int64


def pair_pointers(ptr: torch.Tensor) -> torch.Tensor:
    """int64 [B + 1]: exclusive cumsum of k(k+1)/2 (each graph's first pair counter)."""
    k = ptr.diff()
    out = torch.zeros_like(ptr)
    torch.cumsum(k * (k + 1) // 2, 0, out=out[1:])
    return out


@functools.lru_cache(maxsize=64)  # a few tensor ops per call otherwise, on every training step
def l0_shift(kind: str, temperature: float, gamma: float, zeta: float) -> float:
    """The constant c with ``l0_probability(l) = sigmoid(l + c)`` (read off ``l0_probability``
    at 0, so the kernels use its one definition: -tau log(-gamma / zeta) for hard concrete)."""
    p = l0_probability(torch.zeros((), dtype=torch.float64), kind, temperature, gamma, zeta)
    return float(torch.logit(p))


# --------------------------------------------------------------------------- reference
def upper_pairs(ptr: torch.Tensor):
    """(graph [P], i [P], j [P], q [P]) of every pair i <= j of every graph, in counter order:
    graph-major, then row-major in the upper triangle (q = the pair's index in its graph)."""
    k = ptr.diff()
    graphs, rows, cols, locals_ = [], [], [], []
    for size in torch.unique(k).tolist():
        if size == 0:
            continue
        g = torch.nonzero(k == size).flatten()
        tri = torch.triu_indices(size, size, device=ptr.device)  # row-major: the q order
        num = tri.shape[1]
        graphs.append(g.repeat_interleave(num))
        rows.append(tri[0].repeat(g.shape[0]))
        cols.append(tri[1].repeat(g.shape[0]))
        locals_.append(torch.arange(num, device=ptr.device).repeat(g.shape[0]))
    if not graphs:
        empty = torch.zeros(0, dtype=torch.int64, device=ptr.device)
        return empty, empty, empty, empty
    graph, i, j, q = (torch.cat(t) for t in (graphs, rows, cols, locals_))
    order = torch.argsort(graph * (int(k.max()) ** 2 + 1) + q)
    return graph[order], i[order], j[order], q[order]


def _mlp(x, w1, b1, w2, b2):
    return torch.relu(x @ w1.T + b1) @ w2.T + b2


def _pair_logits(xe, pos_i, pos_j, g_w1, g_b1, g_w2, g_b2):
    """log alpha [P] of the pairs (pos_i, pos_j) from the per-position edge rows xe [N, b]."""
    return _mlp(xe[pos_i] * xe[pos_j], g_w1, g_b1, g_w2.reshape(1, -1), g_b2.reshape(1)).squeeze(-1)


def _gate(kind, logit, seed, counters, tau, gamma, zeta):
    """The gate of each pair from its Philox counter, with dz/dphi as its gradient (the
    straight-through one for concrete_st): the one formula, reference.gate_from_uniforms."""
    u = reference.philox_uniform(seed, counters)
    value, slope = reference.gate_from_uniforms(kind, logit, u, tau, gamma, zeta)
    return value.detach() + slope.detach() * (logit - logit.detach())


def pair_gates(
    ptr,
    nodes,
    edge_emb,
    gate_weights,
    kind: str = "hard_concrete_mean",
    seed: int = 0,
    offset: int = 0,
    temperature: float = 2.0 / 3.0,
    gamma: float = -0.1,
    zeta: float = 1.1,
):
    """The gates the op uses, per pair, for analysis and export (explicit pairs, reference path).

    Returns (graph [P], i [P], j [P], s [P]): positions i <= j within graph ``graph``, in counter
    order; with a sampling kind, the same draws as ``all_pairs_interaction`` with this seed and
    offset.
    """
    if kind not in GATE_KINDS:
        raise ValueError(f"unknown gate kind {kind!r}; choose one of {', '.join(GATE_KINDS)}")
    graph, i, j, q = upper_pairs(ptr)
    start = ptr[graph]
    w1, b1, w2, b2 = gate_weights
    logit = _pair_logits(edge_emb[nodes], start + i, start + j, w1, b1, w2, b2)
    s = _gate(
        GATE_ID[kind], logit, seed, offset + pair_pointers(ptr)[graph] + q, temperature, gamma, zeta
    )
    return graph, i, j, s


def reference_terms(
    ptr,
    pair_ptr,
    x,
    xe,
    h_w1,
    h_b1,
    h_w2,
    h_b2,
    g_w1,
    g_b1,
    g_w2,
    g_b2,
    kind,
    seed,
    offset,
    tau,
    gamma,
    zeta,
    shift,
    directed,
):
    """(pooled, l0, l2, kept, counts [N] int32) from the per-position rows x = node_emb[nodes]
    [N, d] and xe = edge_emb[nodes] [N, b]; differentiable in the float tensors."""
    num_graphs, dim = ptr.shape[0] - 1, x.shape[1]
    dtype, device = x.dtype, x.device
    graph, i, j, q = upper_pairs(ptr)
    pos_i, pos_j = ptr[graph] + i, ptr[graph] + j
    z = _mlp(x[pos_i] * x[pos_j], h_w1, h_b1, h_w2, h_b2)
    zeros_b = torch.zeros(num_graphs, dtype=dtype, device=device)
    if kind == NO_GATE:
        s = torch.ones(graph.shape[0], dtype=dtype, device=device)
        l0 = zeros_b
    else:
        logit = _pair_logits(xe, pos_i, pos_j, g_w1, g_b1, g_w2, g_b2)
        s = _gate(kind, logit, seed, offset + pair_ptr[graph] + q, tau, gamma, zeta)
        l0 = zeros_b.index_add(0, graph, torch.sigmoid(logit + shift))
    keep = s.detach() > 0
    # Destinations: the later end j always; the earlier end i too when undirected (i != j).
    both = torch.zeros_like(keep) if directed else i != j
    dest = torch.cat([pos_j, pos_i[both]])
    msg = torch.cat([s, s[both]]).unsqueeze(-1) * torch.cat([z, z[both]])
    num_nodes = x.shape[0]
    counts = torch.zeros(num_nodes, dtype=torch.int32, device=device).index_add_(
        0, dest, torch.cat([keep, keep[both]]).to(torch.int32)
    )
    agg = torch.zeros(num_nodes, dim, dtype=dtype, device=device).index_add(0, dest, msg)
    # Dropped pairs add exact zeros, so a node without kept pairs has agg = 0: divide by >= 1.
    updated = agg / counts.clamp_min(1).to(dtype).unsqueeze(-1)
    sizes = ptr.diff()
    node_graph = torch.repeat_interleave(
        torch.arange(num_graphs, device=device), sizes, output_size=num_nodes
    )
    pooled = torch.zeros(num_graphs, dim, dtype=dtype, device=device).index_add(
        0, node_graph, updated
    ) / sizes.clamp_min(1).to(dtype).unsqueeze(-1)
    l2 = zeros_b.index_add(0, graph, torch.where(keep, (z * z).sum(-1), 0.0))
    kept = torch.zeros(num_graphs, dtype=torch.int64, device=device).index_add_(
        0, graph, keep.to(torch.int64)
    )
    return pooled, l0, l2, kept, counts


def _into_tables(nodes, tensors, g_pos, g_epos, g_weights):
    """The per-position gradients summed into the tables (a feature can occur in many graphs)."""
    node_emb, edge_emb = tensors[0], tensors[1]
    g_node = torch.zeros_like(node_emb).index_add_(0, nodes, g_pos.to(node_emb.dtype))
    g_edge = torch.zeros_like(edge_emb)
    if edge_emb.numel():
        g_edge.index_add_(0, nodes, g_epos.to(edge_emb.dtype))
    return [g_node, g_edge, *g_weights]


def _reference_forward(ptr, nodes, node_emb, edge_emb, *rest):
    with torch.no_grad():
        return reference_terms(ptr, pair_pointers(ptr), node_emb[nodes], edge_emb[nodes], *rest)


def _reference_backward(inputs, counts, g_pooled, g_l0, g_l2):
    """The ten tensors' gradients by autograd through reference_terms."""
    ptr, nodes, tensors, scalars = inputs
    node_emb, edge_emb, *weights = tensors
    pair_ptr = pair_pointers(ptr)
    with torch.enable_grad():
        leaves = [
            t.detach().requires_grad_(t.numel() > 0)
            for t in (node_emb[nodes], edge_emb[nodes], *weights)
        ]
        pooled, l0, l2, _, _ = reference_terms(ptr, pair_ptr, *leaves, *scalars)
        wanted = [t for t in leaves if t.requires_grad]
        outs = [(o, g) for o, g in zip((pooled, l0, l2), (g_pooled, g_l0, g_l2)) if o.requires_grad]
        grads = iter(
            torch.autograd.grad(
                [o for o, _ in outs], wanted, [g for _, g in outs], allow_unused=True
            )
            if wanted and outs
            else ()
        )
    out = [next(grads, None) if t.requires_grad else None for t in leaves]
    out = [torch.zeros_like(t) if g is None else g for g, t in zip(out, leaves)]
    return _into_tables(nodes, tensors, *out[:2], out[2:])


# --------------------------------------------------------------------------- compiled / triton
def _cpu_forward(ptr, nodes, *rest):
    from .. import _C

    if not hasattr(_C, "all_pairs_forward"):
        raise BackendUnavailable(
            "fastgcn_denoise._C has no all_pairs_forward (built before it "
            "was added); rebuild the extension (pip install -e .)"
        )
    tensors, (kind, seed, offset, tau, gamma, zeta, shift, directed) = rest[:10], rest[10:]
    from ._cpp_backend import _i64

    return tuple(
        _C.all_pairs_forward(
            ptr,
            nodes,
            list(tensors),
            kind,
            _i64(seed),
            _i64(offset),
            tau,
            gamma,
            zeta,
            shift,
            directed,
        )
    )


def _cpu_backward(inputs, counts, g_pooled, g_l0, g_l2):
    from .. import _C
    from ._cpp_backend import _i64

    ptr, nodes, tensors, (kind, seed, offset, tau, gamma, zeta, shift, directed) = inputs
    return _C.all_pairs_backward(
        ptr,
        nodes,
        list(tensors),
        kind,
        _i64(seed),
        _i64(offset),
        tau,
        gamma,
        zeta,
        shift,
        directed,
        counts,
        g_pooled,
        g_l0,
        g_l2,
    )


def _triton_forward(ptr, nodes, *rest):
    from fastgcn_denoise.kernels.all_pairs import forward

    return forward(ptr, nodes, pair_pointers(ptr), rest[:10], *rest[10:])


def _triton_backward(inputs, counts, g_pooled, g_l0, g_l2):
    from fastgcn_denoise.kernels.all_pairs import backward

    ptr, nodes, tensors, scalars = inputs
    g_pos, g_epos, *g_weights = backward(
        ptr, nodes, pair_pointers(ptr), tensors, *scalars, counts, g_pooled, g_l0, g_l2
    )
    return _into_tables(nodes, tensors, g_pos, g_epos, g_weights)


_IMPLS = {
    "reference": (_reference_forward, _reference_backward),
    "cpu": (_cpu_forward, _cpu_backward),
    "triton": (_triton_forward, _triton_backward),
}


def all_pairs_kernels(device: torch.device, backend: str | None = None):
    """(forward, backward) primitives of the chosen backend (no autograd): forward(ptr, nodes,
    *tensors, *scalars) -> (pooled, l0, l2, kept, counts [N] int32); backward((ptr, nodes, tensors,
    scalars), counts, g_pooled, g_l0, g_l2) -> the ten tensors' gradients (tables [F, .])."""
    name = resolve_name(device, backend)
    if name not in _IMPLS:
        raise BackendUnavailable(
            f"all_pairs has no {name!r} kernel; the triton backend covers GPUs"
        )
    return _IMPLS[name]


class _AllPairs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ptr, nodes, scalars, backend, *tensors):
        fwd, bwd = all_pairs_kernels(nodes.device, backend)
        pooled, l0, l2, kept, counts = fwd(ptr, nodes, *tensors, *scalars)
        ctx.backward_kernel, ctx.scalars = bwd, scalars
        ctx.save_for_backward(ptr, nodes, counts, *tensors)
        ctx.mark_non_differentiable(kept)
        return pooled, l0, l2, kept

    @staticmethod
    def backward(ctx, g_pooled, g_l0, g_l2, _g_kept):
        ptr, nodes, counts, *tensors = ctx.saved_tensors
        node_emb = tensors[0]
        num_graphs = ptr.shape[0] - 1
        g_pooled = (
            node_emb.new_zeros(num_graphs, node_emb.shape[1])
            if g_pooled is None
            else g_pooled.contiguous()
        )
        g_l0 = node_emb.new_zeros(num_graphs) if g_l0 is None else g_l0.contiguous()
        g_l2 = node_emb.new_zeros(num_graphs) if g_l2 is None else g_l2.contiguous()
        grads = ctx.backward_kernel(
            (ptr, nodes, tensors, ctx.scalars), counts, g_pooled, g_l0, g_l2
        )
        return (None, None, None, None, *grads)


def _check_tensor(name, t, shape, dtype, device):
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(shape):
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must have shape {list(shape)}, got {got}")
    if t.dtype != dtype:
        raise ValueError(f"{name} is {t.dtype} but node_emb is {dtype}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but node_emb is on {device}")


def _check_batch(ptr, nodes, num_features, device):
    for name, t in (("ptr", ptr), ("nodes", nodes)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.dim() != 1:
            raise ValueError(f"{name} must be a 1-D int64 tensor")
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but node_emb is on {device}")
    # On the CPU the checks run in numpy (no copy): a few microseconds against a few torch ops'
    # dispatch each, on every training step of a small batch.
    lib, p, n = (np, ptr.numpy(), nodes.numpy()) if device.type == "cpu" else (torch, ptr, nodes)
    if (
        p.shape[0] < 1
        or int(p[0]) != 0
        or int(p[-1]) != n.shape[0]
        or (p.shape[0] > 1 and bool((lib.diff(p) < 0).any()))
    ):
        raise ValueError(
            f"ptr must start at 0, be non-decreasing and end at len(nodes) = "
            f"{nodes.shape[0]} (got ptr[0] = {int(ptr[0]) if ptr.numel() else None}, "
            f"ptr[-1] = {int(ptr[-1]) if ptr.numel() else None})"
        )
    if n.shape[0]:
        lo, hi = int(n.min()), int(n.max())
        if lo < 0 or hi >= num_features:
            bad = int(torch.nonzero((nodes < 0) | (nodes >= num_features))[0])
            raise ValueError(
                f"nodes[{bad}] = {int(nodes[bad])} is outside the embedding "
                f"tables' [0, {num_features})"
            )


def all_pairs_interaction(
    ptr: torch.Tensor,
    nodes: torch.Tensor,
    node_emb: torch.Tensor,
    h_weights,
    edge_emb: torch.Tensor | None = None,
    gate_weights=None,
    kind: str = "hard_concrete",
    seed: int = 0,
    offset: int = 0,
    temperature: float = 2.0 / 3.0,
    gamma: float = -0.1,
    zeta: float = 1.1,
    directed: bool = False,
    backend: str | None = None,
) -> AllPairsResult:
    """The fused pair pass of L0-SIGN (module docstring) over a batch of feature graphs.

    Args:
        ptr [B + 1], nodes [N]: int64 CSR of the batch (graph g = nodes[ptr[g]:ptr[g + 1]]).
        node_emb [F, d]: float32/float64 node embeddings (interaction modelling).
        h_weights: (W1 [H, d], b1 [H], W2 [d, H], b2 [d]) of h, in ``nn.Linear`` layout.
        edge_emb [F, b], gate_weights (W1g [Hg, b], b1g [Hg], w2g [1, Hg] or [Hg], b2g [1] or
            []): the edge predictor; both None when ``kind == "none"``.
        kind: hard_concrete, hard_concrete_mean, concrete or none. seed, offset: the Philox key and the first
            pair's counter (a training loop advances offset by the batch's pair count).
        temperature, gamma, zeta: the gate's tau and stretch (hard concrete: 2/3, -0.1, 1.1).
        directed: aggregate each pair only at its later node (the official code's graph).
    Returns:
        ``AllPairsResult(pooled [B, d], l0 [B], l2 [B], kept [B] int64)``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if (
        not isinstance(node_emb, torch.Tensor)
        or node_emb.dim() != 2
        or node_emb.dtype not in (torch.float32, torch.float64)
    ):
        raise ValueError("node_emb must be a float32 or float64 tensor [num_features, d]")
    dtype, device = node_emb.dtype, node_emb.device
    num_features, dim = node_emb.shape
    _check_batch(ptr, nodes, num_features, device)
    if len(h_weights) != 4:
        raise ValueError("h_weights must be (W1 [H, d], b1 [H], W2 [d, H], b2 [d])")
    hidden = h_weights[0].shape[0] if isinstance(h_weights[0], torch.Tensor) else -1
    for name, t, shape in zip(
        ("W1", "b1", "W2", "b2"), h_weights, ((hidden, dim), (hidden,), (dim, hidden), (dim,))
    ):
        _check_tensor(f"h_weights {name}", t, shape, dtype, device)
    if kind == "none":
        if edge_emb is not None or gate_weights is not None:
            raise ValueError("kind 'none' keeps every pair: pass no edge_emb / gate_weights")
        empty = node_emb.new_zeros(0)
        gate_tensors = [node_emb.new_zeros(num_features, 0), empty, empty, empty, empty]
        kind_id, shift = NO_GATE, 0.0
    else:
        if edge_emb is None or gate_weights is None or len(gate_weights) != 4:
            raise ValueError(
                f"kind {kind!r} needs edge_emb [F, b] and gate_weights "
                "(W1g [Hg, b], b1g [Hg], w2g [1, Hg], b2g [1])"
            )
        g_hidden = gate_weights[0].shape[0] if isinstance(gate_weights[0], torch.Tensor) else -1
        e_dim = (
            edge_emb.shape[1] if isinstance(edge_emb, torch.Tensor) and edge_emb.dim() == 2 else -1
        )
        _check_tensor("edge_emb", edge_emb, (num_features, e_dim), dtype, device)
        w2g, b2g = gate_weights[2], gate_weights[3]
        w2g = w2g.reshape(-1) if isinstance(w2g, torch.Tensor) else w2g
        b2g = b2g.reshape(-1) if isinstance(b2g, torch.Tensor) else b2g
        for name, t, shape in zip(
            ("W1g", "b1g", "w2g", "b2g"),
            (gate_weights[0], gate_weights[1], w2g, b2g),
            ((g_hidden, e_dim), (g_hidden,), (g_hidden,), (1,)),
        ):
            _check_tensor(f"gate_weights {name}", t, shape, dtype, device)
        gate_tensors = [edge_emb, gate_weights[0], gate_weights[1], w2g, b2g]
        kind_id = GATE_ID[kind]
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        if kind.startswith("hard_concrete") and not (gamma < 0 < 1 < zeta):
            raise ValueError(
                f"hard concrete needs gamma < 0 and zeta > 1, got gamma={gamma}, zeta={zeta}"
            )
        shift = l0_shift(kind, temperature, gamma, zeta)
    tensors = [node_emb, gate_tensors[0], *h_weights, *gate_tensors[1:]]
    tensors = [t.contiguous() for t in tensors]
    scalars = (
        kind_id,
        int(seed),
        int(offset),
        float(temperature),
        float(gamma),
        float(zeta),
        shift,
        bool(directed),
    )
    pooled, l0, l2, kept = _AllPairs.apply(
        ptr.contiguous(), nodes.contiguous(), scalars, backend, *tensors
    )
    return AllPairsResult(pooled, l0, l2, kept)


__all__ = [
    "AllPairsResult",
    "KINDS",
    "all_pairs_interaction",
    "all_pairs_kernels",
    "pair_gates",
    "pair_pointers",
    "upper_pairs",
]
