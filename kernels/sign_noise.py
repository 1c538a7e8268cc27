"""Triton backend of ``ops.sign_noise`` (semantics there): one program per row, the views in
turn, the uniforms drawn in registers by ``tl.rand4x`` (Philox, the reference's bits; its four
words interleaved: column c is word c % 4 of counter c // 4)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgcn_denoise.kernels._common import _acc_dtype, _check_device, _i64


@triton.jit(do_not_specialize=["seed"])
def _sign_noise_kernel(
    clean_ptr,
    prop_ptr,
    nodes_ptr,
    offsets_ptr,
    out_ptr,
    seed,
    eps,
    n,
    d,
    q,
    views,
    HAS_PROP: tl.constexpr,
    HAS_NODES: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    r = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D).to(tl.int64)
    valid = cols < d
    node = tl.load(nodes_ptr + r) if HAS_NODES else r
    clean = tl.load(clean_ptr + r * d + cols, mask=valid, other=0.0).to(COMPUTE)
    groups = tl.arange(0, BLOCK_D // 4).to(tl.int64)
    for v in range(views):
        u0, u1, u2, u3 = tl.rand4x(seed, tl.load(offsets_ptr + v) + node * q + groups)
        u = tl.interleave(tl.interleave(u0, u2), tl.interleave(u1, u3))
        u = tl.where(valid, u, 0.0).to(COMPUTE)
        scale = eps / tl.maximum(tl.sqrt(tl.sum(u * u, axis=0)), 1e-12)
        at = (v * n + r) * d + cols
        if HAS_PROP:
            base = tl.load(prop_ptr + at, mask=valid, other=0.0).to(COMPUTE)
        else:
            base = tl.zeros([BLOCK_D], dtype=COMPUTE)
        s = clean + base
        sign = (s > 0).to(COMPUTE) - (s < 0).to(COMPUTE)
        tl.store(out_ptr + at, (base + sign * (u * scale)).to(out_ptr.dtype.element_ty), mask=valid)


def sign_noise(clean, prop, nodes, offsets, seed, eps):
    """[V, n, d] (see ops.sign_noise); ``offsets`` an int64 tensor [V] on clean's device."""
    n, d = clean.shape
    views = offsets.numel()
    _check_device(clean, prop, nodes, offsets)
    out = torch.empty(views, n, d, dtype=clean.dtype, device=clean.device)
    if n and d:
        _sign_noise_kernel[(n,)](
            clean,
            out if prop is None else prop,
            offsets if nodes is None else nodes,
            offsets,
            out,
            _i64(seed),
            float(eps),
            n,
            d,
            (d + 3) // 4,
            views,
            HAS_PROP=prop is not None,
            HAS_NODES=nodes is not None,
            COMPUTE=_acc_dtype(clean.dtype),
            BLOCK_D=max(4, triton.next_power_of_2(d)),
        )
    return out
