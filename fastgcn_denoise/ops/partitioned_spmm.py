"""The normalised propagation on one rank's partition (``graph_partition``), halo rows exchanged.

    y_user = r_u * sum_{e=(u,i)} z_e (r_i x_i),   y_item = r_i * sum_{e=(u,i)} z_e (r_u x_u)

for the owned rows, with r = d^-1/2 from the *global* (masked) degrees: an owned row holds all of
its edges, so its degree is local, and the halo rows are sent pre-scaled (r x), so no remote
degree is ever needed. One exchange per layer carries the halo of both sides (``halo_exchange``),
then the row-parallel ``spmm`` primitive of the backend runs on the local CSRs (the one
``masked_spmm`` uses). The operator is symmetric, so the backward is the same propagation of the
output gradients (one more halo exchange, in the same direction): no transposed local CSR is
stored and nothing is scattered.

The mask ``z`` (``partition_mask``) is drawn from the same Philox counters as the single process
(``offset + global edge id``), so a binary mask is the same whatever the partition.
"""

from __future__ import annotations

import torch

from ..modes import MODE_ID
from . import reference
from ._backend import get_backend
from .halo_exchange import ExchangePlan, exchange_rows, gather_rows
from .sddmm import sddmm_kernel

_CHUNK_ELEMENTS = 1 << 22  # gathered elements per chunk of the scatter (its temporary memory)


def _row_rsqrt(rowptr: torch.Tensor, w: torch.Tensor, self_loop: bool = False) -> torch.Tensor:
    """[rows]: (sum of w over each CSR row, + 1 with self-loops)^-1/2, 0 where that is 0.
    Differentiable in w."""
    cum = torch.cat([w.new_zeros(1, dtype=torch.float64), torch.cumsum(w.to(torch.float64), 0)])
    d = (cum[rowptr[1:]] - cum[rowptr[:-1]] + float(self_loop)).to(w.dtype)
    return torch.where(d > 0, d.clamp_min(1e-30).rsqrt(), torch.zeros_like(d))


class PartitionedOperator:
    """Â restricted to one partition, for the given edge weights (a mask, or ones).

    ``part``: ``LocalPartition`` on the embeddings' device; ``plan``: the ``ExchangePlan`` of its
    ``requests``; ``z_u`` [E_U], ``z_i`` [E_I]: weights of the owned-user and owned-item edges
    (None: ones), not differentiated (``weighted_partitioned_spmm`` is). ``self_loop``: Â of
    A + I (DGR), d = Σ w + 1. ``backend``: force a backend of the ``spmm`` primitive.
    """

    def __init__(
        self,
        part,
        plan: ExchangePlan,
        z_u=None,
        z_i=None,
        dtype=torch.float32,
        backend: str | None = None,
        self_loop: bool = False,
    ):
        device = part.col_u.device
        self.part, self.plan, self.backend, self.self_loop = part, plan, backend, self_loop
        self.w_u = (
            torch.ones(part.col_u.shape[0], dtype=dtype, device=device)
            if z_u is None
            else z_u.to(dtype).contiguous()
        )[None]
        self.w_i = (
            torch.ones(part.col_i.shape[0], dtype=dtype, device=device)
            if z_i is None
            else z_i.to(dtype).contiguous()
        )[None]
        self.r_u = _row_rsqrt(part.rowptr_u, self.w_u[0].detach(), self_loop)[:, None]
        self.r_i = _row_rsqrt(part.rowptr_i, self.w_i[0].detach(), self_loop)[:, None]
        self.w_u, self.w_i = self.w_u.detach(), self.w_i.detach()

    def apply(self, x_user: torch.Tensor, x_item: torch.Tensor):
        """(y_user [nu, d], y_item [ni, d]) from the owned rows x_user [nu, d], x_item [ni, d]."""
        be = get_backend(x_user.device, self.backend)
        part = self.part
        nu, own = x_user.shape[0], x_user.shape[0] + x_item.shape[0]
        # One buffer [owned users | owned items | halo], the owned rows pre-scaled by r.
        buffer = x_user.new_empty((own + part.num_halo, x_user.shape[1]))
        torch.mul(x_user, self.r_u.to(x_user.dtype), out=buffer[:nu])
        torch.mul(x_item, self.r_i.to(x_item.dtype), out=buffer[nu:own])
        # Every rank takes part, halo or not: the others may ask for its rows.
        buffer[own:] = exchange_rows(buffer[:own], self.plan)
        w_u, w_i = self.w_u.to(buffer.dtype), self.w_i.to(buffer.dtype)
        y_u = be.spmm(part.rowptr_u, part.col_u, None, w_u, None, None, buffer, None)[0]
        y_i = be.spmm(part.rowptr_i, part.col_i, None, w_i, None, None, buffer, None)[0]
        if self.self_loop:  # r (r x): the scaled owned rows
            y_u += buffer[:nu]
            y_i += buffer[nu:own]
        return y_u.mul_(self.r_u.to(y_u.dtype)), y_i.mul_(self.r_i.to(y_i.dtype))


class _Propagate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_user, x_item, op):
        ctx.op = op
        return op.apply(x_user, x_item)

    @staticmethod
    def backward(ctx, gy_user, gy_item):
        # dL/dx_user = Â gy_item, dL/dx_item = Â^T gy_user: the same operator (symmetric A).
        g_user, g_item = ctx.op.apply(gy_user.contiguous(), gy_item.contiguous())
        return g_user, g_item, None


class _WeightedRows(torch.autograd.Function):
    """y [n, d] = sum_{j in row} w_j x[col_j] on one local CSR (no renormalisation),
    differentiable in w and x. Forward: the backend's ``spmm``; backward: dL/dw by the backend's
    SDDMM, dL/dx by a scatter in chunks (the local CSR has no transpose), so nothing [E, d] is
    kept for the backward."""

    @staticmethod
    def forward(ctx, rowptr, col, w, x, backend):
        ctx.save_for_backward(rowptr, col, w, x)
        ctx.backend = backend
        be = get_backend(x.device, backend)
        return be.spmm(rowptr, col, None, w[None].contiguous(), None, None, x, None)[0]

    @staticmethod
    def backward(ctx, gy):
        rowptr, col, w, x = ctx.saved_tensors
        gy = gy.contiguous()
        gw = gx = None
        if ctx.needs_input_grad[2]:
            gw = sddmm_kernel(x.device, ctx.backend)(rowptr, col, gy, x)
        if ctx.needs_input_grad[3]:
            rows = torch.repeat_interleave(
                torch.arange(rowptr.shape[0] - 1, device=x.device),
                rowptr.diff(),
                output_size=col.shape[0],
            )
            gx = torch.zeros_like(x)
            step = max(1, _CHUNK_ELEMENTS // max(1, x.shape[1]))
            for s in range(0, col.shape[0], step):
                sl = slice(s, s + step)
                gx.index_add_(0, col[sl], w[sl, None] * gy[rows[sl]])
        return None, None, gw, gx, None


def partitioned_spmm(op: PartitionedOperator, x_user: torch.Tensor, x_item: torch.Tensor):
    """One propagation of the owned rows (module docstring), differentiable in x_user, x_item.

    Every rank must call it (and its backward) the same number of times: it communicates.
    """
    part = op.part
    for name, x, n in (
        ("x_user", x_user, part.num_own_users),
        ("x_item", x_item, part.num_own_items),
    ):
        if x.dim() != 2 or x.shape[0] != n:
            raise ValueError(
                f"{name} must be [{n}, d] (the rows rank {part.rank} owns), got {tuple(x.shape)}"
            )
    return _Propagate.apply(x_user, x_item, op)


def weighted_partitioned_spmm(
    part,
    plan: ExchangePlan,
    x_user: torch.Tensor,
    x_item: torch.Tensor,
    z_u: torch.Tensor,
    z_i: torch.Tensor,
    self_loop: bool = False,
    backend: str | None = None,
):
    """``partitioned_spmm`` with edge weights z_u [E_U], z_i [E_I] that get gradients too (a
    learned mask), the degrees renormalised from them; ``z_i`` must hold the same values as the
    owners' ``z_u`` for those edges (it is their copy). Built from differentiable pieces: the
    degrees, the halo exchange and the local weighted products (``_WeightedRows``), so the edge
    gradient needs no partitioned kernel of its own (it is two passes more than the fused
    single-process kernel's).

    Every rank must call it (and its backward) the same number of times: it communicates.
    """
    nu = part.num_own_users
    r_u = _row_rsqrt(part.rowptr_u, z_u, self_loop)[:, None].to(x_user.dtype)
    r_i = _row_rsqrt(part.rowptr_i, z_i, self_loop)[:, None].to(x_item.dtype)
    own = torch.cat([x_user * r_u, x_item * r_i])
    buffer = torch.cat([own, gather_rows([own], plan)[0]])
    ys = []
    for rowptr, col, z, r, x_self in (
        (part.rowptr_u, part.col_u, z_u, r_u, own[:nu]),
        (part.rowptr_i, part.col_i, z_i, r_i, own[nu:]),
    ):
        y = _WeightedRows.apply(rowptr, col, z.to(buffer.dtype), buffer, backend)
        ys.append((y + x_self if self_loop else y) * r)
    return tuple(ys)


def partition_mask(
    part, logits_u: torch.Tensor, logits_i: torch.Tensor, mode: str, seed: int, offset: int = 0
):
    """(z_u [E_U], z_i [E_I]): the mask of the owned-user and owned-item edges, drawn at the
    single process's counters ``offset + global edge id`` (``sample_mask``'s values).

    ``logits_u`` / ``logits_i``: the logits of those edges (global ids ``edge_start + j`` and
    ``eid_i``).
    """
    if mode not in MODE_ID:
        raise ValueError(f"unknown mode {mode!r}")
    eid_u = part.edge_start + torch.arange(part.col_u.shape[0], device=part.col_u.device)
    return tuple(
        reference.mask_from_uniforms(
            MODE_ID[mode], logits, reference.philox_uniform(seed, int(offset) + eid)
        )
        for logits, eid in ((logits_u, eid_u), (logits_i, part.eid_i))
    )


__all__ = [
    "PartitionedOperator",
    "partition_mask",
    "partitioned_spmm",
    "weighted_partitioned_spmm",
]
