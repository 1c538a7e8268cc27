"""Triton backend of ``ops.dot_logsumexp``: lse[b] = log sum_{j in S_b} exp(<q_b, k_j> / tau).

Flash-attention-style tiles. Forward: one program per ``BLOCK_B`` queries streams over key tiles
of ``BLOCK_N``: the tile's scores from products over d in chunks of ``BLOCK_K``,
pairs outside the positive set (packed-mask popcounts, optional) set to -inf, then the running max
m and sum s are updated (s <- s e^(m - m') + sum e^(x - m')). Nothing of size [B, N] is written.
Backward recomputes the tiles with the forward's lse: ``_dq_kernel`` (one program per query
block and ``BLOCK_O`` columns of d, dq = P k / tau) and ``_dk_kernel`` (one program per key block
and column tile, dk = P^T q / tau), so each output element is written by one program: no atomics.
At d > BLOCK_O each column tile recomputes the scores (d = 128: the backward does 1.5x the
products of one pass over d), the price of no spills. The kernels take the queries pre-scaled by
1 / tau (in their dtype, by torch: no float32 kernel scalar in the float64 path).

Products: ``tl.dot`` with IEEE float32 (never TF32: the scores feed exponentials) for
float32/float16/bfloat16 inputs; float64 uses broadcast-and-sum in float64 (exact products, for
tests). d is at most ``MAX_D``. Every load is masked (the interpreter, used for CPU tests, has
no bounds checks).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgcn_denoise.kernels.masked_spmm import _check_device

MAX_D = 256
# d is walked in chunks: BLOCK_K columns per product step of the scores, and the gradients are
# written in tiles of BLOCK_O columns (one program per query or key block and tile, each
# recomputing the block's scores). With [32, 32] score tiles and 8 warps no specialisation spills
# on sm_90 (fp32, masked or not; tools/aot_compile.py: 77-116 registers), and shared memory stays
# ~16 KB at every d up to MAX_D (d is a runtime argument: d = 256 compiles the same code).
_BLOCK_K = 16
_BLOCK_O = 64
_WARPS = 8
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@triton.jit
def _mm(a, b, DOT: tl.constexpr):
    """a [M, K] @ b [K, N] accumulated in float32 (DOT) or float64."""
    if DOT:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.sum(a.to(tl.float64)[:, :, None] * b.to(tl.float64)[None, :, :], axis=1)


@triton.jit
def _popcount(x):
    """Set bits of each uint32 (SWAR)."""
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F
    return (x * 0x01010101) >> 24


@triton.jit
def _pairs(
    qb_ptr,
    kb_ptr,
    rows,
    row_ok,
    cols,
    col_ok,
    words,
    slack,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """bool [BLOCK_B, BLOCK_N]: |m_b & m_j| >= max(|m_b|, |m_j|) - slack (packed int32 words)."""
    overlap = tl.zeros([BLOCK_B, BLOCK_N], tl.int32)
    cq = tl.zeros([BLOCK_B], tl.int32)
    ck = tl.zeros([BLOCK_N], tl.int32)
    for w in range(0, words):
        a = tl.load(qb_ptr + rows * words + w, mask=row_ok, other=0).to(tl.uint32, bitcast=True)
        b = tl.load(kb_ptr + cols * words + w, mask=col_ok, other=0).to(tl.uint32, bitcast=True)
        cq += _popcount(a).to(tl.int32)
        ck += _popcount(b).to(tl.int32)
        overlap += _popcount(a[:, None] & b[None, :]).to(tl.int32)
    return overlap >= tl.maximum(cq[:, None], ck[None, :]) - slack


@triton.jit
def _tile(
    q_ptr,
    k_ptr,
    qb_ptr,
    kb_ptr,
    rows,
    row_ok,
    cols,
    col_ok,
    d,
    words,
    slack,
    MASKED: tl.constexpr,
    DOT: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Scores [BLOCK_B, BLOCK_N] with -inf outside the valid pairs, and the valid mask.

    The products run over d in chunks of BLOCK_K, each re-read from memory (L1/L2): a whole row
    of d held as one dot operand costs ~255 registers and spills at d = 64 (FMA dots: IEEE float32
    has no tensor-core path), and its shared-memory staging exceeds sm_80's at d = 256.
    """
    acc = tl.zeros([BLOCK_B, BLOCK_N], tl.float32 if DOT else tl.float64)
    for d0 in range(0, d, BLOCK_K):
        dd = d0 + tl.arange(0, BLOCK_K).to(tl.int64)
        dm = dd < d
        q = tl.load(
            q_ptr + rows[:, None] * d + dd[None, :], mask=row_ok[:, None] & dm[None, :], other=0.0
        )
        k = tl.load(
            k_ptr + cols[None, :] * d + dd[:, None], mask=col_ok[None, :] & dm[:, None], other=0.0
        )
        acc += _mm(q, k, DOT)
    valid = row_ok[:, None] & col_ok[None, :]
    if MASKED:
        valid = valid & _pairs(
            qb_ptr, kb_ptr, rows, row_ok, cols, col_ok, words, slack, BLOCK_B, BLOCK_N
        )
    return tl.where(valid, acc, float("-inf")), valid


@triton.jit
def _fwd_kernel(
    q_ptr,
    k_ptr,
    qb_ptr,
    kb_ptr,
    lse_ptr,
    B,
    N,
    d,
    words,
    slack,
    MASKED: tl.constexpr,
    DOT: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B).to(tl.int64)
    row_ok = rows < B
    acc_t = tl.float32 if DOT else tl.float64
    m = tl.full([BLOCK_B], float("-inf"), acc_t)
    s = tl.zeros([BLOCK_B], acc_t)
    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N).to(tl.int64)
        x, valid = _tile(
            q_ptr,
            k_ptr,
            qb_ptr,
            kb_ptr,
            rows,
            row_ok,
            cols,
            cols < N,
            d,
            words,
            slack,
            MASKED,
            DOT,
            BLOCK_B,
            BLOCK_N,
            BLOCK_K,
        )
        new_m = tl.maximum(m, tl.max(x, axis=1))
        ref = tl.where(new_m == float("-inf"), 0.0, new_m)  # rows with nothing valid yet
        keep = tl.where(m == float("-inf"), 0.0, tl.exp(m - ref))
        s = s * keep + tl.sum(tl.where(valid, tl.exp(x - ref[:, None]), 0.0), axis=1)
        m = new_m
    lse = tl.where(s > 0, m + tl.log(tl.where(s > 0, s, 1.0)), float("-inf"))
    tl.store(lse_ptr + rows, lse.to(lse_ptr.dtype.element_ty), mask=row_ok)


@triton.jit
def _probs(x, valid, lse_ptr, g_ptr, rows, row_ok):
    """P = g_b exp(x - lse_b) on the valid pairs (0 elsewhere and on rows with lse = -inf)."""
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=float("-inf")).to(x.dtype)
    g = tl.load(g_ptr + rows, mask=row_ok, other=0.0).to(x.dtype)
    live = lse != float("-inf")
    ref = tl.where(live, lse, 0.0)
    p = tl.where(valid & live[:, None], tl.exp(x - ref[:, None]), 0.0)
    return p * g[:, None]


@triton.jit
def _dq_kernel(
    q_ptr,
    k_ptr,
    qb_ptr,
    kb_ptr,
    lse_ptr,
    g_ptr,
    dq_ptr,
    B,
    N,
    d,
    words,
    slack,
    MASKED: tl.constexpr,
    DOT: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_O: tl.constexpr,
):
    """dq[rows, o-tile] of one (query block, output tile of BLOCK_O columns of d)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B).to(tl.int64)
    row_ok = rows < B
    oo = tl.program_id(1).to(tl.int64) * BLOCK_O + tl.arange(0, BLOCK_O).to(tl.int64)
    om = oo < d
    acc = tl.zeros([BLOCK_B, BLOCK_O], tl.float32 if DOT else tl.float64)
    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N).to(tl.int64)
        col_ok = cols < N
        x, valid = _tile(
            q_ptr,
            k_ptr,
            qb_ptr,
            kb_ptr,
            rows,
            row_ok,
            cols,
            col_ok,
            d,
            words,
            slack,
            MASKED,
            DOT,
            BLOCK_B,
            BLOCK_N,
            BLOCK_K,
        )
        k = tl.load(
            k_ptr + cols[:, None] * d + oo[None, :], mask=col_ok[:, None] & om[None, :], other=0.0
        )
        acc += _mm(_probs(x, valid, lse_ptr, g_ptr, rows, row_ok), k, DOT)
    tl.store(
        dq_ptr + rows[:, None] * d + oo[None, :],
        acc.to(dq_ptr.dtype.element_ty),
        mask=row_ok[:, None] & om[None, :],
    )


@triton.jit
def _dk_kernel(
    q_ptr,
    k_ptr,
    qb_ptr,
    kb_ptr,
    lse_ptr,
    g_ptr,
    dk_ptr,
    B,
    N,
    d,
    words,
    slack,
    MASKED: tl.constexpr,
    DOT: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_O: tl.constexpr,
):
    """dk[cols, o-tile] of one (key block, output tile of BLOCK_O columns of d)."""
    cols = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    col_ok = cols < N
    oo = tl.program_id(1).to(tl.int64) * BLOCK_O + tl.arange(0, BLOCK_O).to(tl.int64)
    om = oo < d
    acc = tl.zeros([BLOCK_N, BLOCK_O], tl.float32 if DOT else tl.float64)
    for b0 in range(0, B, BLOCK_B):
        rows = b0 + tl.arange(0, BLOCK_B).to(tl.int64)
        row_ok = rows < B
        x, valid = _tile(
            q_ptr,
            k_ptr,
            qb_ptr,
            kb_ptr,
            rows,
            row_ok,
            cols,
            col_ok,
            d,
            words,
            slack,
            MASKED,
            DOT,
            BLOCK_B,
            BLOCK_N,
            BLOCK_K,
        )
        q = tl.load(
            q_ptr + rows[:, None] * d + oo[None, :], mask=row_ok[:, None] & om[None, :], other=0.0
        )
        acc += _mm(tl.trans(_probs(x, valid, lse_ptr, g_ptr, rows, row_ok)), q, DOT)
    tl.store(
        dk_ptr + cols[:, None] * d + oo[None, :],
        acc.to(dk_ptr.dtype.element_ty),
        mask=col_ok[:, None] & om[None, :],
    )


def _config(q: torch.Tensor):
    if q.dtype not in _DTYPES:
        raise ValueError(f"triton dot_logsumexp: unsupported dtype {q.dtype}")
    d = q.shape[1]
    if d > MAX_D:
        raise ValueError(f"triton dot_logsumexp: d = {d} is above the kernel's MAX_D = {MAX_D}")
    dot = q.dtype != torch.float64
    block_d = max(16, triton.next_power_of_2(max(d, 1)))
    # tl.dot needs >= 16 per side; float64 broadcast products are [B, K, N] in registers.
    # 32 x 32 score tiles: 32 x 64 tiles reach 255 registers and spill (FMA dots in fp32).
    block_b, block_n = (32, 32) if dot else (16, 16)
    return dict(
        DOT=dot, BLOCK_B=block_b, BLOCK_N=block_n, BLOCK_K=min(block_d, _BLOCK_K), num_warps=_WARPS
    ), min(block_d, _BLOCK_O)


def _masks(q, q_bits, k_bits):
    if q_bits is None:
        dummy = torch.zeros(1, dtype=torch.int32, device=q.device)
        return dummy, dummy, 0, False
    return q_bits, k_bits, q_bits.shape[1], True


def forward(q, k, tau, q_bits, k_bits, slack):
    """lse [B] in q's dtype."""
    _check_device(q, k, q_bits, k_bits)
    cfg, _ = _config(q)
    B, N, d = q.shape[0], k.shape[0], q.shape[1]
    lse = torch.empty(B, dtype=q.dtype, device=q.device)
    if B == 0:
        return lse
    qb, kb, words, masked = _masks(q, q_bits, k_bits)
    grid = (triton.cdiv(B, cfg["BLOCK_B"]),)
    _fwd_kernel[grid](q * (1.0 / tau), k, qb, kb, lse, B, N, d, words, slack, MASKED=masked, **cfg)
    return lse


def backward(q, k, tau, q_bits, k_bits, slack, lse, g, need_q, need_k):
    """(dq [B, d], dk [N, d]); a gradient not needed is returned as zeros without a launch."""
    _check_device(q, k, q_bits, k_bits, lse, g)
    cfg, block_o = _config(q)
    B, N, d = q.shape[0], k.shape[0], q.shape[1]
    tiles_o = triton.cdiv(d, block_o)
    dq, dk = torch.zeros_like(q), torch.zeros_like(k)
    if B == 0 or N == 0:
        return dq, dk
    qb, kb, words, masked = _masks(q, q_bits, k_bits)
    args = (q * (1.0 / tau), k, qb, kb, lse, g)
    if need_q:
        _dq_kernel[(triton.cdiv(B, cfg["BLOCK_B"]), tiles_o)](
            *args, dq, B, N, d, words, slack, MASKED=masked, BLOCK_O=block_o, **cfg
        )
        dq.mul_(1.0 / tau)
    if need_k:  # the scaled queries already carry dx/dk = q / tau
        _dk_kernel[(triton.cdiv(N, cfg["BLOCK_N"]), tiles_o)](
            *args, dk, B, N, d, words, slack, MASKED=masked, BLOCK_O=block_o, **cfg
        )
    return dq, dk
