"""The denoising plug-ins on a partitioned graph (``pipelines.distributed``): mask, holdout, DGR.

Each adapter wraps the plug-in the run built (its parameters, options and state: the single
process's, so the checkpoints and the merged export are the same objects) and runs its seams on
the rank's share, with the collectives that make them equal to the single process's:

- ``mask`` / ``holdout`` (``PartitionedMask``): the logits of an edge live on the rank that owns
  its CSR(R) row (its user's rank): a ``free`` head's Φ [K, E] is sliced to the rank's edge-id
  range, an amortised head scores the owned users' edges from the final embeddings of the rows
  and their halo. Gates are drawn there at the single process's Philox counters (``offset +
  k E + global edge id``), so they are the same whatever the partition; the item side's copy
  comes from the edge's owner in one differentiable all-to-all per step (all K layers at once),
  whose backward returns the item side's gradient. The keep-level target solves on the global
  per-layer mean (an all-reduce per Newton step), the L0 term and the positives' reweighting are
  the rank's shares of the global means.
- ``dgr`` (``PartitionedDGR``): GMP's rank-one term needs s = √d̂ᵀ Ê over all U + I rows: one
  all-reduce of the [d] vector per layer (and of its gradient in the backward); the self-loops
  are local. LEC's neighbour lists are computed once from the global graph, then only the rows
  of the items the rank's positives can be (its users' items) are kept; the neighbours' rows
  come from their owners with the batch's items, in the same message.

The other plug-ins are single-process for now (``SUPPORTED``).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..denoisers.dgr import DGR
from ..denoisers.masks import _EVAL_GATE, _GATE, _STRETCH, EdgeMask, Holdout
from ..graph_partition import owner_of
from ..ops import gate, layer_offset
from ..ops.halo_exchange import exchange_plan, exchange_rows, gather_rows
from ..ops.row_standardised_sddmm import standardise_rows

SUPPORTED = ("mask", "holdout", "dgr")


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


class _GlobalSum(torch.autograd.Function):
    # Every rank's loss depends on the sum: the gradient of each rank's x is the summed gradient.
    @staticmethod
    def forward(ctx, x):
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return _GlobalSum.apply(grad.contiguous())


def _global_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over the ranks, differentiable (the backward all-reduces the gradient)."""
    return _GlobalSum.apply(x.contiguous()) if _world() > 1 else x


def _global_standardise(x: torch.Tensor, total: int) -> torch.Tensor:
    """(x - mean) / std over the ``total`` entries that all ranks' ``x`` make together (the
    single process's ``_standardise`` over every edge), x detached."""
    x = x.detach()
    moments = _global_sum(torch.stack([x.double().sum(), x.double().pow(2).sum()]))
    mean = moments[0] / total
    std = ((moments[1] - total * mean * mean) / max(total - 1, 1)).clamp_min(0).sqrt()
    return ((x - mean.to(x.dtype)) / std.to(x.dtype).clamp_min(1e-12)).to(x.dtype)


class _Adapter:
    """What ``PartitionedRecommender`` calls on a plug-in's adapter, each step in this order:
    ``begin`` (once per forward pass), ``weights`` and ``after_layer`` (per layer),
    ``extra_items`` (item rows its loss term reads) and ``extra_loss``. Defaults: no change."""

    self_loop = False
    partitioned: dict = {}  # state_dict keys held in slices -> how they merge

    def bind(self, model) -> None:
        """Remember the plug-in's state_dict prefix in ``model``."""
        (self._name,) = [f"plugins.{j}" for j, p in enumerate(model.plugins) if p is self.plugin]

    def begin(self, net, training: bool, positives) -> None:
        pass

    def weights(self, layer: int):
        """(z_u [E_U], z_i [E_I]) of ``layer`` for this forward pass, or None (all ones)."""
        return None

    def after_layer(self, layer, x_user, x_item):
        return x_user, x_item

    def extra_items(self, users, pos) -> torch.Tensor:
        return pos.new_empty(0)

    def extra_loss(self, net, layers, batch, extra) -> dict:
        return {}

    def nbytes(self) -> int:
        """Bytes of the tensors the adapter keeps (per-rank plug-in state)."""
        return sum(t.numel() * t.element_size() for t in vars(self).values() if torch.is_tensor(t))


class PartitionedMask(_Adapter):
    """The ``mask`` (``EdgeMask``) or ``holdout`` plug-in on rank ``part.rank`` (module docstring).

    Args:
        plugin: the run's ``EdgeMask`` or ``Holdout`` (a free head's Φ is sliced here, in place).
        part: the rank's ``LocalPartition``; graph: the global training graph (setup only).
        edge_bounds: P + 1 global edge ids where each rank's owned-user edges start.
        rng_state: the torch RNG state the single process draws its mask seeds from (after the
            model's init), so every rank draws the same seeds.
    """

    def __init__(self, plugin, part, graph, edge_bounds: list, rng_state: torch.Tensor):
        self.plugin, self.part = plugin, part
        self.is_mask = isinstance(plugin, EdgeMask)
        self.total = graph.num_edges
        self.num_edges = part.col_u.shape[0]
        device = part.col_u.device
        self.seeds = torch.Generator().set_state(rng_state)
        # The item side's copy of each owned-item edge comes from its user's rank.
        owners = owner_of(part.eid_i, edge_bounds)
        order = torch.argsort(owners, stable=True)
        self.edge_plan = exchange_plan(
            [part.eid_i[order][owners[order] == s] - edge_bounds[s] for s in range(part.world_size)]
        )
        self.edge_inverse = torch.argsort(order)
        self.edge_users = torch.repeat_interleave(
            torch.arange(part.num_own_users, device=device), part.rowptr_u.diff()
        )
        self._step = None  # (logits [K, E_U] or None, positives' local edge ids or None)
        self._weights = None  # per layer (z_u, z_i) or None
        if not self.is_mask:
            return
        head = plugin.head
        if head.head == "free":
            e0 = part.edge_start
            head.logits = nn.Parameter(head.logits.detach()[:, e0 : e0 + self.num_edges].clone())
        if head.head in ("linear", "mlp"):
            items = part.item_ids(part.col_u)
            users = part.users[0] + self.edge_users
            log_di = torch.log(graph.deg_i.to(device)[items].to(torch.float32).clamp_min(1))
            log_du = torch.log(graph.deg_u.to(device)[users].to(torch.float32).clamp_min(1))
            self.degree_features = torch.stack(
                [_global_standardise(log_di, self.total), _global_standardise(log_du, self.total)],
                dim=1,
            )
        self.csr = SimpleNamespace(deg_u=part.rowptr_u.diff(), rowptr_u=part.rowptr_u)

    # ---------------------------------------------------------------- state
    @property
    def partitioned(self) -> dict:
        """state_dict keys this rank holds a slice of -> how they merge (``merge_checkpoints``)."""
        if not self.is_mask:
            return {}
        name = self._name
        out = {f"{name}._extra_state": "embeddings"}
        if self.plugin.head.head == "free":
            out[f"{name}.head.logits"] = 1
        return out

    def nbytes(self) -> int:
        index = self.edge_plan.send_index
        size = super().nbytes() + index.numel() * index.element_size()
        if self.is_mask and self.plugin.head.head == "free":
            size += self.plugin.head.logits.numel() * self.plugin.head.logits.element_size()
        return size

    def rng_state(self):
        return self.seeds.get_state()

    def set_rng_state(self, state) -> None:
        self.seeds.set_state(state)

    # ---------------------------------------------------------------- logits
    def _mean(self, x: torch.Tensor) -> torch.Tensor:
        """[K, E_U] -> [K, 1]: the per-layer mean over every rank's edges."""
        return _global_sum(x.sum(1, keepdim=True)) / self.total

    def _features(self, net) -> torch.Tensor:
        """[E_U, F]: the amortised head's features of the owned users' edges (``edge_features``)."""
        plugin, part = self.plugin, self.part
        f_user, f_item = plugin._embeddings or (net.model.user_emb, net.model.item_emb)
        rows = torch.cat([f_user.detach(), f_item.detach()])
        buffer = torch.cat([rows, exchange_rows(rows, net.plan)])
        score = torch.empty(self.num_edges, dtype=rows.dtype, device=rows.device)
        chunk = 1 << 18  # [chunk, d] gathered rows at a time
        for a in range(0, self.num_edges, chunk):
            b = min(a + chunk, self.num_edges)
            score[a:b] = (buffer[self.edge_users[a:b]] * buffer[part.col_u[a:b]]).sum(-1)
        score = standardise_rows(self.csr, score.detach())
        if plugin.head.head == "score":
            return score[:, None]
        return torch.cat([score[:, None], self.degree_features.to(score.dtype)], dim=1)

    def _logits(self, net) -> torch.Tensor:
        plugin = self.plugin
        features = self._features(net) if plugin.head.amortised else None
        return plugin.control.shift(plugin.head(features), plugin._keep_offset, mean=self._mean)

    # ---------------------------------------------------------------- the seams
    def begin(self, net, training: bool, positives) -> None:
        """Draw this forward pass's edge weights (``positives``: the batch's local edge ids)."""
        plugin, part = self.plugin, self.part
        hold = None  # the target-edge holdout: the batch's positive edges get weight 0
        if training and positives is not None and (not self.is_mask or plugin.holdout):
            hold = torch.ones(self.num_edges, device=part.col_u.device)
            hold[positives] = 0
        logits = None
        if self.is_mask and (not training or plugin.examples >= plugin.warmup_examples):
            logits = self._logits(net)
        self._step = (logits, positives if training else None)
        # The single process draws a seed per training forward, masks applied or not.
        seed = 0
        if self.is_mask and training:
            seed = int(torch.randint(0, 2**62, (1,), generator=self.seeds).item())
        if logits is None:
            z = None if hold is None else hold[None].expand(net.model.num_layers, -1)
        else:
            stretch = _STRETCH if plugin.estimator == "hard_concrete" else {}
            kind = _GATE[plugin.estimator] if training else _EVAL_GATE[plugin.estimator]
            zs = []
            for k in range(plugin.num_layers):
                if kind is None:  # gumbel at evaluation: the mode of the Bernoulli
                    zs.append((logits[k] > 0).to(logits.dtype))
                    continue
                offset = layer_offset(0, k, self.total) + part.edge_start
                zs.append(gate(logits[k], kind, seed, offset, plugin.temperature, **stretch))
            z = torch.stack(zs)
            if hold is not None:
                z = z * hold.to(z.dtype)
        if z is None:
            self._weights = None
            return
        z_i = gather_rows([z.T.contiguous()], self.edge_plan)[0][self.edge_inverse].T.contiguous()
        self._weights = [(z[k], z_i[k]) for k in range(z.shape[0])]

    def weights(self, layer: int):
        return None if self._weights is None else self._weights[layer]

    def extra_loss(self, net, layers, batch, extra) -> dict:
        """The rank's shares of the L0 term and of the positives' reweighting; remembers the
        final embeddings of its rows (the amortised heads' next input)."""
        if not self.is_mask:
            return {}
        plugin = self.plugin
        logits, ids = self._step
        reweight = plugin.targets and net.model.training and logits is not None
        if net.model.training:
            plugin.examples += batch["size"]
            if plugin.head.amortised:
                plugin._embeddings = tuple(x.detach() for x in net.model.readout(layers))
        terms = {}
        if logits is None:
            return terms
        if plugin.control.l0 > 0:
            share = plugin.keep_prob(logits).sum() / (logits.shape[0] * self.total)
            terms["l0"] = plugin.control.l0 * share
        if reweight:
            keep = plugin.keep_prob(logits.detach()[:, ids]).mean(0)
            terms["targets"] = ((keep - 1) * batch["bpr"]).sum() / batch["size"]
        return terms


class PartitionedDGR(_Adapter):
    """The ``dgr`` plug-in on rank ``part.rank`` (module docstring); its global buffers are
    replaced by the rank's rows (they are not saved, so checkpoints are unchanged)."""

    def __init__(self, plugin: DGR, part, graph):
        self.plugin, self.part = plugin, part
        cfg = plugin.config
        self.self_loop = bool(cfg.dgr_gmp and cfg.dgr_self_loops)
        (u0, u1), (i0, i1) = part.users, part.items
        num_users = graph.num_users
        sqrt_d = plugin.sqrt_d.to(part.col_u.device)
        self.r_u, self.r_i = sqrt_d[u0:u1].clone(), sqrt_d[num_users + i0 : num_users + i1].clone()
        plugin.sqrt_d = sqrt_d.new_empty(0)  # the global vector is not needed any more
        if plugin.lec:
            # The items this rank's positives can be: those of its users' edges.
            self.lec_keys = torch.unique(part.item_ids(part.col_u))
            self.lec_items = plugin.lec_items[self.lec_keys].clone()
            self.lec_omega = plugin.lec_omega[self.lec_keys].clone()
            plugin.lec_items = plugin.lec_items.new_empty((0, plugin.lec_items.shape[1]))
            plugin.lec_omega = plugin.lec_omega.new_empty((0, plugin.lec_omega.shape[1]))

    def after_layer(self, layer, x_user, x_item):
        """GMP: (1 + α) Ê − α √d̂ (√d̂ᵀ Ê) / Z, the reduction summed over the ranks."""
        alpha = self.plugin.alpha[layer]
        if alpha == 0.0:
            return x_user, x_item
        r_u, r_i = self.r_u.to(x_user.dtype), self.r_i.to(x_item.dtype)
        s = _global_sum(torch.mv(x_user.T, r_u) + torch.mv(x_item.T, r_i))
        coef = alpha / self.plugin.z
        return (
            torch.addr(x_user, r_u, s, beta=1 + alpha, alpha=-coef),
            torch.addr(x_item, r_i, s, beta=1 + alpha, alpha=-coef),
        )

    def _rows(self, pos: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self.lec_keys, pos)

    def extra_items(self, users, pos) -> torch.Tensor:
        """The LEC neighbours of the positives, [B_r * (K1 + K2)] (their rows are fetched)."""
        if not self.plugin.lec:
            return pos.new_empty(0)
        return self.lec_items[self._rows(pos)].reshape(-1)

    def extra_loss(self, net, layers, batch, extra) -> dict:
        """The rank's share (its triples) of the LEC sum; ``extra``: the readout rows of
        ``extra_items``."""
        if not self.plugin.lec:
            return {}
        rows = self._rows(batch["pos"])
        e_u = batch["user_rows"]
        e_j = extra.reshape(e_u.shape[0], self.lec_items.shape[1], e_u.shape[1])
        scores = (e_j * e_u[:, None]).sum(-1)
        lam = self.plugin.lec_lambda.to(scores.dtype)
        weights = self.lec_omega[rows].to(scores.dtype) * lam
        return {"lec": -(weights * F.logsigmoid(scores)).sum()}


def adapters(model, part, graph, edge_bounds: list, rng_state) -> list:
    """One adapter per plug-in of ``model`` (in its order); ValueError for the others."""
    out = []
    for plugin in model.plugins:
        if isinstance(plugin, (EdgeMask, Holdout)):
            adapter = PartitionedMask(plugin, part, graph, edge_bounds, rng_state)
        elif isinstance(plugin, DGR):
            adapter = PartitionedDGR(plugin, part, graph)
        else:
            raise ValueError(
                f"plug-in {type(plugin).__name__} is single-process for now: distributed "
                f"training covers --{', --'.join(SUPPORTED)}"
            )
        adapter.bind(model)
        out.append(adapter)
    return out


__all__ = ["SUPPORTED", "PartitionedDGR", "PartitionedMask", "adapters"]
