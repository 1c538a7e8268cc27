"""One rank's share of the bipartite graph when users and items are split across P processes.

Users and items are each cut into P contiguous id ranges (``partition_bounds``: equal counts, or
equal degree sums). Rank r owns users ``[ub[r], ub[r+1])`` and items ``[ib[r], ib[r+1])``: their
embedding rows, the CSR(R) rows of its users and the CSR(R^T) rows of its items. Because edge ids
are CSR(R) positions (user-major), the edges of a contiguous user range are one contiguous edge-id
range, so per-edge state (masks drawn from Philox counters, logits) keeps its global edge id.

A propagation reads, besides owned rows, the *halo*: the remote items adjacent to owned users and
the remote users adjacent to owned items (the same for every layer, computed once here). Each rank
stores one row buffer per layer, ``[owned users | owned items | halo rows]``; the halo rows arrive
from their owners in the order of ``requests`` (by owner rank, then that owner's users, then its
items, ids ascending), and both local CSRs index that buffer (``col_u``, ``col_i``), so the two
products of a layer read one buffer. The owner-side block of rank s is ``[its users | its items]``
and ``requests[s]`` holds row indices into that block.

What a rank keeps is its share and nothing sized by the global graph: the owned rows' index
arrays and the node ids of its halo rows (``halo_keys``). The requests (needed once, to build the
exchange plan) and the full buffer keys are derived from ``halo_keys`` on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BALANCES = ("contiguous", "degree")


def partition_bounds(degrees: torch.Tensor, world_size: int, balance: str = "contiguous") -> list:
    """P + 1 cut points splitting ids ``[0, n)`` into ``world_size`` contiguous ranges.

    ``balance``: ``contiguous`` (equal id counts) or ``degree`` (equal sums of ``degrees`` [n],
    so each rank holds about E / P edges of that side). Ranges may be empty when n < P.
    """
    if balance not in BALANCES:
        raise ValueError(f"balance must be one of {', '.join(BALANCES)}, got {balance!r}")
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    n = int(degrees.shape[0])
    if balance == "contiguous":
        return [(n * r) // world_size for r in range(world_size + 1)]
    cum = torch.cumsum(degrees.to(torch.float64), 0)
    total = float(cum[-1]) if n else 0.0
    targets = torch.tensor(
        [total * r / world_size for r in range(1, world_size)], dtype=torch.float64
    )
    inner = torch.searchsorted(cum, targets, right=False).add(1).clamp(max=n).tolist()
    return [0] + sorted(int(c) for c in inner) + [n]


def owner_of(ids: torch.Tensor, bounds: list) -> torch.Tensor:
    """The rank owning each id (int64 [n]) under cut points ``bounds``."""
    cuts = torch.tensor(bounds[1:-1], dtype=torch.int64, device=ids.device)
    return torch.searchsorted(cuts, ids, right=True)


@dataclass
class LocalPartition:
    """Rank ``rank``'s rows of the graph (module docstring). int64 tensors unless stated.

    rowptr_u [nu + 1], col_u [E_U]: CSR(R) rows of the owned users; columns index the row buffer.
    edge_start: global edge id of the first owned-user edge (owned-user edge j is edge_start + j).
    rowptr_i [ni + 1], col_i [E_I], eid_i [E_I]: CSR(R^T) rows of the owned items, columns into
        the buffer, and each position's global edge id.
    halo_keys [halo]: the node of each halo buffer row (user u -> u, item i -> U + i), in
        receive order (by owner rank, its users then its items, ascending).
    """

    rank: int
    world_size: int
    num_users: int
    num_items: int
    user_bounds: list
    item_bounds: list
    rowptr_u: torch.Tensor
    col_u: torch.Tensor
    edge_start: int
    rowptr_i: torch.Tensor
    col_i: torch.Tensor
    eid_i: torch.Tensor
    halo_keys: torch.Tensor

    @property
    def users(self) -> tuple[int, int]:
        return self.user_bounds[self.rank], self.user_bounds[self.rank + 1]

    @property
    def items(self) -> tuple[int, int]:
        return self.item_bounds[self.rank], self.item_bounds[self.rank + 1]

    @property
    def num_own_users(self) -> int:
        return self.users[1] - self.users[0]

    @property
    def num_own_items(self) -> int:
        return self.items[1] - self.items[0]

    @property
    def num_halo(self) -> int:
        return int(self.halo_keys.shape[0])

    @property
    def num_halo_users(self) -> int:
        return int((self.halo_keys < self.num_users).sum())

    @property
    def buffer_keys(self) -> torch.Tensor:
        """[nu + ni + halo]: the node of every buffer row (built on demand, not kept)."""
        (u0, u1), (i0, i1) = self.users, self.items
        device = self.halo_keys.device
        return torch.cat(
            [
                torch.arange(u0, u1, device=device),
                self.num_users + torch.arange(i0, i1, device=device),
                self.halo_keys,
            ]
        )

    @property
    def requests(self) -> list:
        """P tensors: requests[s] = the rows of rank s's block ``[its users | its items]`` this
        rank receives (its halo from s), in receive order. Derived from ``halo_keys`` (setup)."""
        keys, ub, ib = self.halo_keys, self.user_bounds, self.item_bounds
        is_user = keys < self.num_users
        owner = torch.where(is_user, owner_of(keys, ub), owner_of(keys - self.num_users, ib))
        ubt = torch.tensor(ub, dtype=torch.int64, device=keys.device)
        ibt = torch.tensor(ib, dtype=torch.int64, device=keys.device)
        row = torch.where(
            is_user,
            keys - ubt[owner],
            ubt[owner + 1] - ubt[owner] + keys - self.num_users - ibt[owner],
        )
        return [row[owner == s] for s in range(self.world_size)]

    def item_ids(self, cols: torch.Tensor) -> torch.Tensor:
        """Global item ids of buffer rows ``cols`` that hold items (e.g. ``col_u``)."""
        nu, own = self.num_own_users, self.num_own_users + self.num_own_items
        owned = cols - nu + self.items[0]
        if not self.num_halo:
            return owned
        halo = self.halo_keys[(cols - own).clamp_min(0)] - self.num_users
        return torch.where(cols < own, owned, halo)

    def nbytes(self) -> int:
        """Bytes of the partition's tensors (the graph share this rank keeps)."""
        return sum(
            t.numel() * t.element_size()
            for t in (
                self.rowptr_u,
                self.col_u,
                self.rowptr_i,
                self.col_i,
                self.eid_i,
                self.halo_keys,
            )
        )

    def to(self, device) -> LocalPartition:
        moved = {
            name: getattr(self, name).to(device)
            for name in ("rowptr_u", "col_u", "rowptr_i", "col_i", "eid_i", "halo_keys")
        }
        return LocalPartition(
            self.rank,
            self.world_size,
            self.num_users,
            self.num_items,
            self.user_bounds,
            self.item_bounds,
            edge_start=self.edge_start,
            **moved,
        )


def _halo(ids: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Sorted distinct ids outside ``[lo, hi)``."""
    return torch.unique(ids[(ids < lo) | (ids >= hi)])


def partition_graph(graph, rank: int, user_bounds: list, item_bounds: list) -> LocalPartition:
    """Rank ``rank``'s ``LocalPartition`` of a ``BipartiteGraph`` (any device; result on CPU).

    Reads only the owned CSR rows of both directions (slices) and the cut points.
    """
    world = len(user_bounds) - 1
    if len(item_bounds) != world + 1 or not 0 <= rank < world:
        raise ValueError(
            f"rank {rank} with {len(user_bounds) - 1} user ranges and "
            f"{len(item_bounds) - 1} item ranges: need one range per rank each"
        )
    if user_bounds[-1] != graph.num_users or item_bounds[-1] != graph.num_items:
        raise ValueError(
            f"cut points end at {user_bounds[-1]} users / {item_bounds[-1]} items, "
            f"but the graph has {graph.num_users} / {graph.num_items}"
        )
    num_users = graph.num_users
    u0, u1 = user_bounds[rank], user_bounds[rank + 1]
    i0, i1 = item_bounds[rank], item_bounds[rank + 1]
    rowptr_u, rowptr_i = graph.rowptr_u.cpu(), graph.rowptr_i.cpu()
    e0, e1 = int(rowptr_u[u0]), int(rowptr_u[u1])
    p0, p1 = int(rowptr_i[i0]), int(rowptr_i[i1])
    items = graph.col_item[e0:e1].cpu()
    users = graph.col_user[p0:p1].cpu()
    halo_items, halo_users = _halo(items, i0, i1), _halo(users, u0, u1)
    user_owner, item_owner = owner_of(halo_users, user_bounds), owner_of(halo_items, item_bounds)
    # Receive order: by owner, its users then its items.
    halo_keys = torch.cat(
        [
            torch.cat([halo_users[user_owner == s], num_users + halo_items[item_owner == s]])
            for s in range(world)
        ]
    )
    nu, ni = u1 - u0, i1 - i0
    order = torch.argsort(halo_keys)
    sorted_keys = halo_keys[order]

    def to_buffer(keys_: torch.Tensor, owned: torch.Tensor, owned_row: torch.Tensor):
        halo_row = (
            nu
            + ni
            + order[
                torch.searchsorted(sorted_keys, keys_).clamp(max=max(sorted_keys.shape[0] - 1, 0))
            ]
            if sorted_keys.numel()
            else keys_
        )
        return torch.where(owned, owned_row, halo_row)

    col_u = to_buffer(num_users + items, (items >= i0) & (items < i1), nu + items - i0)
    col_i = to_buffer(users, (users >= u0) & (users < u1), users - u0)
    return LocalPartition(
        rank,
        world,
        num_users,
        graph.num_items,
        list(user_bounds),
        list(item_bounds),
        rowptr_u=rowptr_u[u0 : u1 + 1] - e0,
        col_u=col_u,
        edge_start=e0,
        rowptr_i=rowptr_i[i0 : i1 + 1] - p0,
        col_i=col_i,
        eid_i=graph.perm[p0:p1].cpu().clone(),
        halo_keys=halo_keys,
    )


__all__ = ["BALANCES", "LocalPartition", "owner_of", "partition_bounds", "partition_graph"]
