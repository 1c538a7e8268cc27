"""ARM / DisARM gradient of the mask logits (DESIGN.md, "SGCN"; SGCN paper Eq. 11).

For Bernoulli masks z ~ Bern(sigmoid(phi)) and a loss f, with one uniform u per logit,

    ARM    (Yin & Zhou 2019):  g = (f1 - f2) (u - 1/2)
    DisARM (Dong et al. 2020): g = 1/2 (f1 - f2) (b1 - b2) sigmoid(|phi|)

where b1 = 1[u > sigmoid(-phi)] (the ``arm_pos`` mask), b2 = 1[u < sigmoid(phi)] (``arm_neg``),
f1 = f(b1), f2 = f(b2); (b1 - b2) is the design notes' 1[b1 != b2] (-1)^{b2}. Both are unbiased
for d/dphi E_z[f(z)] (checked by enumeration in tests/test_arm_grad.py); DisARM only differs where
the two masks disagree and has lower variance. The L0 term beta * sum sigmoid(phi) is
differentiable and left to autograd.

The uniforms are not stored: they are regenerated from the Philox stream the propagation drew
them from. Logits [K, E] (one row per layer) use counter ``offset + k * E + e``
(``masked_spmm.layer_offset``), i.e. ``offset + flat index``; [E] uses ``offset + e``.
Backends: ``reference`` (torch), ``cpu`` (``_C.arm_grad``, OpenMP), ``triton``
(kernels/arm_grad.py). Each computes the masks the way its own propagation kernel does (cpu and
reference from torch's sigmoid, triton in-kernel), so a gradient uses exactly the masks its
forward passes used.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch

from ..modes import MODE_ID
from . import _library as library
from . import reference
from ._backend import BackendUnavailable, resolve_name

ESTIMATORS = ("arm", "disarm")


def _reference(logits, seed, offset, df, disarm):
    counters = torch.arange(logits.numel(), dtype=torch.int64, device=logits.device) + int(offset)
    u = reference.philox_uniform(seed, counters).reshape(logits.shape)
    df = df.to(logits.dtype) if isinstance(df, torch.Tensor) else df
    if not disarm:
        return df * (u.to(logits.dtype) - 0.5)
    b1 = reference.mask_from_uniforms(MODE_ID["arm_pos"], logits, u)
    b2 = reference.mask_from_uniforms(MODE_ID["arm_neg"], logits, u)
    # sigmoid(|phi|) = max(sigmoid(phi), sigmoid(-phi)): the same two values the masks compare to.
    s = torch.maximum(torch.sigmoid(logits), torch.sigmoid(-logits))
    return (df * 0.5) * (b1 - b2) * s


def _cpu(logits, seed, offset, df, disarm):
    from .. import _C

    if not hasattr(_C, "arm_grad"):
        raise BackendUnavailable(
            "fastgcn_denoise._C has no arm_grad (built before it was added); "
            "rebuild the extension (pip install -e . or make build)"
        )
    from ._cpp_backend import _i64

    p = q = None
    if disarm:  # the cpu propagation's masks compare u with torch's sigmoids: use the same ones
        p, q = torch.sigmoid(logits), torch.sigmoid(-logits)
    return _C.arm_grad(logits, p, q, _i64(seed), _i64(offset), df, disarm)


def _triton(logits, seed, offset, df, disarm):
    from fastgcn_denoise.kernels.arm_grad import arm_grad as kernel

    return kernel(logits, seed, offset, df, disarm)


_IMPLS = {"reference": _reference, "cpu": _cpu, "triton": _triton}


def _loss_difference(f_pos, f_neg, device) -> torch.Tensor:
    """f_pos - f_neg as a detached 0-d tensor (on the logits' device when the losses are there:
    no sync; a CPU tensor for Python floats)."""
    vals = []
    for name, f in (("f_pos", f_pos), ("f_neg", f_neg)):
        if isinstance(f, torch.Tensor):
            if f.numel() != 1 or not f.is_floating_point():
                raise ValueError(
                    f"{name} must be a float or a 1-element float tensor (a loss), "
                    f"got a {f.dtype} tensor of shape {tuple(f.shape)}"
                )
            if f.device.type != "cpu" and f.device != device:
                raise ValueError(f"{name} is on {f.device} but the logits are on {device}")
            f = f.detach().reshape(()).to(torch.float64)
        elif not isinstance(f, numbers.Real) or isinstance(f, bool):
            raise ValueError(f"{name} must be a float or a 0-d tensor, got {type(f).__name__}")
        elif not math.isfinite(float(f)):
            raise ValueError(f"{name} = {f} is not finite")
        vals.append(f)
    df = vals[0] - vals[1]
    return df if isinstance(df, torch.Tensor) else torch.tensor(float(df), dtype=torch.float64)


def _arm_grad_op(
    logits: torch.Tensor,
    seed: int,
    offset: int,
    df: torch.Tensor,
    disarm: bool,
    backend: Optional[str],
) -> torch.Tensor:
    # min/max are NaN or inf exactly when some value is: one reduction instead of an isfinite
    # pass over all K x E logits every step; the search for the first bad one only on failure.
    if (
        logits.device.type == "cpu"
        and logits.numel()
        and not torch.isfinite(torch.stack(torch.aminmax(logits))).all()
    ):
        raise ValueError(
            f"logits has non-finite values (first at flat index "
            f"{int((~torch.isfinite(logits)).reshape(-1).nonzero()[0])})"
        )
    name = resolve_name(logits.device, backend)
    if name not in _IMPLS:
        raise BackendUnavailable(f"arm_grad has no {name!r} kernel; the triton backend covers GPUs")
    if df.device.type == "cpu":
        df = float(df)  # a host scalar for the kernels (no device sync: it is on the host)
    return _IMPLS[name](
        logits.contiguous(), library.uint64(seed), library.uint64(offset), df, disarm
    )


_op = library.define(
    "arm_grad",
    _arm_grad_op,
    lambda logits, seed, offset, df, disarm, backend: torch.empty_like(logits),
)


def arm_grad(
    logits: torch.Tensor,
    seed: int,
    offset: int,
    f_pos,
    f_neg,
    estimator: str = "arm",
    backend: str | None = None,
) -> torch.Tensor:
    """Unbiased one-sample gradient of E_z[f(z)] w.r.t. the mask logits.

    Args:
        logits [K, E] or [E]: float32/float64 mask logits phi (edge-id order; row k = layer k).
        seed, offset: the Philox key and counter base the step's propagations used.
        f_pos, f_neg: the losses of the ``arm_pos`` and ``arm_neg`` passes (floats or 0-d tensors).
        estimator: ``"arm"`` or ``"disarm"``.
        backend: force a backend (default: FASTGCN_BACKEND or the best for the device).

    Returns:
        The gradient estimate, same shape and dtype as ``logits``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if not isinstance(logits, torch.Tensor) or logits.dim() not in (1, 2):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a tensor of shape [E] or [K, E], got {shape}")
    if logits.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"logits must be float32 or float64, got {logits.dtype}")
    df = _loss_difference(f_pos, f_neg, logits.device)
    return _op(
        logits.detach().contiguous(),
        library.int64_bits(seed),
        library.int64_bits(offset),
        df,
        estimator == "disarm",
        backend,
    )


__all__ = ["arm_grad", "ESTIMATORS"]
