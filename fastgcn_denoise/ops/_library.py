"""torch.library registration of the public ops (``fastgcn::<name>``), the one helper every op uses.

Each public op is a ``torch.library.custom_op`` whose implementation is the op's eager code (input
values checked there, backend picked there), with a fake kernel (output shapes and dtypes from
the input shapes), and, where it is differentiable, ``register_autograd`` with a backward that is
itself a registered op. ``torch.compile`` then sees one opaque node per call (no graph break, the
fake kernel gives the shapes), AOT autograd records the backward op, and
``torch.library.opcheck`` can test schema, fake kernel and autograd registration.

An op's file stays the one place that defines it: it calls ``define`` for its forward (and
backward) with the typed implementation and fake, and ``differentiable`` to connect them.
Arguments a schema cannot carry are flattened: a ``BipartiteGraph`` as its five index tensors
(``graph_args`` / ``graph_from``), a backend as its name, a 64-bit seed as the int64 of the same
bits (``int64_bits``, undone by ``uint64`` in the implementation), a Python object passed back to the caller (``NuclearNormState``) as
outputs the wrapper stores.
"""

from __future__ import annotations

from typing import Callable

import torch

NAMESPACE = "fastgcn"
REGISTERED: dict = {}  # name -> CustomOpDef, every op registered here (tests opcheck them all)


def define(name: str, impl: Callable, fake: Callable):
    """Register ``impl`` (type-annotated) as ``fastgcn::name`` with its fake kernel."""
    op = torch.library.custom_op(f"{NAMESPACE}::{name}", impl, mutates_args=())
    op.register_fake(fake)
    REGISTERED[name] = op
    return op


def differentiable(op, backward: Callable, setup_context: Callable) -> None:
    """Attach ``backward(ctx, *grads)`` and ``setup_context(ctx, inputs, output)`` to ``op``."""
    op.register_autograd(backward, setup_context=setup_context)


# ---------------------------------------------------------------------- flattened arguments
def graph_args(graph) -> tuple:
    """The five index tensors of a ``BipartiteGraph`` (rowptr_u, col_item, rowptr_i, col_user, perm)."""
    return graph.rowptr_u, graph.col_item, graph.rowptr_i, graph.col_user, graph.perm


def graph_from(rowptr_u, col_item, rowptr_i, col_user, perm):
    """A ``BipartiteGraph`` over the given index tensors (no copy, no re-sorting)."""
    from ..graph import BipartiteGraph

    g = BipartiteGraph.__new__(BipartiteGraph)
    g.num_users, g.num_items = rowptr_u.shape[0] - 1, rowptr_i.shape[0] - 1
    g.rowptr_u, g.col_item, g.rowptr_i, g.col_user, g.perm = (
        rowptr_u,
        col_item,
        rowptr_i,
        col_user,
        perm,
    )
    g.deg_u, g.deg_i = rowptr_u.diff(), rowptr_i.diff()
    return g


def int64_bits(v: int) -> int:
    """A 64-bit unsigned seed or counter as the int64 with the same bits (schemas carry int64)."""
    v = int(v) & 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


def uint64(v: int) -> int:
    """The unsigned value back from ``int64_bits``, for the kernels."""
    return int(v) & 0xFFFFFFFFFFFFFFFF


def empty(like: torch.Tensor) -> torch.Tensor:
    """The placeholder a registered op returns for an output that is not there (no gradient
    needed, no renormalisation): schemas have no optional outputs."""
    return like.new_empty(0)


def present(t: torch.Tensor | None):
    """None for a placeholder from ``empty``, else ``t``."""
    return None if t is None or (t.dim() == 1 and t.numel() == 0) else t


def compiling() -> bool:
    """Whether torch.compile is tracing (value checks that read tensor data live in the ops)."""
    return torch.compiler.is_compiling()


__all__ = [
    "NAMESPACE",
    "REGISTERED",
    "define",
    "differentiable",
    "graph_args",
    "graph_from",
    "int64_bits",
    "uint64",
    "empty",
    "present",
    "compiling",
]
