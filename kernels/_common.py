"""Helpers shared by the Triton kernel modules: dtypes, device checks, 64-bit arguments, sigmoid."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _acc_dtype(dtype: torch.dtype):
    """The kernels' accumulation (and mask) dtype for tensors of ``dtype``."""
    if dtype not in _DTYPES:
        raise ValueError(
            f"triton backend: unsupported dtype {dtype} (float16, bfloat16, float32 or float64)"
        )
    return tl.float64 if dtype == torch.float64 else tl.float32


def _check_device(*tensors):
    for t in tensors:
        interpret = os.environ.get("TRITON_INTERPRET", "0") == "1"
        if t is not None and t.device.type != "cuda" and not interpret:
            raise ValueError(
                f"triton backend: tensor on {t.device}; it needs CUDA tensors "
                "(or TRITON_INTERPRET=1 for CPU tensors)"
            )


def _i64(v: int) -> int:
    """A 64-bit seed/counter as the signed int64 with the same bits (Triton's argument types)."""
    v = int(v) & 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


@triton.jit
def _sigmoid(phi):
    # Evaluated in float64 and rounded once: the float32 result is then within torch.sigmoid's own
    # rounding error of the reference (a float32 1 / (1 + exp(-x)) can be a further ulp off).
    return tl.sigmoid(phi.to(tl.float64)).to(phi.dtype)
