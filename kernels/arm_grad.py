"""Triton backend of ``ops.arm_grad``: the ARM / DisARM logit gradient, element-wise.

One program per ``BLOCK`` logits of the flattened [K, E] (or [E]) tensor; the uniform of flat
index n is ``tl.rand(seed, offset + n)`` (int64 counters, the stream of the propagation kernels).
The masks use the propagation kernel's own sigmoid (``kernels.masked_spmm._sigmoid``), so they are
the masks the arm_pos / arm_neg passes drew. The loss difference is read from device memory (a
0-d tensor from the loss: no host sync).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgcn_denoise.kernels.masked_spmm import _acc_dtype, _check_device, _i64, _sigmoid

_BLOCK = 1024


@triton.jit(do_not_specialize=["seed", "offset"])
def _arm_grad_kernel(
    logits_ptr,
    df_ptr,
    out_ptr,
    seed,
    offset,
    n,
    DISARM: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    valid = idx < n
    u = tl.rand(seed, offset.to(tl.int64) + idx).to(COMPUTE)
    df = tl.load(df_ptr).to(COMPUTE)
    if DISARM:
        phi = tl.load(logits_ptr + idx, mask=valid, other=0.0).to(COMPUTE)
        p = _sigmoid(phi)
        q = _sigmoid(-phi)
        # b1 - b2 with b1 = 1[u > sigmoid(-phi)] (arm_pos), b2 = 1[u < sigmoid(phi)] (arm_neg)
        sign = (u > q).to(COMPUTE) - (u < p).to(COMPUTE)
        g = (df * 0.5) * sign * tl.maximum(p, q)
    else:
        g = df * (u - 0.5)
    tl.store(out_ptr + idx, g.to(out_ptr.dtype.element_ty), mask=valid)


def arm_grad(logits: torch.Tensor, seed: int, offset: int, df, disarm: bool) -> torch.Tensor:
    """Gradient estimate, shape/dtype of ``logits``; ``df`` = f_pos - f_neg (float or 0-d tensor)."""
    compute = _acc_dtype(logits.dtype)
    logits = logits.contiguous()
    out = torch.empty_like(logits)
    df = torch.as_tensor(df, dtype=logits.dtype, device=logits.device).reshape(1)
    _check_device(logits, df)
    n = logits.numel()
    if n == 0:
        return out
    _arm_grad_kernel[(triton.cdiv(n, _BLOCK),)](
        logits,
        df,
        out,
        _i64(seed),
        _i64(offset),
        n,
        DISARM=bool(disarm),
        COMPUTE=compute,
        BLOCK=_BLOCK,
    )
    return out
