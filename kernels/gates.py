"""Triton backend of ``ops.gate``, and the gate formulas every Triton kernel that draws a relaxed
Bernoulli gate calls (``gate_eval``; the masked propagation, L0-SIGN's all-pairs kernel).

Semantics and kind numbering: ``fastgcn_denoise/ops/reference.py`` (``gate_from_uniforms``).
The standalone kernel is element-wise: one program per ``BLOCK`` logits of the flattened tensor,
flat index n drawing ``tl.rand(seed, offset + n)`` (the propagation kernels' stream).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgcn_denoise.kernels._common import _acc_dtype, _check_device, _i64, _sigmoid
from fastgcn_denoise.modes import GATE_ID, GATE_U_EPS

_BLOCK = 1024
_CONCRETE, _CONCRETE_ST, _HARD_CONCRETE = (
    tl.constexpr(GATE_ID[k]) for k in ("concrete", "concrete_st", "hard_concrete")
)
_U_EPS = tl.constexpr(GATE_U_EPS)


@triton.jit
def gate_eval(KIND: tl.constexpr, phi, u, tau, gamma, zeta):
    """(z, dz/dphi) of gate KIND in phi's dtype; u float32 uniforms (unused by the mean kind)."""
    if KIND == _CONCRETE or KIND == _CONCRETE_ST or KIND == _HARD_CONCRETE:
        uc = tl.minimum(tl.maximum(u, _U_EPS), 1.0 - _U_EPS).to(phi.dtype)
        noise = tl.log(uc) - tl.log(1.0 - uc)
        s = _sigmoid((phi + noise) / tau)
        ds = s * (1.0 - s) / tau
        if KIND == _CONCRETE:
            z = s
        elif KIND == _CONCRETE_ST:  # 1[u > sigmoid(-phi)]: arm_pos's comparison
            z = (u.to(phi.dtype) > _sigmoid(-phi)).to(phi.dtype)
        else:
            st = s * (zeta - gamma) + gamma
            z = tl.minimum(tl.maximum(st, 0.0), 1.0)
            ds = tl.where((st > 0.0) & (st < 1.0), (zeta - gamma) * ds, 0.0)
    else:  # hard_concrete_mean
        p = _sigmoid(phi)
        st = p * (zeta - gamma) + gamma
        z = tl.minimum(tl.maximum(st, 0.0), 1.0)
        ds = tl.where((st > 0.0) & (st < 1.0), (zeta - gamma) * p * (1.0 - p), 0.0)
    return z, ds


@triton.jit(do_not_specialize=["seed", "offset"])
def _gate_kernel(
    logits_ptr,
    z_ptr,
    dz_ptr,
    seed,
    offset,
    n,
    tau,
    gamma,
    zeta,
    KIND: tl.constexpr,
    NEED_GRAD: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    valid = idx < n
    u = tl.rand(seed, offset.to(tl.int64) + idx)
    phi = tl.load(logits_ptr + idx, mask=valid, other=0.0).to(COMPUTE)
    z, dz = gate_eval(KIND, phi, u, tau, gamma, zeta)
    tl.store(z_ptr + idx, z.to(z_ptr.dtype.element_ty), mask=valid)
    if NEED_GRAD:
        tl.store(dz_ptr + idx, dz.to(dz_ptr.dtype.element_ty), mask=valid)


def gate(logits, kind, seed, offset, temperature, gamma, zeta, need_grad):
    """(z, dz/dphi | None), each the shape and dtype of ``logits`` (see ops.gate)."""
    compute = _acc_dtype(logits.dtype)
    logits = logits.contiguous()
    z = torch.empty_like(logits)
    dz = torch.empty_like(logits) if need_grad else None
    _check_device(logits)
    n = logits.numel()
    if n:
        _gate_kernel[(triton.cdiv(n, _BLOCK),)](
            logits,
            z,
            z if dz is None else dz,
            _i64(seed),
            _i64(offset),
            n,
            float(temperature),
            float(gamma),
            float(zeta),
            KIND=int(kind),
            NEED_GRAD=bool(need_grad),
            COMPUTE=compute,
            BLOCK=_BLOCK,
        )
    return z, dz
