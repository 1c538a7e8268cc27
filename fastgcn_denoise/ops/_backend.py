"""Backend registry and dispatch.

A backend is a module-like object exposing the primitives of ``ops/reference.py``:

  edge_weights(logits [E] | None, edge_weight [E] | None, modes: tuple[int], seed, offset,
               num_edges, dtype, device, gate=None, need_grad=False) -> w [M, E]
               (gate: (temperature, gamma, zeta) of the gate modes; need_grad: (w, dw/dphi))
  degree_rsqrt(graph, w [M, E], self_loop) -> (r_u [M, U], r_i [M, I])
  spmm(rowptr, col, eid | None, w [M, E], r_row [M, R] | None, r_col [M, C] | None,
       x [C, d], x_self [R, d] | None) -> y [M, R, d]
  edge_grad(graph, w [E], r_u [U] | None, r_i [I] | None, x_u, x_i, gy_u, gy_i, self_loop) -> [E]
  spmm_backward(graph, w [E], r_u, r_i, x_u, x_i, gy_u, gy_i, self_loop, need_xu, need_xi)
               -> (dL/dx_u | None, dL/dx_i | None, dL/dw [E]): optional (the ``cpu`` backend's
               fusion of the two products with edge_grad; used for CPU tensors when present)

Names: ``reference`` (pure PyTorch), ``cpu`` (C++/OpenMP in csrc/cpu), ``triton`` (kernels/; CPU
tensors only under TRITON_INTERPRET=1), ``cuda`` (csrc/cuda). Dispatch follows the tensors'
device; ``FASTGCN_BACKEND`` (or an explicit ``backend=`` argument) forces one and raises
``BackendUnavailable`` with the reason when it cannot run.
"""

from __future__ import annotations

import importlib
import os

import torch

BACKENDS = ("reference", "cpu", "triton", "cuda")
ENV_VAR = "FASTGCN_BACKEND"


class BackendUnavailable(RuntimeError):
    """A requested backend cannot run here; the message says why."""


def _load_extension():
    try:
        return importlib.import_module("fastgcn_denoise._C"), None
    except ImportError as exc:  # pure-Python install or a failed build
        return None, f"compiled extension fastgcn_denoise._C not importable ({exc})"


def _triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def availability(device: str | torch.device = "cpu") -> dict[str, str | None]:
    """For each backend: None if it can run on ``device``, else the reason it cannot."""
    device = torch.device(device)
    out: dict[str, str | None] = {"reference": None}
    ext, why = _load_extension()
    if device.type == "cpu":
        out["cpu"] = why
    else:
        out["cpu"] = "the cpu backend runs on CPU tensors only"
    try:
        importlib.import_module(_MODULES["triton"])
        if device.type == "cuda" or _triton_interpret():
            out["triton"] = None
        else:
            out["triton"] = "triton needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)"
    except ImportError as exc:
        out["triton"] = f"triton kernels not importable ({exc})"
    if ext is None:
        out["cuda"] = why
    elif not ext.has_cuda():
        out["cuda"] = "fastgcn_denoise._C was built without CUDA (no nvcc/CUDA torch at build time)"
    elif device.type != "cuda":
        out["cuda"] = "the cuda backend runs on CUDA tensors only"
    else:
        out["cuda"] = None
    return out


_MODULES = {
    "reference": "fastgcn_denoise.ops.reference",
    "cpu": "fastgcn_denoise.ops._cpp_backend",
    "cuda": "fastgcn_denoise.ops._cpp_backend",
    "triton": "fastgcn_denoise.kernels.masked_spmm",
}


def requested_backend(name: str | None = None) -> tuple[str | None, str]:
    """(the backend asked for, where the request came from), checked against ``BACKENDS``.

    ``name`` if given (source "argument"), else ``$FASTGCN_BACKEND`` if set and non-empty
    (source "FASTGCN_BACKEND"), else (None, ""): pick the best for the device.

    Raises:
        BackendUnavailable: the name is not a backend; the message names where it came from.
    """
    source = "argument"
    if not name:
        name, source = os.environ.get(ENV_VAR) or None, ENV_VAR
    if name is None:
        return None, ""
    if name not in BACKENDS:
        where = f" in {ENV_VAR}" if source == ENV_VAR else ""
        hint = f" (or unset {ENV_VAR} to use the best backend for the device)" if where else ""
        raise BackendUnavailable(
            f"unknown backend {name!r}{where}; choose one of {', '.join(BACKENDS)}{hint}"
        )
    return name, source


def unavailable_message(name: str, source: str, device, why: str) -> str:
    """The message for a forced backend that cannot run on ``device``."""
    if source != ENV_VAR:
        return f"backend {name!r} is not available on {device}: {why}"
    return (
        f"backend {name!r} is not available on {device} ({ENV_VAR}={name}): {why}; unset "
        f"{ENV_VAR} to use the best available"
    )


def get_backend(device: torch.device, name: str | None = None):
    """The backend module for ``device``: ``name``, else FASTGCN_BACKEND, else the best present."""
    name, source = requested_backend(name)
    avail = availability(device)
    if name is not None:
        if avail[name] is not None:
            raise BackendUnavailable(unavailable_message(name, source, device, avail[name]))
    else:
        order = ("cpu", "reference") if device.type == "cpu" else ("triton", "cuda", "reference")
        name = next(n for n in order if avail[n] is None)
    return importlib.import_module(_MODULES[name])


def resolve_name(device: torch.device, name: str | None = None) -> str:
    """The backend name ``get_backend`` would pick (for logs and benchmarks)."""
    module = get_backend(device, name)
    if module.__name__.endswith("_cpp_backend"):
        return "cuda" if device.type == "cuda" else "cpu"
    return {v: k for k, v in _MODULES.items() if k not in ("cpu", "cuda")}[module.__name__]
