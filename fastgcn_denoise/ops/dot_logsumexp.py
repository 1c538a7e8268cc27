"""Fused, numerically stable log-sum-exp of dot-product scores over all keys.

    lse[b] = log sum_{j in S_b} exp(<q_b, k_j> / tau)          q [B, d], k [N, d]

``S_b`` is every key, or, with binary masks (LightGNN's embedding-entry masks, paper Eq. 10), the
positive set {j : |m_b & m_j| >= max(|m_b|, |m_j|) - slack}. It is what InfoNCE and uniformity
losses need over all N users or items (LightGNN Eq. 6 and 9): InfoNCE_b = lse[b] - <q_b, k_b>/tau.

The [B, N] score matrix is never materialised (O(B N) memory; 1.1 GB at B = 4096, N = 69,534):
the backends stream over key tiles with an online max and sum per query, so every exponential
has a non-positive argument (the official LightGNN code exponentiates raw scores, which
overflows on large norms). Backward recomputes the tiles: dL/dq = P k / tau, dL/dk = P^T q / tau
with P_bj = g_b exp(<q_b, k_j>/tau - lse_b) on S_b (0 elsewhere). A query with an empty set gets
-inf and zero gradients.

Backends: ``reference`` (materialises the scores in row chunks, torch.logsumexp: the truth),
``cpu`` (csrc/cpu/dot_logsumexp.cpp: a GEMM per L2 tile + online max/sum, OpenMP),
``triton`` (kernels/dot_logsumexp.py: flash-style tiles in registers, two backward kernels).
"""

from __future__ import annotations

import math

import torch

from ._backend import BackendUnavailable, resolve_name

_CHUNK_ELEMENTS = 1 << 24  # reference: scores materialised per chunk of query rows
_WORD = 32


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Binary masks [n, d] (bool or 0/1) -> int32 words [n, ceil(d / 32)], bit t of word w =
    mask[:, 32 w + t]."""
    n, d = mask.shape
    words = max(1, math.ceil(d / _WORD))
    bits = torch.zeros(n, words * _WORD, dtype=torch.int64, device=mask.device)
    bits[:, :d] = (mask != 0).to(torch.int64)
    shifts = torch.arange(_WORD, dtype=torch.int64, device=mask.device)
    packed = (bits.view(n, words, _WORD) << shifts).sum(-1)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


def _popcount(x: torch.Tensor) -> torch.Tensor:
    """Set bits per int32 word (as int64)."""
    x = x.to(torch.int64) & 0xFFFFFFFF
    return sum(((x >> t) & 1) for t in range(_WORD))


def _valid_pairs(q_bits, k_bits, slack):
    """bool [b, N]: pair (b, j) in the positive set (Eq. 10) from packed masks."""
    cq = _popcount(q_bits).sum(-1)
    ck = _popcount(k_bits).sum(-1)
    overlap = _popcount(q_bits[:, None, :] & k_bits[None, :, :]).sum(-1)
    return overlap >= torch.maximum(cq[:, None], ck[None, :]) - slack


def _ref_scores(q, k, tau, q_bits, k_bits, slack, rows):
    s = (q[rows] * (1.0 / tau)) @ k.T
    if q_bits is not None:
        s = s.masked_fill(~_valid_pairs(q_bits[rows], k_bits, slack), float("-inf"))
    return s


def _ref_chunks(q, k):
    step = max(1, _CHUNK_ELEMENTS // max(1, k.shape[0]))
    return [slice(s, s + step) for s in range(0, q.shape[0], step)]


def _ref_forward(q, k, tau, q_bits, k_bits, slack):
    out = torch.empty(q.shape[0], dtype=q.dtype, device=q.device)
    for rows in _ref_chunks(q, k):
        out[rows] = torch.logsumexp(_ref_scores(q, k, tau, q_bits, k_bits, slack, rows), dim=1)
    return out


def _ref_backward(q, k, tau, q_bits, k_bits, slack, lse, g, need_q, need_k):
    gq, gk = torch.zeros_like(q), torch.zeros_like(k)
    for rows in _ref_chunks(q, k):
        live = torch.isfinite(lse[rows])
        lse_r = torch.where(live, lse[rows], 0)
        p = torch.exp(_ref_scores(q, k, tau, q_bits, k_bits, slack, rows) - lse_r[:, None])
        p = p * (g[rows] * live)[:, None]
        if need_q:
            gq[rows] = (p @ k) * (1.0 / tau)
        if need_k:
            gk += p.T @ (q[rows] * (1.0 / tau))
    return gq, gk


def _cpu_ext():
    from .. import _C

    if not hasattr(_C, "dot_logsumexp_fwd"):
        raise BackendUnavailable(
            "fastgcn_denoise._C has no dot_logsumexp (built before it was "
            "added); rebuild the extension (pip install -e .)"
        )
    return _C


def _cpu_forward(q, k, tau, q_bits, k_bits, slack):
    return _cpu_ext().dot_logsumexp_fwd(q, k, tau, q_bits, k_bits, slack)


def _cpu_backward(q, k, tau, q_bits, k_bits, slack, lse, g, need_q, need_k):
    gq, gk = _cpu_ext().dot_logsumexp_bwd(q, k, tau, q_bits, k_bits, slack, lse, g, need_q, need_k)
    return gq, gk


def _triton_forward(*args):
    from fastgcn_denoise.kernels.dot_logsumexp import forward

    return forward(*args)


def _triton_backward(*args):
    from fastgcn_denoise.kernels.dot_logsumexp import backward

    return backward(*args)


_IMPLS = {
    "reference": (_ref_forward, _ref_backward),
    "cpu": (_cpu_forward, _cpu_backward),
    "triton": (_triton_forward, _triton_backward),
}


def dot_logsumexp_kernels(device: torch.device, backend: str | None = None):
    """(forward, backward) primitives of the chosen backend (no autograd):
    ``forward(q, k, tau, q_bits, k_bits, slack) -> lse [B]`` and
    ``backward(q, k, tau, q_bits, k_bits, slack, lse, g, need_q, need_k) -> (dq, dk)``."""
    name = resolve_name(device, backend)
    if name not in _IMPLS:
        raise BackendUnavailable(
            f"dot_logsumexp has no {name!r} kernel; the triton backend covers GPUs"
        )
    return _IMPLS[name]


class _DotLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, tau, q_bits, k_bits, slack, backend):
        fwd, _ = dot_logsumexp_kernels(q.device, backend)
        lse = fwd(q, k, tau, q_bits, k_bits, slack)
        ctx.tau, ctx.slack, ctx.backend = tau, slack, backend
        ctx.save_for_backward(q, k, q_bits, k_bits, lse)
        return lse

    @staticmethod
    def backward(ctx, g):
        q, k, q_bits, k_bits, lse = ctx.saved_tensors
        _, bwd = dot_logsumexp_kernels(q.device, ctx.backend)
        need_q, need_k = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gq, gk = bwd(q, k, ctx.tau, q_bits, k_bits, ctx.slack, lse, g.contiguous(), need_q, need_k)
        return (gq if need_q else None), (gk if need_k else None), None, None, None, None, None


def _check(name, x, what):
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 2-D tensor [{what}, d], got {shape}")
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
    if (
        x.device.type == "cpu"
        and x.numel()
        and not torch.isfinite(torch.stack(torch.aminmax(x.detach().reshape(-1)))).all()
    ):
        bad = (~torch.isfinite(x.detach())).nonzero()[0].tolist()
        raise ValueError(f"{name} has non-finite values (first at {tuple(bad)})")


def dot_logsumexp(
    queries: torch.Tensor,
    keys: torch.Tensor,
    temperature: float = 1.0,
    query_mask: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
    slack: int = 0,
    backend: str | None = None,
) -> torch.Tensor:
    """lse [B] = log sum_j exp(<queries[b], keys[j]> / temperature), differentiable in both.

    Args:
        queries [B, d], keys [N, d]: float32 or float64 (same dtype and device).
        temperature: tau > 0.
        query_mask [B, m], key_mask [N, m]: optional binary masks (bool or 0/1, any width m):
            only keys j with |mask_b & mask_j| >= max(|mask_b|, |mask_j|) - slack count.
        slack: delta >= 0 of that rule.
        backend: force a backend (default: FASTGCN_BACKEND or the best for the device).
    """
    _check("queries", queries, "B")
    _check("keys", keys, "N")
    if queries.shape[1] != keys.shape[1] or queries.dtype != keys.dtype:
        raise ValueError(
            f"queries (d = {queries.shape[1]}, {queries.dtype}) and keys "
            f"(d = {keys.shape[1]}, {keys.dtype}) must share d and dtype"
        )
    if queries.device != keys.device:
        raise ValueError(f"queries are on {queries.device} but keys on {keys.device}")
    if not (
        isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if (query_mask is None) != (key_mask is None):
        raise ValueError("give both query_mask and key_mask, or neither")
    q_bits = k_bits = None
    if query_mask is not None:
        for name, m, rows in (
            ("query_mask", query_mask, queries.shape[0]),
            ("key_mask", key_mask, keys.shape[0]),
        ):
            if not isinstance(m, torch.Tensor) or m.dim() != 2 or m.shape[0] != rows:
                shape = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
                raise ValueError(f"{name} must have shape [{rows}, m], got {shape}")
            if m.device != queries.device:
                raise ValueError(f"{name} is on {m.device} but the queries on {queries.device}")
        if query_mask.shape[1] != key_mask.shape[1]:
            raise ValueError(
                f"query_mask has {query_mask.shape[1]} columns but key_mask {key_mask.shape[1]}"
            )
        if int(slack) != slack or slack < 0:
            raise ValueError(f"slack must be an integer >= 0, got {slack!r}")
        q_bits, k_bits = pack_mask(query_mask), pack_mask(key_mask)
    return _DotLogSumExp.apply(
        queries.contiguous(),
        keys.contiguous(),
        float(temperature),
        q_bits,
        k_bits,
        int(slack),
        backend,
    )


__all__ = ["dot_logsumexp", "dot_logsumexp_kernels", "pack_mask"]
