"""LightGCN's whole propagation, read out only at a batch's rows, with a hand-written backward.

    propagation_rows(graph, x_user [U, d], x_item [I, d], rows [n], num_layers)
        -> (readout [n, d], ego [n, d])

with X_0 = [x_user; x_item] ([N, d], N = U + I, items at U + i), X_{k+1} = Â X_k (Â the
normalised adjacency, ``bipartite_operator``), ``readout = sum_k w_k X_k[rows]`` (by default
w_k = 1 / (K + 1): the mean) and ``ego = X_0[rows]``. It is the training step of a plain LightGCN:
the propagation has to be full (every X_k row a batch row reads depends on its K-hop
neighbourhood) but only the batch's rows of the readout are used.

Options for the models built on the same propagation:
  ``weights``    the readout's w_0..w_K (SimGCL leaves out X_0: w = (0, 1/K, ..., 1/K));
  ``self_loop``  Â with self-loops, D̂^-1/2 (A + I) D̂^-1/2, D̂ = D + I;
  ``gmp``        DGR's desmoothing on every layer, X_{k+1} = β_k Â X_k − c_k r rᵀ Â X_k with
                 r = sqrt(d̂) (d̂ the degrees, + 1 with self-loops), one (β_k, c_k) per layer;
  ``keep_layers`` also return X_1..X_K (full, without gradient: SimGCL's noise reads their signs);
  ``edge_weight`` fixed per-edge weights w: Â = D_w^-1/2 (A ⊙ w) D_w^-1/2 with the weighted degrees
                 (a denoiser's soft keep scores, ``denoisers.reweight``).

GMP costs no extra pass: r is Â's eigenvector of eigenvalue 1 (with self-loops Â r =
D̂^-1/2 (A + I) 1 = D̂^-1/2 d̂ = r, likewise without; r_v = 0 for an isolated node), so rᵀ Â^k X_0 = rᵀ X_0 =: s
for every k and, by induction, X_k = b_k Y_k − m_k r sᵀ with Y_k = Â^k X_0 the plain
propagation and the scalars b_0 = 1, m_0 = 0, b_{k+1} = β_k b_k, m_{k+1} = β_k m_k + c_k (b_k −
m_k rᵀr). The readout is sum_k w_k b_k Y_k[rows] − (sum_k w_k m_k) r[rows] sᵀ: the plain
product per layer, one reduction s over X_0 and a broadcast on the n rows.

Why a Function instead of autograd over the layers: the readout's gradient reaches every layer
at the same rows with the same value S = scatter(g_readout), so the backward is Horner's rule on
one [N, d] buffer, G = a_K S; G = Â^T G + a_k S (k = K-1..0), a_k = w_k b_k, + scatter(g_ego),
with Â^T = Â: one buffer and K products per step. Autograd over per-layer gathers builds a
zero-filled [U, d] and [I, d] gradient per gather (2 (K + 2) per step) and adds them up: a fifth
of a Gowalla step at 1 thread (profiled: aten::fill_ 41 ms of 335). The forward keeps no layer
(unless asked). GMP's rank-one term adds r hᵀ to G, h = −(sum_k w_k m_k) S^T r[rows]; as Â^T r =
r it is added to the buffer's initial value instead of a zero fill, and the products carry it.
"""

from __future__ import annotations

import weakref

import torch

from .weighted_spmm import bipartite_operator, csr_product, weighted_degrees


def _product(pattern, weight, x, backend):
    """Â x: ``weighted_spmm``'s kernel without the op's per-call check of ``weight`` (the
    operator's own values, finite by construction) and without autograd."""
    return csr_product(pattern.rowptr, pattern.col, None, weight, x, backend)


# Per graph: {(dtype, self_loop): (r [N], rᵀr)}, GMP's smoothing vector, built once per graph
# (an immutable one) instead of a few passes over the N degrees every step.
_SQRT_DEGREES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _sqrt_degrees(graph, dtype: torch.dtype, self_loop: bool, edge_weight=None):
    """(r = sqrt(d̂) [N] in ``dtype``, rᵀr = Σ d̂ as a float), d̂ the degrees (+ 1 with
    self-loops); with ``edge_weight`` [E] the weighted degrees (not cached)."""
    if edge_weight is not None:
        degree = weighted_degrees(graph, edge_weight) + int(self_loop)
        return degree.sqrt().to(dtype), float(degree.sum())
    cache = _SQRT_DEGREES.setdefault(graph, {})
    key = (dtype, bool(self_loop))
    if key not in cache:
        degree = torch.cat([graph.deg_u, graph.deg_i]).to(torch.float64) + int(self_loop)
        cache[key] = (degree.sqrt().to(dtype), float(degree.sum()))
    return cache[key]


def _gmp_scalars(gmp, num_layers: int, rr: float):
    """(b [K + 1], m [K + 1]) of the module docstring from the per-layer (β, c) pairs."""
    b, m = [1.0], [0.0]
    for k in range(num_layers):
        beta, c = gmp[k]
        b.append(beta * b[k])
        m.append(beta * m[k] + c * (b[k] - m[k] * rr))
    return b, m


class _PropagationRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_user, x_item, rows, coefs, rank_one, r, pattern, weight, keep, backend):
        x = torch.cat([x_user, x_item])
        # index_select, not x[rows]: advanced indexing was 10x slower for these gathers.
        ego = torch.index_select(x, 0, rows)
        total = ego * coefs[0] if coefs[0] != 1 else ego.clone()
        s = torch.mv(x.T, r) if r.numel() else None
        layers = []
        for k in range(1, len(coefs)):
            x = _product(pattern, weight, x, backend)
            if coefs[k]:
                total.add_(torch.index_select(x, 0, rows), alpha=coefs[k])
            if keep is not None:
                b, m = keep
                layers.append(x if s is None else torch.addr(x, r, s, beta=b[k], alpha=-m[k]))
        if rank_one:
            total.addr_(torch.index_select(r, 0, rows), s, alpha=-rank_one)
        ctx.save_for_backward(rows, r)
        ctx.num_users, ctx.num_nodes = x_user.shape[0], x.shape[0]
        ctx.coefs, ctx.rank_one = coefs, rank_one
        ctx.pattern, ctx.weight, ctx.backend = pattern, weight, backend
        ctx.mark_non_differentiable(*layers)
        return (total, ego, *layers)

    @staticmethod
    def backward(ctx, g_read, g_ego, *g_layers):  # the kept layers have no gradient
        rows, r = ctx.saved_tensors
        ref = g_read if g_read is not None else g_ego
        coefs = ctx.coefs
        if g_read is not None and ctx.rank_one:
            h = torch.mv(g_read.T, torch.index_select(r, 0, rows)) * -ctx.rank_one
            grad = torch.outer(r, h)
        else:
            grad = ref.new_zeros(ctx.num_nodes, ref.shape[1])
        if g_read is not None:
            for k in range(len(coefs) - 1, -1, -1):
                if k < len(coefs) - 1:
                    grad = _product(ctx.pattern, ctx.weight, grad, ctx.backend)
                if coefs[k]:
                    grad.index_add_(0, rows, g_read, alpha=coefs[k])
        if g_ego is not None:
            grad.index_add_(0, rows, g_ego)
        u = ctx.num_users
        return grad[:u], grad[u:], None, None, None, None, None, None, None, None


def propagation_rows(
    graph,
    x_user: torch.Tensor,
    x_item: torch.Tensor,
    rows: torch.Tensor,
    num_layers: int,
    backend: str | None = None,
    *,
    weights=None,
    self_loop: bool = False,
    gmp=None,
    keep_layers: bool = False,
    edge_weight: torch.Tensor | None = None,
):
    """(sum_k w_k X_k[rows], X_0[rows]), both [n, d] (module docstring); with ``keep_layers``
    also X_1..X_K, each [N, d] without gradient.

    Args:
        graph: ``BipartiteGraph`` on the embeddings' device.
        x_user [U, d], x_item [I, d]: float32/float64 layer-0 embeddings.
        rows: int64 [n] node ids, users ``u`` and items ``U + i`` (repeats allowed).
        num_layers: K >= 0.
        backend: force a ``weighted_spmm`` backend (default: by device / FASTGCN_BACKEND).
        weights: K + 1 floats w_k (default: 1 / (K + 1) each).
        self_loop: propagate with self-loops.
        gmp: K pairs (β_k, c_k) of DGR's desmoothing after layer k + 1 (None: none).
        keep_layers: also return the layers X_1..X_K.
        edge_weight: fixed per-edge weights w [E] (edge-id order, >= 0, no gradient): Â is then
            D_w^-1/2 (A ⊙ w) D_w^-1/2 with the weighted degrees, ``masked_spmm(...,
            edge_weight=w)`` (``bipartite_operator``; GMP's r = sqrt of those degrees).
    """
    if num_layers < 0:
        raise ValueError(f"propagation_rows: num_layers must be >= 0, got {num_layers}")
    if x_user.dtype != x_item.dtype:
        raise ValueError(f"propagation_rows: x_user is {x_user.dtype} but x_item is {x_item.dtype}")
    if x_user.shape[0] != graph.num_users or x_item.shape[0] != graph.num_items:
        raise ValueError(
            f"propagation_rows: x_user has {x_user.shape[0]} rows and x_item {x_item.shape[0]}; "
            f"the graph has {graph.num_users} users and {graph.num_items} items"
        )
    k = int(num_layers)
    weights = [1.0 / (k + 1)] * (k + 1) if weights is None else [float(w) for w in weights]
    if len(weights) != k + 1:
        raise ValueError(
            f"propagation_rows: weights has {len(weights)} values, num_layers + 1 = {k + 1} needed"
        )
    if gmp is not None and len(gmp) != k:
        raise ValueError(f"propagation_rows: gmp has {len(gmp)} (beta, c) pairs for {k} layers")
    pattern, weight = bipartite_operator(
        graph, x_user.dtype, self_loop=self_loop, edge_weight=edge_weight
    )
    if gmp is None:
        r, b, rank_one = x_user.new_empty(0), [1.0] * (k + 1), 0.0
    else:
        r, rr = _sqrt_degrees(graph, x_user.dtype, self_loop, edge_weight)
        b, m = _gmp_scalars(gmp, k, rr)
        rank_one = sum(w * mk for w, mk in zip(weights, m))
    coefs = tuple(w * bk for w, bk in zip(weights, b))
    keep = (b, m if gmp is not None else None) if keep_layers else None
    return _PropagationRows.apply(
        x_user, x_item, rows, coefs, rank_one, r, pattern, weight, keep, backend
    )
