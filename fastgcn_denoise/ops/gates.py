"""Relaxed Bernoulli gates drawn from the counter-based uniforms: ``gate`` and ``l0_probability``.

With u = philox_uniform(seed, offset + n) for the flat index n of the logits phi (the stream the
propagation kernels draw their masks from; per-layer logits [K, E] use ``offset + k E + e``, as
``masked_spmm.layer_offset``) and the logistic noise L = log u - log(1 - u):

| kind               | z (forward)                                  | dz/dphi (backward)                     |
|--------------------|----------------------------------------------|----------------------------------------|
| concrete           | s = sigmoid((phi + L) / tau)                 | s (1 - s) / tau                        |
| concrete_st        | 1[phi + L > 0] = 1[u > sigmoid(-phi)]        | s (1 - s) / tau (straight-through)     |
| hard_concrete      | clamp(s (zeta - gamma) + gamma, 0, 1)        | (zeta - gamma) s (1 - s) / tau inside  |
| hard_concrete_mean | clamp(sigmoid(phi) (zeta - gamma) + gamma)   | (zeta - gamma) sigmoid'(phi) inside    |

``concrete`` is the binary concrete / Gumbel-sigmoid relaxation (Maddison et al. 2017; Jang et al.
2017); ``concrete_st`` its straight-through form, whose forward value is an exact
Bernoulli(sigmoid(phi)) sample (the ``arm_pos`` mask of the same u). ``hard_concrete`` is Louizos,
Welling & Kingma (2018), the gate of L0-SIGN (tau = beta = 2/3, gamma = -0.1, zeta = 1.1, natural
log as in the paper; the L0-SIGN code's log2 is not followed), and ``hard_concrete_mean`` its
deterministic test-time value. "inside": where the stretched value lies in (0, 1); the clamped
ends have zero gradient. The uniforms are regenerated in backward, never stored.

This file is the public op; the formulas live once per language: ``reference.gate_from_uniforms``
(PyTorch, the truth), ``csrc/gates.h`` (C++: this op's cpu kernel and the compiled propagation),
``kernels/gates.py`` (``gate_eval``, called by every Triton kernel that draws a gate).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..modes import GATE_ID, GATE_KINDS
from . import _library as library
from . import reference
from ._backend import BackendUnavailable, resolve_name

HARD_CONCRETE_DEFAULTS = {"temperature": 2.0 / 3.0, "gamma": -0.1, "zeta": 1.1}


def _cpu(logits, kind, seed, offset, tau, gamma, zeta, need_grad):
    from .. import _C

    if not hasattr(_C, "gate"):
        raise BackendUnavailable(
            "fastgcn_denoise._C has no gate (built before it was added); "
            "rebuild the extension (pip install -e .)"
        )
    from ._cpp_backend import _i64

    out = _C.gate(logits, kind, _i64(seed), _i64(offset), tau, gamma, zeta, need_grad)
    return out[0], (out[1] if need_grad else None)


def _triton(*args):
    from fastgcn_denoise.kernels.gates import gate as kernel

    return kernel(*args)


_IMPLS = {"reference": reference.gate, "cpu": _cpu, "triton": _triton}


def gate_kernel(device: torch.device, backend: str | None = None):
    """The raw primitive ``f(logits, kind_id, seed, offset, tau, gamma, zeta, need_grad)`` of the
    chosen backend, returning (z, dz/dphi | None); no autograd."""
    name = resolve_name(device, backend)
    if name not in _IMPLS:
        raise BackendUnavailable(f"gate has no {name!r} kernel; the triton backend covers GPUs")
    return _IMPLS[name]


def _gate_op(
    logits: torch.Tensor,
    kind: int,
    seed: int,
    offset: int,
    tau: float,
    gamma: float,
    zeta: float,
    need_grad: bool,
    backend: Optional[str],
) -> list[torch.Tensor]:
    """[z, dz/dphi (empty unless need_grad)]; the logits' values are checked here, where the data is."""
    if (
        logits.numel()
        and logits.device.type == "cpu"
        and not torch.isfinite(torch.stack(torch.aminmax(logits.reshape(-1)))).all()
    ):
        raise ValueError(
            f"logits has non-finite values (first at flat index "
            f"{int((~torch.isfinite(logits)).reshape(-1).nonzero()[0])})"
        )
    z, dz = gate_kernel(logits.device, backend)(
        logits, kind, library.uint64(seed), library.uint64(offset), tau, gamma, zeta, need_grad
    )
    return [z, dz if need_grad else library.empty(logits)]


def _gate_fake(logits, kind, seed, offset, tau, gamma, zeta, need_grad, backend):
    return [
        torch.empty_like(logits),
        torch.empty_like(logits) if need_grad else library.empty(logits),
    ]


def _setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])  # dz [n]: the gate's own size, as small as the logits


def _grad(ctx, grads):
    (dz,) = ctx.saved_tensors
    return grads[0] * dz, None, None, None, None, None, None, None, None


_forward = library.define("gate", _gate_op, _gate_fake)
library.differentiable(_forward, _grad, _setup)


def _check_params(kind: str, temperature: float, gamma: float, zeta: float) -> None:
    if kind not in GATE_ID:
        raise ValueError(f"unknown gate kind {kind!r}; choose one of {', '.join(GATE_KINDS)}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"gate temperature must be a finite number > 0, got {temperature}")
    if kind.startswith("hard_concrete") and not (gamma < 0 < 1 < zeta):
        raise ValueError(
            f"hard concrete needs gamma < 0 and zeta > 1 (a stretch around [0, 1]), "
            f"got gamma={gamma}, zeta={zeta}"
        )


def gate(
    logits: torch.Tensor,
    kind: str = "hard_concrete",
    seed: int = 0,
    offset: int = 0,
    temperature: float = 2.0 / 3.0,
    gamma: float = -0.1,
    zeta: float = 1.1,
    backend: str | None = None,
) -> torch.Tensor:
    """Gates z, the shape and dtype of ``logits``, differentiable in the logits (module docstring).

    Args:
        logits: float32/float64 tensor of any shape; flat index n uses counter ``offset + n``.
        kind: ``concrete``, ``concrete_st``, ``hard_concrete`` or ``hard_concrete_mean``.
        seed, offset: the Philox key and counter base.
        temperature: tau (hard concrete's beta); gamma < 0 < 1 < zeta: the hard concrete stretch.
        backend: force a backend (default: FASTGCN_BACKEND or the best for the device).
    """
    _check_params(kind, temperature, gamma, zeta)
    if not isinstance(logits, torch.Tensor) or logits.dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"logits must be a float32 or float64 tensor, got "
            f"{logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__}"
        )
    z, _ = _forward(
        logits.contiguous(),
        GATE_ID[kind],
        library.int64_bits(seed),
        library.int64_bits(offset),
        float(temperature),
        float(gamma),
        float(zeta),
        logits.requires_grad and torch.is_grad_enabled(),
        backend,
    )
    return z


def l0_probability(
    logits: torch.Tensor,
    kind: str = "hard_concrete",
    temperature: float = 2.0 / 3.0,
    gamma: float = -0.1,
    zeta: float = 1.1,
) -> torch.Tensor:
    """P(z != 0) per gate, differentiable: the expected L0 norm's summands.

    Hard concrete: sigmoid(phi - tau log(-gamma / zeta)) (Louizos et al. 2018, Eq. 12);
    concrete kinds: P(s > 0) = 1 for the relaxed gate, so the Bernoulli keep probability
    sigmoid(phi) is used (the expected number of edges the straight-through mask keeps).
    """
    _check_params(kind, temperature, gamma, zeta)
    if kind.startswith("hard_concrete"):
        return torch.sigmoid(logits - temperature * math.log(-gamma / zeta))
    return torch.sigmoid(logits)


__all__ = ["gate", "gate_kernel", "l0_probability", "HARD_CONCRETE_DEFAULTS"]
