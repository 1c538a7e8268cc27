"""Item-item co-occurrence G = RᵀR by a sparse product, and DGR's LEC neighbour lists from it.

    item_cooccurrence(graph, begin, end)  CSR rows [begin, end) of G: G_ij = #users with i and j
    lec_neighbors(graph, k_similar, k_marginal)  per item its top-K1 "similar" and K2 lowest-ω
                                          "marginal" co-occurring items, with their weights ω

ω is UltraGCN's constraint weight as DGR's official code computes it (research/official_code.md
§3.3): ω_ij = G_ij / (√(D_i + 1) √(D_j + 1)), D_i = Σ_j G_ij (diagonal included) = the sum of the
degrees of item i's users, so D needs no product. The official code builds the dense I × I ω
(~13 GB at float64 for Gowalla's 40,981 items). Here G is produced a block of item rows at a time
(the block's work, Σ D_i over its rows, bounded by ``block_work``), reduced to the block's
neighbour lists by ``segment_topk`` and dropped: memory is O(block + I·(K1 + K2)).

Choices where the paper and the code differ (DGR, Ding et al. IJCAI'24, §3.2):
- ``diagonal=False`` (default, the paper: "sort *other* neighbor item nodes"): item i is never
  its own neighbour. The official code keeps G_ii = deg(i), so i is often among its own top-K1;
  ``diagonal=True`` reproduces that. D always includes the diagonal (the code's row sums).
- Similar: the K1 largest ω (the code's top-10 of the dense row, whose zero entries add nothing).
- Marginal: the K2 smallest ω among the co-occurring items, only for items with at least
  ``min_cooccurrence`` of them (default 3·K2, the code's rule; it is the paper's threshold θ);
  other items get none (the code's placeholder items of weight 0 do the same in the loss).
- Ties go to the lower item id (the code shuffles the row first: random ties); the lists are
  then one deterministic function of the graph, the same on every backend.
Pads (rows with fewer candidates, and items without marginal neighbours): item -1, weight 0.

Backends of the product: ``cpu`` (``_C.cooccurrence``: Gustavson, a dense accumulator per
thread, two passes), ``reference`` and GPUs (torch's sparse CSR product; cuSPARSE on CUDA); the
selection runs on ``segment_topk``'s backend (its Triton kernel on GPUs).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import torch

from ._backend import BackendUnavailable, resolve_name
from .segment_topk import segment_topk

DEFAULT_BLOCK_WORK = 1 << 22  # accumulations per block (bounds the block's G to ~50 MB)


def _torch_sparse(graph, begin, end, diagonal, scale):
    """The product with torch's sparse matmul (CPU: the reference; CUDA: cuSPARSE)."""
    rp_i, cu = graph.rowptr_i, graph.col_user
    lo, hi = int(rp_i[begin]), int(rp_i[end])
    n, device = end - begin, cu.device

    def coo(rowptr, col, shape):  # a CSR (rows sorted, columns ascending) as a coalesced COO
        rows = torch.repeat_interleave(
            torch.arange(shape[0], device=device), rowptr.diff(), output_size=col.shape[0]
        )
        return torch.sparse_coo_tensor(
            torch.stack([rows, col]),
            torch.ones(col.shape[0], dtype=torch.float32, device=device),
            shape,
            is_coalesced=True,
            check_invariants=False,
        )

    block_t = coo(rp_i[begin : end + 1] - lo, cu[lo:hi], (n, graph.num_users))
    r = coo(graph.rowptr_u, graph.col_item, (graph.num_users, graph.num_items))
    with warnings.catch_warnings():  # torch's "sparse support is in beta" notice
        warnings.simplefilter("ignore", UserWarning)
        g = (block_t @ r).coalesce()  # indices sorted (row, col)
    rows, col = g.indices()
    count = g.values()
    keep = count != 0
    if not diagonal:
        keep &= col != rows + begin
    rows, col, count = rows[keep], col[keep], count[keep]
    if scale is not None:  # the same float32 products, in the same order, as the cpu kernel
        count = count * scale[rows + begin] * scale[col]
    rowptr = torch.zeros(n + 1, dtype=torch.int64, device=device)
    rowptr[1:] = torch.bincount(rows, minlength=n).cumsum(0)
    return rowptr, col, count


def _cpu(graph, begin, end, diagonal, scale):
    from .. import _C

    if not hasattr(_C, "cooccurrence"):
        raise BackendUnavailable(
            "fastgcn_denoise._C has no cooccurrence (built before it was "
            "added); rebuild the extension (pip install -e .)"
        )
    rowptr, col, value = _C.cooccurrence(
        graph.rowptr_i,
        graph.col_user,
        graph.rowptr_u,
        graph.col_item,
        graph.num_items,
        begin,
        end,
        diagonal,
        scale,
    )
    return rowptr, col, value


_IMPLS = {"reference": _torch_sparse, "cpu": _cpu, "triton": _torch_sparse, "cuda": _torch_sparse}


def item_cooccurrence(
    graph,
    begin: int = 0,
    end: int | None = None,
    diagonal: bool = True,
    scale: torch.Tensor | None = None,
    backend: str | None = None,
):
    """(rowptr int64 [n + 1], col int64 [nnz], value float32 [nnz]): rows ``begin .. end - 1``
    of G = RᵀR (n = end - begin), columns ascending, zeros not stored; ``diagonal=False`` leaves
    out G_ii. value = G_ij (exact up to 2^24 users per pair), or (G_ij · scale_i) · scale_j in
    float32 with ``scale`` [I] (e.g. 1 / √(D + 1): DGR's ω)."""
    end = graph.num_items if end is None else int(end)
    begin = int(begin)
    if not 0 <= begin <= end <= graph.num_items:
        raise ValueError(f"item rows [{begin}, {end}) are not inside [0, {graph.num_items})")
    if scale is not None:
        if not isinstance(scale, torch.Tensor) or scale.shape != (graph.num_items,):
            raise ValueError(f"scale must be a tensor [num_items = {graph.num_items}]")
        scale = scale.to(device=graph.device, dtype=torch.float32).contiguous()
    return _IMPLS[resolve_name(graph.device, backend)](graph, begin, end, bool(diagonal), scale)


def cooccurrence_mass(graph) -> torch.Tensor:
    """D [I] float64: D_i = Σ_j G_ij (diagonal included) = Σ over item i's users of their degree."""
    users = graph.col_user
    return torch.zeros(graph.num_items, dtype=torch.float64, device=graph.device).index_add_(
        0,
        torch.repeat_interleave(
            torch.arange(graph.num_items, device=graph.device),
            graph.deg_i,
            output_size=graph.num_edges,
        ),
        graph.deg_u[users].double(),
    )


@dataclass
class LECNeighbors:
    """Per item, its LEC neighbours (int64, -1 pads) and their weights ω (float32, 0 for pads).

    similar [I, K1], similar_weight [I, K1]; marginal [I, K2], marginal_weight [I, K2].
    """

    similar: torch.Tensor
    similar_weight: torch.Tensor
    marginal: torch.Tensor
    marginal_weight: torch.Tensor

    def to(self, device) -> "LECNeighbors":
        return LECNeighbors(
            *(
                t.to(device)
                for t in (self.similar, self.similar_weight, self.marginal, self.marginal_weight)
            )
        )


def _blocks(mass: torch.Tensor, block_work: int) -> list[tuple[int, int]]:
    """Consecutive item ranges whose work Σ D_i stays within ``block_work`` (>= 1 row each)."""
    cum = mass.cumsum(0)
    bounds, begin, n = [], 0, mass.shape[0]
    while begin < n:
        base = float(cum[begin - 1]) if begin else 0.0
        end = int(torch.searchsorted(cum, base + block_work, right=True))
        end = min(max(end, begin + 1), n)
        bounds.append((begin, end))
        begin = end
    return bounds


def lec_neighbors(
    graph,
    k_similar: int = 10,
    k_marginal: int = 10,
    min_cooccurrence: int | None = None,
    diagonal: bool = False,
    block_work: int = DEFAULT_BLOCK_WORK,
    backend: str | None = None,
    progress: bool = False,
) -> LECNeighbors:
    """DGR's LEC neighbour lists of every item (module docstring), never forming the dense G.

    Args:
        graph: the training ``BipartiteGraph``.
        k_similar: K1, similar neighbours per item (largest ω).
        k_marginal: K2, marginal neighbours per item (smallest ω).
        min_cooccurrence: items with fewer co-occurring items get no marginal neighbours
            (default 3 * K2, the official code's rule).
        diagonal: whether item i may be its own neighbour (the official code: yes).
        block_work: accumulations per block of item rows (memory bound of the product).
        backend: force a backend for the product and the selection.
        progress: a tqdm bar over the blocks on stderr.
    """
    for name, k in (("k_similar", k_similar), ("k_marginal", k_marginal)):
        if int(k) < 0:
            raise ValueError(f"{name} must be >= 0, got {k}")
    k1, k2 = int(k_similar), int(k_marginal)
    min_co = 3 * k2 if min_cooccurrence is None else int(min_cooccurrence)
    if int(block_work) <= 0:
        raise ValueError(f"block_work must be positive, got {block_work}")
    from tqdm.auto import tqdm

    num_items, device = graph.num_items, graph.device
    mass = cooccurrence_mass(graph)
    scale = (mass + 1).rsqrt().float()  # 1 / √(D + 1)
    out = LECNeighbors(
        torch.full((num_items, k1), -1, dtype=torch.int64, device=device),
        torch.zeros(num_items, k1, device=device),
        torch.full((num_items, k2), -1, dtype=torch.int64, device=device),
        torch.zeros(num_items, k2, device=device),
    )
    blocks = _blocks(mass, int(block_work))
    for begin, end in tqdm(
        blocks,
        desc="LEC neighbours",
        unit="block",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    ):
        rowptr, col, omega = item_cooccurrence(graph, begin, end, diagonal, scale, backend)
        if col.numel() == 0:  # no co-occurrences in the block: its rows stay padding
            continue
        lengths = rowptr.diff()
        for k, largest, items, weights in (
            (k1, True, out.similar, out.similar_weight),
            (k2, False, out.marginal, out.marginal_weight),
        ):
            pos, val = segment_topk(rowptr, omega, k, largest, backend)
            found = pos >= 0
            if not largest:
                found &= (lengths >= min_co)[:, None]
            items[begin:end] = torch.where(found, col[pos.clamp_min(0)], -1)
            weights[begin:end] = torch.where(found, val, 0.0)
    return out


__all__ = [
    "item_cooccurrence",
    "cooccurrence_mass",
    "lec_neighbors",
    "LECNeighbors",
    "DEFAULT_BLOCK_WORK",
]
