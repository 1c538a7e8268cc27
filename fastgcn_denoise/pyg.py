"""A drop-in for PyTorch Geometric's ``LGConv`` on the fused propagation (PyG itself is optional).

PyG's LightGCN layer on the homogeneous (U + I)-node graph,

    x'_j = sum_{k in N(j)} e_kj / sqrt(deg(j) deg(k)) x_k,   deg(j) = sum_{k in N(j)} e_kj,

is ``ops.masked_spmm`` on the bipartite graph behind the ``edge_index``: users are nodes
``[0, U)``, items ``[U, N)``, each interaction stored in both directions. ``LGConv`` here takes
the same call, ``conv(x, edge_index, edge_weight=None)``, recognises that graph once (a
``BipartiteGraph`` and the column mapping, ``graph.parse_edge_index``), caches it, and runs the
fused op on ``x[:U]`` and ``x[U:]``. Keyword-only extras: mask ``logits`` with a ``mode`` (and
``seed``/``offset``), and ``interaction_weight`` (one weight per interaction, tied across the
two directions). Without them (the plain LightGCN layer) the normalised adjacency is a constant of
the graph: it is built once with the layout and the layer is one ``ops.weighted_spmm`` over the
(U + I)-row CSR (``ops.bipartite_operator``, cached per graph).

Cache key: the ``edge_index`` tensor object itself (a strong reference is kept, so its memory
cannot be freed and reused by another tensor at the same address) together with its version
counter (bumped by every in-place write, through views too), the node count, the user count and
the device. A miss then compares the new tensor with the cached ones of the same shape
(``torch.equal``: one pass over 2n ints, far cheaper than the parse), so an edge_index rebuilt
with the same content each step is found too. The cache holds the last ``CACHE_SIZE`` layouts
and is shared by all layers (a LightGCN stack parses its graph once). Writes that bypass the
version counter (``edge_index.data[...] = ...``) are not seen: call ``clear_cache()``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .graph import EdgeIndexLayout, parse_edge_index
from .ops import bipartite_operator, masked_spmm, weighted_spmm

CACHE_SIZE = 4


class _Entry:
    """A cached edge_index: the tensor (held, see the module docstring) and its layout."""

    def __init__(self, edge_index, layout):
        self.edge_index, self.layout = edge_index, layout


_LAYOUTS: "OrderedDict[tuple, _Entry]" = OrderedDict()


def clear_cache() -> None:
    """Forget every cached edge_index layout."""
    _LAYOUTS.clear()


def _layout_to(layout: EdgeIndexLayout, device: torch.device) -> EdgeIndexLayout:
    return EdgeIndexLayout(*(t if t is None else t.to(device) for t in layout))


def _entry(edge_index: torch.Tensor, num_nodes: int, num_users: int | None, device) -> _Entry:
    device = torch.device(device if device is not None else edge_index.device)
    key = (id(edge_index), edge_index._version, int(num_nodes), num_users, device)
    hit = _LAYOUTS.get(key)
    if hit is not None and hit.edge_index is edge_index:
        _LAYOUTS.move_to_end(key)
        return hit
    for old_key, old in list(_LAYOUTS.items()):
        if (
            old_key[2:] == key[2:]
            and old.edge_index.shape == edge_index.shape
            and old.edge_index.dtype == edge_index.dtype
            and old.edge_index.device == edge_index.device
            and torch.equal(old.edge_index, edge_index)
        ):
            del _LAYOUTS[old_key]
            entry = old
            entry.edge_index = edge_index
            break
    else:
        entry = _Entry(
            edge_index, _layout_to(parse_edge_index(edge_index, num_users, num_nodes), device)
        )
    _LAYOUTS[key] = entry
    while len(_LAYOUTS) > CACHE_SIZE:
        _LAYOUTS.popitem(last=False)
    return entry


def edge_index_layout(
    edge_index: torch.Tensor, num_nodes: int, num_users: int | None = None, device=None
) -> EdgeIndexLayout:
    """The cached ``parse_edge_index`` of ``edge_index`` (module docstring), on ``device``."""
    return _entry(edge_index, num_nodes, num_users, device).layout


def _per_interaction(name: str, t: torch.Tensor, layout: EdgeIndexLayout) -> torch.Tensor:
    """A tensor given per interaction in edge_index order ([E]) in edge-id order."""
    e = layout.graph.num_edges
    if not isinstance(t, torch.Tensor) or t.shape != (e,):
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(
            f"{name} must have one value per interaction, shape [{e}] (in the order "
            f"of the user -> item columns of edge_index), got {shape}"
        )
    return t[layout.interaction_order]


class LGConv(nn.Module):
    """``torch_geometric.nn.LGConv`` semantics on the fused bipartite propagation.

    Args:
        normalize: symmetric normalisation D^-1/2 A D^-1/2 (PyG's default); False: y = A x.
        num_users: the user count U when known (default: inferred from each edge_index as the
            smallest U that makes every edge a user-item edge; pass it when the last users or
            the first items may have no edges at all and the split matters to you; the output
            is the same either way).
        backend: force a ``masked_spmm`` backend (default: by device / FASTGCN_BACKEND).

    ``forward(x [N, d], edge_index [2, n], edge_weight [n] = None, *, logits=None, mode="ones",
    seed=0, offset=0, interaction_weight=None, holdout=None, **gate) -> [N, d]``:

    - ``edge_weight``: PyG's per-column weights; must be symmetric (both copies of an interaction
      equal), since the fused op ties them. The shared weight is the mean of the two copies, so
      each copy's gradient is half the shared weight's: their sum equals PyG's summed gradient.
    - ``interaction_weight`` [E] and ``logits`` [E]: one value per interaction, in the order of
      the user -> item columns of ``edge_index``; ``mode`` is ``masked_spmm``'s (``ones``,
      ``bernoulli``, ``expect``, the gates ``concrete``, ``hard_concrete``, ... with ``gate``
      = ``temperature``, ``gamma``, ``zeta``), its mask drawn from Philox counter ``offset + e``
      for edge id e (``parse_edge_index(...).interaction_order`` maps the two orders).
    - ``holdout``: int64 interaction indices (same order) held out of this propagation
      (``masked_spmm``'s target-edge holdout).
    """

    def __init__(
        self, normalize: bool = True, num_users: int | None = None, backend: str | None = None
    ):
        super().__init__()
        self.normalize = bool(normalize)
        self.num_users = num_users
        self.backend = backend

    def _entry(self, edge_index: torch.Tensor, num_nodes: int, device=None) -> _Entry:
        entry = _entry(edge_index, num_nodes, self.num_users, device)
        if entry.layout.item_to_user is None:
            raise ValueError(
                "edge_index holds only user -> item edges; LGConv propagates in both "
                "directions: add the reverse copies (torch_geometric.utils."
                "to_undirected)"
            )
        return entry

    def layout(self, edge_index: torch.Tensor, num_nodes: int, device=None) -> EdgeIndexLayout:
        """The (cached) bipartite graph and column mapping this layer uses for ``edge_index``."""
        return self._entry(edge_index, num_nodes, device).layout

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_weight=None,
        *,
        logits=None,
        mode: str = "ones",
        seed: int = 0,
        offset: int = 0,
        interaction_weight=None,
        holdout=None,
        **gate,
    ) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a [num_nodes, d] tensor, got {shape}")
        entry = self._entry(edge_index, x.shape[0], x.device)
        layout, graph = entry.layout, entry.layout.graph
        if (
            mode == "ones"
            and logits is None
            and edge_weight is None
            and interaction_weight is None
            and holdout is None
            and x.dtype in (torch.float32, torch.float64)
        ):
            pattern, weight = bipartite_operator(graph, x.dtype, self.normalize)
            return weighted_spmm(pattern, weight, x, backend=self.backend)
        weight = None
        if edge_weight is not None and interaction_weight is not None:
            raise ValueError(
                "pass edge_weight (per edge_index column) or interaction_weight "
                "(per interaction), not both"
            )
        if edge_weight is not None:
            n = edge_index.shape[1]
            if not isinstance(edge_weight, torch.Tensor) or edge_weight.shape != (n,):
                shape = (
                    tuple(edge_weight.shape)
                    if isinstance(edge_weight, torch.Tensor)
                    else type(edge_weight).__name__
                )
                raise ValueError(
                    f"edge_weight must have one value per edge_index column, shape "
                    f"[{n}], got {shape}"
                )
            ui, iu = edge_weight[layout.user_to_item], edge_weight[layout.item_to_user]
            if not torch.equal(ui.detach(), iu.detach()):
                e = int((ui != iu).nonzero()[0])
                raise ValueError(
                    f"edge_weight is not symmetric: column {int(layout.user_to_item[e])} has "
                    f"{float(ui[e])} but its reverse, column {int(layout.item_to_user[e])}, has "
                    f"{float(iu[e])}; the fused propagation ties the two directions"
                )
            weight = 0.5 * (ui + iu)
        elif interaction_weight is not None:
            weight = _per_interaction("interaction_weight", interaction_weight, layout)
        if logits is not None:
            logits = _per_interaction("logits", logits, layout)
        if isinstance(holdout, torch.Tensor) and holdout.dtype in (torch.int32, torch.int64):
            # Interaction indices to edge ids: interaction_order[e] is edge e's index.
            order = layout.interaction_order.to(holdout.device)
            edge_id = torch.empty_like(order)
            edge_id[order] = torch.arange(order.shape[0], device=order.device)
            holdout = edge_id[holdout]  # an index outside [0, E) fails here, as indexing does
        num_users = graph.num_users
        y_user, y_item = masked_spmm(
            graph,
            x[:num_users],
            x[num_users:],
            logits,
            mode=mode,
            seed=seed,
            offset=offset,
            edge_weight=weight,
            renormalize=self.normalize,
            backend=self.backend,
            holdout=holdout,
            **gate,
        )
        return torch.cat([y_user, y_item])

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}" + (
            "" if self.num_users is None else f", num_users={self.num_users}"
        )


__all__ = ["LGConv", "edge_index_layout", "clear_cache", "CACHE_SIZE"]
