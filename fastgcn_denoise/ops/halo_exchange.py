"""Row exchanges between ranks: each rank sends the rows of its block that the others asked for.

    plan = exchange_plan(requests)     requests[s]: int64 rows of rank s's block wanted here
    y = exchange_rows(x, plan)         [sum_s len(requests[s]), d]: those rows, by owner rank
    ys = gather_rows(xs, plan)         the same rows of several [n, d_k] tensors in one message,
                                       differentiable: the backward sends the row gradients back
                                       (the reverse all-to-all) and sums them into the rows
                                       they came from

One ``torch.distributed.all_to_all_single`` per call (gloo on CPU, NCCL on GPU), on the default
process group unless ``group`` is given; with one process (or none initialised) it is an index.
The plan itself costs two small all-to-alls (the counts, then the requested row ids).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


def _world(group) -> int:
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


@dataclass
class ExchangePlan:
    """send_index [S] (int32, or int64 past 2^31 rows): rows of the local block to send, grouped
    by destination rank;
    send_counts / recv_counts: rows per destination / per source (lists of P ints)."""

    send_index: torch.Tensor
    send_counts: list
    recv_counts: list
    group: object = None

    @property
    def rows_sent(self) -> int:
        return sum(self.send_counts)

    @property
    def rows_received(self) -> int:
        return sum(self.recv_counts)


def _all_to_all(x: torch.Tensor, send_counts: list, recv_counts: list, group) -> torch.Tensor:
    out = x.new_empty((sum(recv_counts),) + tuple(x.shape[1:]))
    dist.all_to_all_single(out, x.contiguous(), recv_counts, send_counts, group=group)
    return out


def _compact(index: torch.Tensor) -> torch.Tensor:
    """int32 row ids when they fit (a rank's block has < 2^31 rows): the plan is kept for the
    whole run, and index_select / index_add_ take int32 as well as int64."""
    if index.numel() and int(index.max()) >= 2**31:
        return index
    return index.to(torch.int32)


def exchange_plan(requests: list, group=None) -> ExchangePlan:
    """The plan that delivers ``requests[s]`` (int64 rows of rank s's block) from every rank s."""
    world = _world(group)
    if len(requests) != world:
        raise ValueError(
            f"requests has {len(requests)} entries; the process group has {world} "
            "ranks (one request tensor per rank)"
        )
    wanted = [r.to(torch.int64) for r in requests]
    if world == 1:
        return ExchangePlan(_compact(wanted[0]), [wanted[0].shape[0]], [wanted[0].shape[0]], group)
    device = wanted[0].device
    ask = torch.tensor([w.shape[0] for w in wanted], dtype=torch.int64, device=device)
    asked = torch.empty_like(ask)
    dist.all_to_all_single(asked, ask, group=group)
    send_counts, recv_counts = asked.tolist(), ask.tolist()
    send_index = _all_to_all(torch.cat(wanted), recv_counts, send_counts, group)
    return ExchangePlan(_compact(send_index), send_counts, recv_counts, group)


def _send(rows: torch.Tensor, plan: ExchangePlan) -> torch.Tensor:
    """The rows to send (grouped by destination) -> the rows received (grouped by source)."""
    if len(plan.send_counts) == 1:
        return rows
    return _all_to_all(rows, plan.send_counts, plan.recv_counts, plan.group)


def exchange_rows(x: torch.Tensor, plan: ExchangePlan) -> torch.Tensor:
    """The requested rows of ``x`` [n, ...] from every rank (no autograd)."""
    return _send(x.index_select(0, plan.send_index), plan)


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan, *xs):
        ctx.plan, ctx.rows = plan, [x.shape[0] for x in xs]
        ctx.widths = [x.shape[1] for x in xs]
        # One message for all the tensors: their rows side by side.
        rows = torch.cat([x.index_select(0, plan.send_index) for x in xs], 1)
        return _send(rows, plan).split(ctx.widths, 1)

    @staticmethod
    def backward(ctx, *grads):
        plan = ctx.plan
        grad = torch.cat(grads, 1)
        if len(plan.send_counts) > 1:  # the reverse all-to-all: gradients back to the owners
            grad = _all_to_all(grad, plan.recv_counts, plan.send_counts, plan.group)
        outs = [
            grad.new_zeros((n, w)).index_add_(0, plan.send_index, g)
            for n, w, g in zip(ctx.rows, ctx.widths, grad.split(ctx.widths, 1))
        ]
        return (None, *outs)


def gather_rows(xs: list, plan: ExchangePlan) -> list:
    """``exchange_rows`` of each tensor of ``xs`` (same rows, [n, d_k] each) in one message, with
    autograd; every rank must run the backward too (it communicates)."""
    return list(_GatherRows.apply(plan, *xs))


__all__ = ["ExchangePlan", "exchange_plan", "exchange_rows", "gather_rows"]
