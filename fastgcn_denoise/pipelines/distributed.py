"""Training on torch.distributed with the graph and the embedding tables partitioned (docs/distributed.md).

    torchrun --nproc_per_node P -m fastgcn_denoise train --model lightgcn ...
    fastgcn-denoise train --world-size P ...        (the same, torchrun started for you)

Rank r owns a contiguous range of users and one of items (``graph_partition``; set
``FASTGCN_PARTITION=degree`` for degree-balanced ranges): their embedding rows and Adam state,
the CSR rows of its users and the CSR(R^T) rows of its items. Each layer exchanges only the halo
rows (``ops.partitioned_spmm``). The algorithm is the single process's, step for step:

- the global BPR batch is drawn from one generator seeded like ``train``'s (every rank draws the
  same numbers) and each rank takes the triples whose edge it owns (its users'); the item rows
  of those triples (every layer's) come from their owners (``ops.halo_exchange.gather_rows``),
  the loss is the rank's share
  of the single process's (sums divided by the global batch size), so the gradients of the owned
  rows are the single process's and stay local; replicated dense weights (NGCF) are all-reduced;
- the init is the single process's (built whole with the run's seed, then sliced);
- evaluation: each rank ranks its own users against all items (the item table is all-gathered
  for it) and the metric sums are all-reduced.

Files under ``--out``: ``rank<r>-of-<P>.pt`` (per-rank checkpoints; ``--resume`` needs the same
P), ``checkpoint.pt`` (the merged single-file export, readable by ``evaluate``), ``log.jsonl``,
``metrics.json``. The plug-ins ``--mask``, ``--holdout`` and ``--dgr`` run partitioned too
(``distributed_plugins``); the other plug-ins and models are single-process for now.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..checkpoint import CHECKPOINT_FORMAT, save_atomic
from ..data.sampling import absent_items, shifted_keys
from ..graph import BipartiteGraph
from ..graph_partition import BALANCES, owner_of, partition_bounds, partition_graph
from ..models import model_entry
from ..ops import get_backend, resolve_name
from ..ops.halo_exchange import exchange_plan, gather_rows
from ..ops.partitioned_spmm import (
    PartitionedOperator,
    partitioned_spmm,
    weighted_partitioned_spmm,
)
from ..tasks import get_task
from ..tasks.evaluation import rank_metrics
from .distributed_plugins import SUPPORTED as SUPPORTED_PLUGINS
from .distributed_plugins import adapters
from .train import (
    TrainConfig,
    _resume_conflicts,
    _seed_everything,
    build_run_model,
    config_from_checkpoint,
    loop_state,
)

DIST_FORMAT = "fastgcn_denoise.distributed/1"
SUPPORTED_MODELS = ("lightgcn", "ngcf")
TIMEOUT_ENV, PARTITION_ENV = "FASTGCN_DIST_TIMEOUT", "FASTGCN_PARTITION"
DEFAULT_TIMEOUT_S = 600.0
_RANK_FILE = re.compile(r"rank(\d+)-of-(\d+)\.pt$")


# ---------------------------------------------------------------------- launching
def requested() -> bool:
    """Whether this process was started by torchrun (or another torch.distributed launcher)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def launch(argv: list) -> int:
    """``... --world-size P ...``: run the same command under ``torchrun --nproc_per_node P``
    on this machine (``--standalone``: a free port on 127.0.0.1); returns its exit status."""
    argv = list(argv)
    at = argv.index("--world-size")
    try:
        world = int(argv[at + 1])
    except (IndexError, ValueError):
        raise ValueError("--world-size needs a number of processes, e.g. --world-size 2") from None
    if world < 1:
        raise ValueError(f"--world-size must be >= 1, got {world}")
    del argv[at : at + 2]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={world}",
        "-m",
        "fastgcn_denoise",
        *argv,
    ]
    return subprocess.call(cmd)


def init_process_group(device: torch.device) -> tuple[int, int]:
    """(rank, world size), initialising the default group from torchrun's environment when it is
    not yet: gloo on CPU, NCCL on CUDA, with a timeout (``FASTGCN_DIST_TIMEOUT`` seconds, default
    600) so that a dead rank stops the others instead of hanging them."""
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return dist.get_rank(), dist.get_world_size()


def cli_config(args, build) -> TrainConfig:
    """The run's config from the CLI's ``args`` (``build``: the CLI's flag reader). ``--resume``
    before the merged ``checkpoint.pt`` exists (an interrupted run) continues the run with the
    settings saved in this rank's file (other flags are ignored then)."""
    out = Path(getattr(args, "out", None) or TrainConfig.out)
    if not getattr(args, "resume", False) or (out / "checkpoint.pt").exists():
        return build(args)
    ckpt = _load_rank_checkpoint(out, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
    return config_from_checkpoint(ckpt, resume=True, progress=False)


def _check_supported(config: TrainConfig) -> None:
    if config.model not in SUPPORTED_MODELS:
        raise ValueError(
            f"--model {config.model} is single-process for now: distributed training "
            f"covers --model {', '.join(SUPPORTED_MODELS)} (run without torchrun / "
            "--world-size)"
        )
    other = [name for name in config.plugins if name not in SUPPORTED_PLUGINS]
    if other:
        raise ValueError(
            f"plug-in --{other[0]} is single-process for now: distributed training covers "
            f"--{', --'.join(SUPPORTED_PLUGINS)} (drop it or run without torchrun / --world-size)"
        )
    if "mask" in config.plugins and "holdout" in config.plugins:
        raise ValueError("--holdout with --mask: the mask holds the positives out itself")
    if config.model_config.get("node_dropout", 0) > 0:
        raise ValueError(
            "ngcf --node-dropout > 0 is single-process for now (distributed NGCF "
            "runs with --node-dropout 0)"
        )


def data_fingerprint(graph: BipartiteGraph, info: dict) -> str:
    """sha256 of the training CSR and the data summary: equal on ranks that hold the same data."""
    h = hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode())
    for t in (graph.rowptr_u, graph.col_item):
        h.update(t.cpu().numpy().tobytes())
    return h.hexdigest()


def check_same(value, what: str, group=None) -> None:
    """ValueError on every rank when the ranks disagree on ``value`` (all_gather_object)."""
    values = [None] * dist.get_world_size(group)
    dist.all_gather_object(values, value, group=group)
    odd = [r for r, v in enumerate(values) if v != values[0]]
    if odd:
        raise ValueError(
            f"the ranks disagree on {what}: rank 0 has {values[0]!r}, rank "
            f"{odd[0]} has {values[odd[0]]!r}; give every rank the same --data, "
            "--seed, --noise and --valid-fraction"
        )


# ---------------------------------------------------------------------- the partitioned model
class PartitionedRecommender:
    """A ``GraphRecommender`` whose tables hold only the owned rows, with its partition.

    ``model``: the backbone with ``user_emb`` / ``item_emb`` already sliced to the owned rows;
    ``part``: the rank's ``LocalPartition`` on the model's device; ``plugins``: the adapters of
    the model's plug-ins (``distributed_plugins.adapters``).
    """

    def __init__(self, model, part, backend=None, plugins=()):
        self.model, self.part, self.backend = model, part, backend
        self.plugins = list(plugins)
        self.plan = exchange_plan(part.requests)
        self.self_loop = any(getattr(a, "self_loop", False) for a in self.plugins)
        self.op = PartitionedOperator(
            part, self.plan, dtype=model.user_emb.dtype, backend=backend, self_loop=self.self_loop
        )
        # state_dict keys sliced by rank -> how they merge into one checkpoint
        self.partitioned = {"user_emb": 0, "item_emb": 0}
        for a in self.plugins:
            self.partitioned.update(a.partitioned)
        self.shared = [p for n, p in model.named_parameters() if n not in self.partitioned]
        num_items = part.num_items
        items = part.item_ids(part.col_u)
        local_users = torch.repeat_interleave(
            torch.arange(part.num_own_users, device=items.device), part.rowptr_u.diff()
        )
        # Negative sampling on the owned rows: the single process's keys, user ids made local.
        self.shifted = shifted_keys(local_users * num_items + items, part.rowptr_u[:-1], num_items)
        self.remote_rows_per_step = 0  # item rows the last step fetched from other ranks

    # -- forward
    def _propagate(self, layer: int, x_user, x_item):
        weights = None
        for a in self.plugins:
            weights = weights if weights is not None else a.weights(layer)
        if weights is None:
            return partitioned_spmm(self.op, x_user, x_item)
        if weights[0].requires_grad:
            return weighted_partitioned_spmm(
                self.part, self.plan, x_user, x_item, *weights, self.self_loop, self.backend
            )
        op = PartitionedOperator(
            self.part, self.plan, *weights, x_user.dtype, self.backend, self.self_loop
        )
        return partitioned_spmm(op, x_user, x_item)

    def layers(self, positives=None):
        """[(E_user^(k), E_item^(k)) of the owned rows for k = 0..K]; ``positives``: the local
        edge ids of the training batch's positives (None at evaluation)."""
        m = self.model
        for a in self.plugins:
            a.begin(self, m.training, positives)
        outs = [(m.user_emb, m.item_emb)]
        for k in range(m.num_layers):
            side = self._propagate(k, *outs[-1])
            out = m.transform(k, *outs[-1], *side)
            for a in self.plugins:
                out = a.after_layer(k, *out)
            outs.append(out)
        return outs

    def triples(self, edges: torch.Tensor, unif: torch.Tensor):
        """The owned part of a global BPR batch (``sample_bpr``'s edges and uniforms): (local user
        rows, global positive items, global negative items, the positives' local edge ids), as
        the single process samples them."""
        part = self.part
        start, count = part.edge_start, part.col_u.shape[0]
        own = (edges >= start) & (edges < start + count)
        local = edges[own] - start
        users = torch.searchsorted(part.rowptr_u[1:], local, right=True)
        pos = part.item_ids(part.col_u[local])
        available = part.num_items - part.rowptr_u.diff()[users]
        rank = torch.minimum((unif[own] * available).long(), available - 1)
        neg = absent_items(self.shifted, part.rowptr_u[:-1], users, rank, part.num_items)
        return users, pos, neg, local

    def item_plan(self, items: torch.Tensor):
        """(plan, inverse): the exchange that fetches the rows of the distinct global ``items``
        from their owners, and where each of ``items`` is among them."""
        part = self.part
        uniq, inverse = torch.unique(items, return_inverse=True)
        owners = owner_of(uniq, part.item_bounds)
        plan = exchange_plan(
            [uniq[owners == s] - part.item_bounds[s] for s in range(part.world_size)]
        )
        self.remote_rows_per_step = plan.rows_received - plan.recv_counts[part.rank]
        # Owners are ascending in the ids, so the rows arrive in ``uniq``'s order.
        return plan, inverse

    def loss(self, users, pos, neg, batch_size: int, positives=None) -> dict:
        """This rank's share of the single process's loss terms for a global batch of
        ``batch_size`` triples (summing the ranks' shares gives the single process's terms);
        ``positives``: the triples' local edge ids (``triples``), for the plug-ins.

        As ``GraphRecommender.batch_loss``, only the batch's rows are read out (the readouts
        are row-wise); the item rows of every layer (the triples', and those the plug-ins' loss
        terms read) come from their owners in one message.
        """
        layers = self.layers(positives)
        extras = [a.extra_items(users, pos) for a in self.plugins]
        plan, inverse = self.item_plan(torch.cat([pos, neg, *extras]))
        fetched = gather_rows([x_i for _, x_i in layers], plan)
        rows = [(x_u[users], got[inverse]) for (x_u, _), got in zip(layers, fetched)]
        u, items = self.model.readout(rows)
        n = pos.shape[0]
        per = F.softplus((u * items[n : 2 * n]).sum(-1) - (u * items[:n]).sum(-1))
        bpr = per.sum() / batch_size
        ego_sq = rows[0][0].pow(2).sum() + rows[0][1][: 2 * n].pow(2).sum()
        reg = self.model.decay * ego_sq / (2 * batch_size)
        terms = {"loss": bpr + reg, "bpr": bpr, "reg": reg}
        batch = {"size": batch_size, "pos": pos, "bpr": per, "user_rows": u}
        at = 2 * n
        for a, extra in zip(self.plugins, extras):
            got = items[at : at + extra.shape[0]]
            at += extra.shape[0]
            for name, value in a.extra_loss(self, layers, batch, got).items():
                if name in terms:
                    raise ValueError(f"loss term {name!r} is reported twice")
                terms[name] = value
                terms["loss"] = terms["loss"] + value
        return terms

    def reduce_shared_grads(self) -> None:
        """Sum the replicated weights' gradients over the ranks (the loss is the ranks' sum)."""
        if self.part.world_size == 1:
            return
        for p in self.shared:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)

    @torch.no_grad()
    def final(self):
        """The readout of the owned rows (evaluation mode)."""
        was = self.model.training
        self.model.eval()
        try:
            return self.model.readout(self.layers())
        finally:
            self.model.train(was)

    def nbytes(self, optimizer=None) -> dict:
        """Bytes this rank keeps: ``tables`` (owned embedding rows + their Adam state), ``graph``
        (the partition's index arrays and exchange plan), ``edge_weights`` (w and r of the
        operator), ``sampler`` (the negative-sampling keys), ``plugins`` (the plug-ins' per-rank
        state: a mask's logits, features and edge exchange plan, DGR's LEC rows)."""
        tables = sum(
            p.numel() * p.element_size() for p in (self.model.user_emb, self.model.item_emb)
        )
        if optimizer is not None:
            for p in (self.model.user_emb, self.model.item_emb):
                tables += sum(
                    t.numel() * t.element_size()
                    for t in optimizer.state.get(p, {}).values()
                    if torch.is_tensor(t) and t.dim() > 0
                )

        def size(*ts):
            return sum(t.numel() * t.element_size() for t in ts)

        return {
            "tables": tables,
            "graph": self.part.nbytes() + size(self.plan.send_index),
            "edge_weights": size(self.op.w_u, self.op.w_i, self.op.r_u, self.op.r_i),
            "sampler": size(self.shifted),
            "plugins": sum(a.nbytes() for a in self.plugins),
        }


def slice_model(model, part) -> None:
    """Keep only the owned rows of ``model``'s tables (in place)."""
    (u0, u1), (i0, i1) = part.users, part.items
    model.user_emb = nn.Parameter(model.user_emb.detach()[u0:u1].clone())
    model.item_emb = nn.Parameter(model.item_emb.detach()[i0:i1].clone())
    model.num_users, model.num_items = u1 - u0, i1 - i0


def _csr_rows(graph: BipartiteGraph, u0: int, u1: int) -> tuple:
    """(rowptr [n + 1], items) of users [u0, u1) of a graph, as numpy (rebuilt at evaluation)."""
    rowptr = graph.rowptr_u[u0 : u1 + 1].cpu()
    return (
        (rowptr - rowptr[0]).numpy(),
        graph.col_item[int(rowptr[0]) : int(rowptr[-1])].cpu().numpy(),
    )


# ---------------------------------------------------------------------- evaluation
def _all_items(final_i: torch.Tensor, part) -> torch.Tensor:
    """[I, D]: every rank's item rows (all_gather, padded to the largest share)."""
    if part.world_size == 1:
        return final_i
    sizes = [part.item_bounds[s + 1] - part.item_bounds[s] for s in range(part.world_size)]
    pad = final_i.new_zeros((max(sizes), final_i.shape[1]))
    pad[: final_i.shape[0]] = final_i
    parts = [torch.empty_like(pad) for _ in sizes]
    dist.all_gather(parts, pad)
    return torch.cat([t[:n] for t, n in zip(parts, sizes)])


def evaluate_partitioned(
    net: PartitionedRecommender, target: tuple, exclude: list, ks, batch_users: int
) -> dict:
    """Recall/NDCG@K over all test users: each rank ranks its users, the sums are all-reduced.

    ``target`` / ``exclude``: (rowptr, items) numpy CSR rows of the owned users."""
    part = net.part
    final_u, final_i = net.final()
    items_t = _all_items(final_i, part).t().contiguous()
    device = final_u.device

    def graph(rows):
        return BipartiteGraph.from_csr(rows[0], rows[1], part.num_items).to(device)

    local = rank_metrics(
        lambda users: final_u[users] @ items_t,
        graph(target),
        [graph(g) for g in exclude],
        ks,
        batch_users,
        fresh_scores=True,
    )
    keys = [k for k in local if k != "users"]
    sums = torch.tensor(
        [local[k] * local["users"] for k in keys] + [local["users"]], dtype=torch.float64
    )
    if part.world_size > 1:
        sums = sums.to(device)
        dist.all_reduce(sums)
        sums = sums.cpu()
    n = float(sums[-1])
    out = {k: (float(v) / n if n else 0.0) for k, v in zip(keys, sums[:-1])}
    out["users"] = int(n)
    return out


# ---------------------------------------------------------------------- checkpoints
def rank_file(out: Path, rank: int, world: int) -> Path:
    return Path(out) / f"rank{rank}-of-{world}.pt"


def _load_rank_checkpoint(out: Path, rank: int, world: int) -> dict:
    path = rank_file(out, rank, world)
    if not path.exists():
        others = sorted(
            {
                int(m.group(2))
                for p in Path(out).glob("rank*-of-*.pt")
                if (m := _RANK_FILE.search(p.name))
            }
        )
        if others:
            raise ValueError(
                f"resume: {out} holds a checkpoint written by "
                f"{' / '.join(map(str, others))} ranks, and this run has {world}; "
                f"resume with --nproc_per_node {others[0]} (the partition depends on "
                "it), or start a new run"
            )
        raise ValueError(f"resume: no checkpoint at {path} (train without --resume first)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("format") != DIST_FORMAT or ckpt.get("world_size") != world:
        raise ValueError(f"resume: {path} is not a {world}-rank distributed checkpoint")
    return ckpt


def merge_checkpoints(out) -> Path:
    """Merge ``out``'s ``rank<r>-of-<P>.pt`` into one single-process ``checkpoint.pt`` (the
    tables, and what the plug-ins hold per rank, concatenated in rank order; replicated weights
    from rank 0) for ``evaluate``, ``denoise --checkpoint`` or any single-process use. Returns
    its path."""
    out = Path(out)
    found = {}
    for p in out.glob("rank*-of-*.pt"):
        m = _RANK_FILE.search(p.name)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = p
    if not found:
        raise ValueError(f"{out}: no rank<r>-of-<P>.pt checkpoints to merge")
    if len(found) > 1:
        raise ValueError(f"{out} mixes runs of {sorted(found)} ranks; keep one run per directory")
    ((world, files),) = found.items()
    missing = sorted(set(range(world)) - set(files))
    if missing:
        raise ValueError(f"{out}: rank files {missing} of {world} are missing")
    ckpts = [torch.load(files[r], map_location="cpu", weights_only=False) for r in range(world)]

    layout = ckpts[0].get("partitioned", {"user_emb": 0, "item_emb": 0})

    def merged(key):
        if ckpts[0][key] is None:
            return None
        state = dict(ckpts[0][key])
        for name, how in layout.items():
            parts = [c[key][name] for c in ckpts]
            if how == "embeddings":  # a mask head's input: (f_user, f_item) rows of each rank
                state[name] = dict(parts[0])
                if parts[0]["embeddings"] is not None:
                    state[name]["embeddings"] = tuple(
                        torch.cat([p["embeddings"][j] for p in parts]) for j in range(2)
                    )
            else:
                state[name] = torch.cat(parts, int(how))
        return state

    first = ckpts[0]
    path = out / "checkpoint.pt"
    save_atomic(
        {
            "format": CHECKPOINT_FORMAT,
            "config": first["config"],
            "model_name": first["model_name"],
            "task": "ranking",
            "data_info": first["data_info"],
            "model": merged("model"),
            "optimizer": None,
            "best_model": merged("best_model"),
            "state": first["state"],
            "rng": None,
            "merged_from": {
                "world_size": world,
                "user_bounds": first["user_bounds"],
                "item_bounds": first["item_bounds"],
            },
        },
        path,
    )
    return path


# ---------------------------------------------------------------------- the loop
def setup(config: TrainConfig, balance: str | None = None):
    """(prepared data slices, PartitionedRecommender, optimizer, info) for this rank: loads the
    data, checks the ranks agree on it, partitions, builds and slices the model."""
    from .train import build_optimizer

    _check_supported(config)
    device = torch.device(config.device)
    rank, world = init_process_group(device)
    balance = balance or os.environ.get(PARTITION_ENV, "contiguous")
    if balance not in BALANCES:
        raise ValueError(f"{PARTITION_ENV}={balance!r}: choose one of {', '.join(BALANCES)}")
    task = get_task(model_entry(config.model).task)
    _seed_everything(config.seed)
    prep = task.prepare(config)
    train = prep.train
    fingerprint = data_fingerprint(train, prep.info)
    if world > 1:
        check_same(fingerprint, "the training data (sha256 of its CSR)")
    user_bounds = partition_bounds(train.deg_u.cpu(), world, balance)
    item_bounds = partition_bounds(train.deg_i.cpu(), world, balance)
    part = partition_graph(train, rank, user_bounds, item_bounds).to(device)
    model = build_run_model(config, task.context(prep, config))
    # The single process draws its mask seeds from the torch RNG as it is after the init.
    rng_after_init = torch.get_rng_state()
    slice_model(model, part)
    edge_bounds = [int(train.rowptr_u[b]) for b in user_bounds]
    plugins = adapters(model, part, train, edge_bounds, rng_after_init)
    u0, u1 = part.users
    splits = {
        name: None if g is None else _csr_rows(g, u0, u1)
        for name, g in (("valid", prep.valid), ("test", prep.test))
    }
    info = {
        "data_info": prep.info,
        "fingerprint": fingerprint,
        "warnings": list(prep.warnings),
        "rank": rank,
        "world_size": world,
        "balance": balance,
        "user_bounds": user_bounds,
        "item_bounds": item_bounds,
    }
    del prep, train
    gc.collect()  # the global graph and data are dropped: the rank keeps its share
    net = PartitionedRecommender(model, part, config.backend, plugins)
    return splits, net, build_optimizer(model, config), info


def train_distributed(config: TrainConfig, balance: str | None = None) -> dict | None:
    """Train under torch.distributed (module docstring); rank 0 returns metrics.json's dict, the
    other ranks None. Every rank must call it with the same config."""
    config = config.validate()
    try:
        return _train(config, balance)
    except (RuntimeError, dist.DistBackendError) as exc:
        failure = collective_failure(exc)
        if failure is None:
            raise
        raise failure from exc


def collective_failure(exc: Exception) -> RuntimeError | None:
    """The one-line error for a collective that failed because a peer died or stopped answering
    (gloo: connection reset or closed; any backend: the group's timeout), else None."""
    text = str(exc)
    if not any(s in text for s in ("Connection", "connection", "timed out", "Timeout", "closed")):
        return None
    rank = dist.get_rank() if dist.is_initialized() else "?"
    return RuntimeError(
        f"rank {rank}: a collective failed: another rank died or stopped "
        f"answering (timeout {os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)} s, "
        f"set by {TIMEOUT_ENV}): {text.splitlines()[0] if text else type(exc)}"
    )


def _exclude(splits, train_rows, split):
    return [train_rows] + ([splits["valid"]] if split == "test" and splits["valid"] else [])


def _train(config: TrainConfig, balance) -> dict | None:
    device = torch.device(config.device)
    get_backend(device, config.backend)
    out = Path(config.out)
    t_start = time.perf_counter()
    splits, net, optimizer, info = setup(config, balance)
    t_data = time.perf_counter() - t_start
    rank, world, part = info["rank"], info["world_size"], net.part
    model = net.model
    headline = f"recall@{config.ks[0]}"
    num_train = info["data_info"]["train"]

    def say(msg):
        if config.verbose and rank == 0:
            print(msg, file=sys.stderr, flush=True)

    sampler = torch.Generator().manual_seed(config.seed)  # the single process's sampler
    # Dropout differs per rank (its rows); the BPR draws do not (the sampler above).
    torch.manual_seed(config.seed + rank)
    state = loop_state()
    best_model = None
    if config.resume:
        ckpt = _load_rank_checkpoint(out, rank, world)
        changed = _resume_conflicts(config, ckpt["config"])
        if ckpt["fingerprint"] != info["fingerprint"] or ckpt["user_bounds"] != info["user_bounds"]:
            changed.append("the data or the partition (--data, --seed, FASTGCN_PARTITION)")
        if changed:
            raise ValueError(
                f"resume: the run's settings differ from "
                f"{rank_file(out, rank, world)}: " + ", ".join(changed)
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        sampler.set_state(ckpt["rng"]["sampler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        for a, rng in zip(net.plugins, ckpt["rng"].get("plugins", [])):
            if rng is not None:
                a.set_rng_state(rng)
        state.update(ckpt["state"])
        best_model = ckpt["best_model"]
        say(f"resuming {out} after epoch {state['epoch']} on {world} ranks")
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    if rank == 0:
        kept = []
        if log_path.exists():
            kept = [
                line
                for line in log_path.read_text().splitlines()
                if line.strip() and json.loads(line)["epoch"] <= state["epoch"]
            ]
        log_path.write_text("".join(line + "\n" for line in kept))

    def save_checkpoint():
        save_atomic(
            {
                "format": DIST_FORMAT,
                "world_size": world,
                "rank": rank,
                "user_bounds": info["user_bounds"],
                "item_bounds": info["item_bounds"],
                "fingerprint": info["fingerprint"],
                "partitioned": net.partitioned,
                "config": dataclasses.asdict(config),
                "model_name": config.model,
                "data_info": info["data_info"],
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "best_model": best_model,
                "state": dict(state),
                "rng": {
                    "sampler": sampler.get_state(),
                    "torch": torch.get_rng_state(),
                    "plugins": [
                        a.rng_state() if hasattr(a, "rng_state") else None for a in net.plugins
                    ],
                },
            },
            rank_file(out, rank, world),
        )

    def train_rows():
        rowptr = part.rowptr_u.cpu().numpy()
        return rowptr, part.item_ids(part.col_u).cpu().numpy()

    def evaluate(split):
        return evaluate_partitioned(
            net, splits[split], _exclude(splits, train_rows(), split), config.ks, config.eval_batch
        )

    say(
        f"{config.model} on {info['data_info']['name']} over {world} ranks ({info['balance']} "
        f"ranges): rank 0 owns {part.num_own_users} users, {part.num_own_items} items, "
        f"{part.col_u.shape[0]} + {part.col_i.shape[0]} edge rows, halo {part.num_halo} rows"
    )
    has_valid = splits["valid"] is not None
    early = has_valid and config.select == "best"
    stopped = early and state["evals_since_best"] >= config.patience
    steps = math.ceil(num_train / config.batch_size)
    for epoch in range(state["epoch"] + 1, 0 if stopped else config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        # sample_bpr's draws, in its order: every rank draws the same global batch.
        edges = torch.randint(num_train, (num_train,), generator=sampler)
        unif = torch.rand(num_train, generator=sampler, dtype=torch.float64)
        sums, names = None, None
        for step in range(steps):
            sl = slice(step * config.batch_size, (step + 1) * config.batch_size)
            users, pos, neg, ids = net.triples(edges[sl].to(device), unif[sl].to(device))
            terms = net.loss(users, pos, neg, edges[sl].shape[0], ids)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            net.reduce_shared_grads()
            optimizer.step()
            if names is None:  # every term, as the single process logs them
                names = list(terms)
                sums = torch.zeros(len(names), dtype=torch.float64, device=device)
            sums += (
                torch.stack([terms[k].detach().reshape(()).double() for k in names])
                * edges[sl].shape[0]
            )
        if world > 1:
            dist.all_reduce(sums)
        terms = dict(zip(names, (sums / num_train).tolist()))
        if not math.isfinite(terms["loss"]):
            raise FloatingPointError(
                f"epoch {epoch}: the training loss is {terms['loss']}; lower --lr"
            )
        seconds = time.perf_counter() - t0
        state["train_seconds"] += seconds
        state["epoch"] = epoch
        record = {"epoch": epoch, **terms, "seconds": seconds}
        line = f"epoch {epoch:4d}  loss {terms['loss']:.4f}  ({seconds:.1f} s)"
        if has_valid and (epoch % config.eval_every == 0 or epoch == config.epochs):
            t1 = time.perf_counter()
            metrics = evaluate("valid")
            record["eval_seconds"] = time.perf_counter() - t1
            state["eval_seconds"] += record["eval_seconds"]
            state["evals"] += 1
            record["valid"] = metrics
            if state["best"] is None or metrics[headline] > state["best"]["metrics"][headline]:
                state["best"] = {"epoch": epoch, "metrics": metrics}
                state["evals_since_best"] = 0
                best_model = {
                    k: v.detach().cpu().clone() if torch.is_tensor(v) else v
                    for k, v in model.state_dict().items()
                }
            else:
                state["evals_since_best"] += 1
            line += f"  valid {headline} {metrics[headline]:.4f}"
            stopped = early and state["evals_since_best"] >= config.patience
        say(line)
        if rank == 0:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        save_checkpoint()
        if stopped:
            say(f"early stop: no better valid {headline} in {config.patience} evaluations")
            break

    if config.select == "best":
        if state["best"] is None:
            raise ValueError(f"{out}: no evaluated epoch to select; raise --epochs")
        selected = state["best"]["epoch"]
        model.load_state_dict(best_model)
    else:
        selected = state["epoch"]
    t2 = time.perf_counter()
    test_metrics = evaluate("test")
    memory = net.nbytes(optimizer)
    per_rank = [None] * world
    if world > 1:
        dist.all_gather_object(per_rank, {**memory, "halo_rows": part.num_halo})
        dist.barrier()  # every rank file is written before rank 0 merges them
    else:
        per_rank = [{**memory, "halo_rows": part.num_halo}]
    if rank != 0:
        return None
    export = merge_checkpoints(out)
    result = {
        "model": config.model,
        "task": "ranking",
        "data": info["data_info"],
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
        "backend": resolve_name(device, config.backend),
        "distributed": {
            "world_size": world,
            "balance": info["balance"],
            "user_bounds": info["user_bounds"],
            "item_bounds": info["item_bounds"],
            "per_rank": per_rank,
            "export": str(export),
        },
        "selection": {
            "rule": "best validation " + headline if config.select == "best" else "the last epoch",
            "epoch": selected,
        },
        "best_epoch": selected,
        "epochs_run": state["epoch"],
        "valid": state["best"]["metrics"] if state["best"] else None,
        "test": test_metrics,
        "warnings": info["warnings"],
        "timing": {
            "data_seconds": t_data,
            "train_seconds": state["train_seconds"],
            "seconds_per_epoch": state["train_seconds"] / max(state["epoch"], 1),
            "eval_seconds": state["eval_seconds"],
            "test_seconds": time.perf_counter() - t2,
            "device": str(device),
        },
        "out": str(out),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def summary(result: dict) -> str:
    """The lines the CLI prints for a distributed run."""
    k = result["config"]["ks"][0]
    d, t = result["distributed"], result["timing"]
    return (
        f"{result['model']} on {result['data']['name']} over {d['world_size']} ranks: selected "
        f"{result['selection']['rule']}, epoch {result['best_epoch']} of "
        f"{result['epochs_run']}, {t['seconds_per_epoch']:.2f} s/epoch\n"
        f"test ({result['test']['users']} users): Recall@{k} {result['test'][f'recall@{k}']:.4f}"
        f"  NDCG@{k} {result['test'][f'ndcg@{k}']:.4f}\n"
        f"written to {result['out']}/metrics.json; merged export {d['export']}"
    )


__all__ = [
    "DIST_FORMAT",
    "SUPPORTED_MODELS",
    "PartitionedRecommender",
    "collective_failure",
    "data_fingerprint",
    "evaluate_partitioned",
    "init_process_group",
    "launch",
    "merge_checkpoints",
    "requested",
    "setup",
    "slice_model",
    "summary",
    "train_distributed",
]
