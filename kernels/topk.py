"""Fused masked top-k for full-ranking evaluation: scores, exclusion mask and top-k in one pass.

For a batch of users, the top ``k`` items by ``user_emb[user] . item_emb[item]``, the items of
the user's exclusion CSR row (training, validation, ...) set to -inf, without writing the [B, I]
score matrix. The order is the one of ``fastgcn_denoise.tasks.evaluation.top_items``: higher score first,
ties to the lower item id, NaN ranked as -inf, +0.0 == -0.0, scores compared in float32.

Design (two steps):

1. ``_masked_topk_kernel``, grid (user blocks of ``BLOCK_U``, item splits). A program owns
   ``BLOCK_U`` users and one contiguous range of items (a split: ``tiles_per_split`` tiles of
   ``BLOCK_I`` items). Per tile it computes the [BLOCK_U, BLOCK_I] scores with ``tl.dot`` over d
   tiles (IEEE float32, never TF32; float64 embeddings use exact rank-1 updates in float64),
   rounds them to the embedding dtype and then to float32 (what ``(u @ i.T).float()`` does), and
   masks the excluded items. Each user walks a pointer through its sorted exclusion row: a binary
   search puts it at the split's first item, then each tile consumes the row entries below the
   tile's end (a loop that runs max-over-the-block of the excluded items in the tile). Every
   score becomes a distinct int64 sort key, the float32 bits made monotonic in the high word and
   ``I - 1 - item`` in the low word (``eval._sort_keys``): one integer order is exactly
   (score desc, item asc). The program keeps a running top-``KP`` (KP = next power of two >= k)
   of keys per user in registers, sorted descending. When some key of the tile beats a user's
   current KP-th key, the tile is bitonic-sorted ascending, cut to its top KP, and merged: the
   element-wise max of the two is bitonic and holds the union's top KP, and one bitonic merge
   sorts it. (Own compare-exchange on max-reductions over an axis of 2: ``tl.topk``'s xor
   reductions are ~10x slower under the interpreter.)
   It writes its KP keys per user to ``cand [B, splits, KP]`` (INT64_MIN pads splits with
   fewer than KP items).
2. ``torch.topk`` of the int64 keys over ``[B, splits * KP]`` merges the splits (the keys are
   distinct, so the result is exact and ordered), and the keys are decoded back into item ids
   and float32 scores.

Memory: B x splits x KP x 8 bytes of candidates (splits is sized to fill the GPU, ~4 programs
per SM), instead of the B x I float32 scores plus their sort. k is limited to ``MAX_K``.
On CPU tensors the kernel runs only under ``TRITON_INTERPRET=1`` (tests); every vector load is
masked.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgcn_denoise.kernels.masked_spmm import _check_device

MAX_K = 256
_BLOCK_U = 16  # users per program (tl.dot needs >= 16 rows)
_MIN_BLOCK_I = 64  # items per tile (at least KP)
_MAX_BLOCK_D = 64
_PROGRAMS_PER_SM = 4
# Warps by KP, from sm_90/sm_80 ptxas reports (tools/aot_compile.py, Triton 3.9): 8 warps hold
# KP = 64..128 without spills
# (fp32 / bf16 KP = 128: 186 / 211 registers on sm_90); KP = 256 (k > 128, not a production size)
# still spills with 8 warps.
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INT64_MIN = tl.constexpr(-(2**63))
_NO_ITEM = tl.constexpr(2**31)  # past any item id (I < 2^31): "row exhausted"


@triton.jit
def _exchange(
    x, ROWS: tl.constexpr, N: tl.constexpr, B: tl.constexpr, S: tl.constexpr, DESC: tl.constexpr
):
    """One bitonic compare-exchange step on each row of int64 ``x [ROWS, N]``.

    Orders each pair (i, i + 2^B), i with bit B clear: in the DESC direction where bit S of i is
    0, in the other where it is 1 (S > B; S >= log2 N: all pairs in the DESC direction). The
    pairs are split out with max-reductions over an axis of 2 (cheap in the interpreter too).
    """
    C: tl.constexpr = 1 << B
    A: tl.constexpr = N // (2 * C)
    y = tl.reshape(x, [ROWS, A, 2, C])
    half = tl.arange(0, 2)[None, None, :, None]
    first = tl.max(tl.where(half == 0, y, _INT64_MIN), axis=2)
    second = tl.max(tl.where(half == 1, y, _INT64_MIN), axis=2)
    hi = tl.maximum(first, second)
    lo = tl.minimum(first, second)
    # Bit S of i is bit S - B - 1 of the block index a (S > B).
    up = ((tl.arange(0, A) >> (S - B - 1)) & 1)[None, :, None] == 0
    desc = up == DESC
    y = tl.where(
        half == 0, tl.where(desc, hi, lo)[:, :, None, :], tl.where(desc, lo, hi)[:, :, None, :]
    )
    return tl.reshape(y, [ROWS, N])


@triton.jit
def _bitonic_sort(x, ROWS: tl.constexpr, N: tl.constexpr, LOG_N: tl.constexpr, DESC: tl.constexpr):
    """Sort each row of int64 ``x [ROWS, N]`` (N = 2^LOG_N), descending if DESC."""
    for s in tl.static_range(1, LOG_N + 1):
        for j in tl.static_range(0, s):
            x = _exchange(x, ROWS, N, s - 1 - j, s, DESC)
    return x


@triton.jit
def _bitonic_merge_desc(x, ROWS: tl.constexpr, N: tl.constexpr, LOG_N: tl.constexpr):
    """Sort each row of ``x [ROWS, N]`` descending, given that it is bitonic."""
    for j in tl.static_range(0, LOG_N):
        x = _exchange(x, ROWS, N, LOG_N - 1 - j, LOG_N, True)
    return x


@triton.jit
def _masked_topk_kernel(
    users_ptr,
    user_emb_ptr,
    item_emb_ptr,
    rowptr_ptr,
    col_ptr,
    cand_ptr,
    num_batch,
    num_items,
    d,
    tiles_per_split,
    num_splits,
    search_steps,
    DOT: tl.constexpr,
    BLOCK_U: tl.constexpr,
    BLOCK_I: tl.constexpr,
    BLOCK_D: tl.constexpr,
    KP: tl.constexpr,
    LOG_KP: tl.constexpr,
    LOG_I: tl.constexpr,
):
    split = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0).to(tl.int64) * BLOCK_U + tl.arange(0, BLOCK_U).to(tl.int64)
    row_ok = rows < num_batch
    user = tl.load(users_ptr + rows, mask=row_ok, other=0)
    start = tl.load(rowptr_ptr + user, mask=row_ok, other=0)
    end = tl.load(rowptr_ptr + user + 1, mask=row_ok, other=0)
    i_begin = split * tiles_per_split * BLOCK_I
    i_end = tl.minimum(i_begin + tiles_per_split * BLOCK_I, num_items)

    # Each user's first exclusion entry >= i_begin (rows sorted ascending; lower bound).
    lo = start
    hi = end
    for _ in range(search_steps):
        active = lo < hi
        mid = (lo + hi) // 2
        c = tl.load(col_ptr + mid, mask=active, other=0)
        right = active & (c < i_begin)
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(active & (c >= i_begin), mid, hi)
    ptr = lo
    nxt = tl.load(col_ptr + ptr, mask=ptr < end, other=_NO_ITEM)

    dd = tl.arange(0, BLOCK_D).to(tl.int64)
    best = tl.full([BLOCK_U, KP], _INT64_MIN, tl.int64)
    for t0 in range(i_begin, i_end, BLOCK_I):
        items = t0 + tl.arange(0, BLOCK_I).to(tl.int64)
        item_ok = items < num_items
        if DOT:
            acc = tl.zeros([BLOCK_U, BLOCK_I], tl.float32)
            for d0 in range(0, d, BLOCK_D):
                dm = (d0 + dd) < d
                a = tl.load(
                    user_emb_ptr + user[:, None] * d + d0 + dd[None, :],
                    mask=row_ok[:, None] & dm[None, :],
                    other=0.0,
                )
                b = tl.load(
                    item_emb_ptr + items[None, :] * d + d0 + dd[:, None],
                    mask=item_ok[None, :] & dm[:, None],
                    other=0.0,
                )
                acc = tl.dot(a, b, acc, input_precision="ieee")
        else:  # float64: rank-1 updates (exact products, float64 sums)
            acc = tl.zeros([BLOCK_U, BLOCK_I], tl.float64)
            for j in range(0, d):
                a = tl.load(user_emb_ptr + user * d + j, mask=row_ok, other=0.0)
                b = tl.load(item_emb_ptr + items * d + j, mask=item_ok, other=0.0)
                acc += a.to(tl.float64)[:, None] * b.to(tl.float64)[None, :]
        # The embedding dtype's own rounding, then float32 (the precision of the comparisons).
        s = acc.to(user_emb_ptr.dtype.element_ty).to(tl.float32)

        # Exclusions inside this tile: consume each user's row entries below the tile's end.
        t_end = t0 + BLOCK_I
        while tl.max((nxt < t_end).to(tl.int32), axis=0) > 0:
            here = nxt < t_end
            s = tl.where(here[:, None] & (nxt[:, None] == items[None, :]), float("-inf"), s)
            ptr = tl.where(here, ptr + 1, ptr)
            nxt = tl.load(col_ptr + ptr, mask=ptr < end, other=_NO_ITEM)

        # Sort keys: NaN -> -inf, -0.0 -> +0.0, sign-magnitude bits -> monotonic int32.
        s = tl.where(s != s, float("-inf"), s)
        bits = s.to(tl.int32, bitcast=True)
        bits = tl.where(bits == -2147483648, 0, bits)
        bits = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
        key = (bits.to(tl.int64) << 32) | (num_items - 1 - items)[None, :]
        key = tl.where(item_ok[None, :], key, _INT64_MIN)

        # Merge only when some user's KP-th best is beaten (rare after the first tiles).
        beaten = tl.max(key, axis=1) > tl.min(best, axis=1)
        if tl.max(beaten.to(tl.int32), axis=0) > 0:
            if KP == 1:
                best = tl.maximum(best, tl.max(key, axis=1, keep_dims=True))
            else:
                # The tile's top KP, ascending: the last KP of the ascending sorted tile.
                asc = _bitonic_sort(key, BLOCK_U, BLOCK_I, LOG_I, False)
                if BLOCK_I > KP:
                    chunk = tl.arange(0, BLOCK_I // KP)[None, :, None]
                    top = tl.max(
                        tl.where(
                            chunk == BLOCK_I // KP - 1,
                            tl.reshape(asc, [BLOCK_U, BLOCK_I // KP, KP]),
                            _INT64_MIN,
                        ),
                        axis=1,
                    )
                else:
                    top = asc
                # best (descending) against the tile (ascending): the element-wise max is a
                # bitonic sequence holding the top KP of the union; one merge sorts it.
                best = _bitonic_merge_desc(tl.maximum(best, top), BLOCK_U, KP, LOG_KP)

    slot = tl.arange(0, KP).to(tl.int64)
    tl.store(
        cand_ptr + (rows[:, None] * num_splits + split) * KP + slot[None, :],
        best,
        mask=row_ok[:, None],
    )


def _warps(kp: int) -> int:
    return 4 if kp < 64 else 8 if kp <= 128 else 16


def _num_programs_target(device: torch.device) -> int:
    if device.type == "cuda":
        return _PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def decode_keys(keys: torch.Tensor, num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(items int64, scores float32) of int64 sort keys (the inverse of ``eval._sort_keys``)."""
    items = (num_items - 1) - (keys & 0xFFFFFFFF)
    hi = (keys >> 32).to(torch.int32)
    bits = torch.where(hi < 0, hi ^ 0x7FFFFFFF, hi)
    return items, bits.view(torch.float32)


def masked_topk(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    users: torch.Tensor,
    rowptr: torch.Tensor,
    col: torch.Tensor,
    k: int,
    *,
    max_row: int | None = None,
    splits: int | None = None,
    block_items: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each user's top ``min(k, I)`` items with the exclusion row masked, best first.

    Args:
        user_emb [U, d], item_emb [I, d]: embeddings (same floating dtype and device).
        users int64 [B]: the users (rows of ``user_emb`` and of the exclusion CSR).
        rowptr int64 [>= U+1], col int64: exclusion CSR, items ascending within a row
            (duplicates allowed); an empty ``col`` excludes nothing.
        k: 1 <= k <= ``MAX_K``.
        max_row: the longest exclusion row (computed here, one host sync, when None).
        splits, block_items: override the item splits per user block and the tile width (tests).

    Returns:
        (items int64 [B, min(k, I)], scores float32 [B, min(k, I)]): the order of
        ``eval.top_items`` on the masked float32 scores; scores are -inf for masked items and NaN.
    """
    if user_emb.dtype not in _DTYPES or item_emb.dtype != user_emb.dtype:
        raise ValueError(
            f"masked_topk: embeddings must share a float dtype, got {user_emb.dtype} "
            f"and {item_emb.dtype}"
        )
    if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.shape[1] != item_emb.shape[1]:
        raise ValueError(
            f"masked_topk: embeddings [U, d] and [I, d] expected, got "
            f"{tuple(user_emb.shape)} and {tuple(item_emb.shape)}"
        )
    num_items, d = item_emb.shape
    if not 0 < num_items < 2**31:
        raise ValueError(f"masked_topk: need 0 < num_items < 2^31, got {num_items}")
    k = min(int(k), num_items)
    if not 1 <= k <= MAX_K:
        raise ValueError(f"masked_topk: k must be in [1, {MAX_K}], got {k}")
    user_emb, item_emb = user_emb.contiguous(), item_emb.contiguous()
    users = users.to(torch.int64).contiguous()
    rowptr = rowptr.to(torch.int64).contiguous()
    col = col.to(torch.int64).contiguous()
    _check_device(user_emb, item_emb, users, rowptr, col)
    num_batch, device = users.shape[0], user_emb.device
    if num_batch == 0:
        return (
            torch.empty(0, k, dtype=torch.int64, device=device),
            torch.empty(0, k, dtype=torch.float32, device=device),
        )
    if col.shape[0] == 0:  # the kernel's loads need a non-empty buffer
        col = torch.zeros(1, dtype=torch.int64, device=device)
        max_row = 0
    if max_row is None:
        max_row = int((rowptr[1:] - rowptr[:-1]).max()) if rowptr.shape[0] > 1 else 0
    # KP = 32 runs as KP = 64 (a tile of BLOCK_I = KP items needs no cut to its top KP): the cut
    # spills at KP = 32 on sm_90 with 4 or 8 warps (fp32: 168 / 128 registers, 28-36 B).
    kp = max(triton.next_power_of_2(k), 64) if k > 16 else triton.next_power_of_2(k)
    block_i = max(kp, triton.next_power_of_2(block_items or _MIN_BLOCK_I))
    block_d = max(16, min(triton.next_power_of_2(max(d, 1)), _MAX_BLOCK_D))
    user_blocks = triton.cdiv(num_batch, _BLOCK_U)
    tiles = triton.cdiv(num_items, block_i)
    if splits is None:
        splits = triton.cdiv(_num_programs_target(device), user_blocks)
    tiles_per_split = triton.cdiv(tiles, max(1, min(int(splits), tiles)))
    splits = triton.cdiv(tiles, tiles_per_split)
    cand = torch.empty(num_batch, splits, kp, dtype=torch.int64, device=device)
    _masked_topk_kernel[(user_blocks, splits)](
        users,
        user_emb,
        item_emb,
        rowptr,
        col,
        cand,
        num_batch,
        num_items,
        d,
        tiles_per_split,
        splits,
        int(max_row).bit_length(),
        DOT=user_emb.dtype != torch.float64,
        BLOCK_U=_BLOCK_U,
        BLOCK_I=block_i,
        BLOCK_D=block_d,
        KP=kp,
        LOG_KP=kp.bit_length() - 1,
        LOG_I=block_i.bit_length() - 1,
        num_warps=_warps(kp),
    )
    keys = cand.view(num_batch, splits * kp)
    if splits * kp > k or splits > 1:
        keys = keys.topk(k, dim=1).values
    return decode_keys(keys, num_items)
