"""Distributed training on a partitioned graph: the partition, the propagation on it, and P = 2
gloo processes against the single process (same embeddings after a few steps, same metrics)."""

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import DEVICE, backend_params

from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.cli import main as cli_main
from fastgcn_denoise.graph_partition import partition_bounds, partition_graph
from fastgcn_denoise.ops import masked_spmm, sample_mask
from fastgcn_denoise.ops.halo_exchange import exchange_plan
from fastgcn_denoise.ops.partitioned_spmm import (
    PartitionedOperator,
    partition_mask,
    partitioned_spmm,
    weighted_partitioned_spmm,
)
from fastgcn_denoise.pipelines import distributed
from fastgcn_denoise.pipelines.train import make_config, train


def _graph(seed=0, users=31, items=40, edges=220):
    g = torch.Generator().manual_seed(seed)
    return BipartiteGraph(
        torch.randint(0, users, (edges,), generator=g),
        torch.randint(0, items, (edges,), generator=g),
        users,
        items,
    )


def _write_data(path, seed=0, users=60, items=50):
    rng = np.random.default_rng(seed)
    path.mkdir()
    with open(path / "train.txt", "w") as tr, open(path / "test.txt", "w") as te:
        for u in range(users):
            items_u = rng.choice(items, size=int(rng.integers(6, 12)), replace=False)
            tr.write(" ".join(map(str, [u, *sorted(items_u[:-2])])) + "\n")
            te.write(" ".join(map(str, [u, *sorted(items_u[-2:])])) + "\n")
    return str(path)


# The plug-ins that run distributed, each against its single-process run: gumbel gates with an
# amortised head on degree features, the keep target, the holdout and the reweighted positives;
# hard concrete with free per-edge logits, L0 and a warm-up; DGR (GMP with self-loops and LEC).
PLUGIN_RUNS = {
    "mask": {"plugins": ["mask"], "mask_warmup": 0.0, "mask_head": "linear"},
    "mask-free": {
        "plugins": ["mask"],
        "mask_head": "free",
        "mask_estimator": "hard_concrete",
        "mask_warmup": 0.5,
        "mask_l0": 0.1,
    },
    "dgr": {"plugins": ["dgr"]},
}


def _config(data, out, **kw):
    return make_config(
        kw.pop("model", "lightgcn"),
        data=data,
        out=str(out),
        epochs=2,
        batch_size=48,
        eval_every=1,
        seed=3,
        verbose=False,
        progress=False,
        **kw,
    )


# ---------------------------------------------------------------------- the partition
@pytest.mark.parametrize("balance", ["contiguous", "degree"])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_partition_covers_each_edge_once_with_its_halo(balance, world):
    g = _graph()
    ub, ib = partition_bounds(g.deg_u, world, balance), partition_bounds(g.deg_i, world, balance)
    assert ub[0] == 0 and ub[-1] == g.num_users and ib[-1] == g.num_items
    parts = [partition_graph(g, r, ub, ib) for r in range(world)]
    assert sum(p.col_u.shape[0] for p in parts) == g.num_edges
    assert torch.equal(
        torch.sort(torch.cat([p.eid_i for p in parts]))[0], torch.arange(g.num_edges)
    )
    users, items = g.edges()
    for p in parts:
        keys = p.buffer_keys
        eid_u = p.edge_start + torch.arange(p.col_u.shape[0])
        # Every buffer column names the right endpoint; the halo holds only remote rows.
        assert torch.equal(keys[p.col_u] - g.num_users, items[eid_u])
        assert torch.equal(keys[p.col_i], users[p.eid_i])
        assert torch.equal(p.item_ids(p.col_u), items[eid_u])
        own = p.num_own_users + p.num_own_items
        # The requests (derived from halo_keys) name the halo rows in the owners' blocks.
        asked = []
        for s, rows in enumerate(p.requests):
            nu_s = ub[s + 1] - ub[s]
            asked.append(torch.where(rows < nu_s, ub[s] + rows, g.num_users + ib[s] + rows - nu_s))
        assert torch.equal(torch.cat(asked), p.halo_keys)
        halo = keys[own:]
        u0, u1 = p.users
        i0, i1 = p.items
        assert not (
            ((halo >= u0) & (halo < u1)) | ((halo >= g.num_users + i0) & (halo < g.num_users + i1))
        ).any()


def test_degree_balance_evens_out_edges():
    deg = torch.tensor([50, 1, 1, 1, 1, 1, 1, 50, 1, 1])
    cuts = partition_bounds(deg, 2, "degree")
    halves = [int(deg[cuts[r] : cuts[r + 1]].sum()) for r in range(2)]
    assert abs(halves[0] - halves[1]) <= 2, cuts
    with pytest.raises(ValueError, match="balance"):
        partition_bounds(deg, 2, "metis")


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("mode", ["ones", "bernoulli"])
def test_one_rank_propagation_is_masked_spmm(mode, backend):
    g = _graph(1).to(DEVICE)
    p = partition_graph(g, 0, [0, g.num_users], [0, g.num_items]).to(DEVICE)
    dtype = torch.float32 if backend == "triton" else torch.float64
    logits = torch.randn(g.num_edges, dtype=dtype, device=DEVICE)
    z_u = z_i = None
    if mode != "ones":
        z_u, z_i = partition_mask(p, logits, logits[p.eid_i], mode, seed=5, offset=11)
        z = sample_mask(g, logits, mode, seed=5, offset=11)
        assert torch.equal(z_u, z) and torch.equal(z_i, z[p.eid_i])
    op = PartitionedOperator(p, exchange_plan(p.requests), z_u, z_i, dtype=dtype, backend=backend)
    xu = torch.randn(g.num_users, 4, dtype=dtype, device=DEVICE, requires_grad=True)
    xi = torch.randn(g.num_items, 4, dtype=dtype, device=DEVICE, requires_grad=True)
    got = partitioned_spmm(op, xu, xi)
    want = masked_spmm(
        g, xu, xi, None if mode == "ones" else logits, mode, seed=5, offset=11, backend="reference"
    )
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    gy = [torch.randn_like(t) for t in want]
    for a, b in zip(
        torch.autograd.grad(got, (xu, xi), gy), torch.autograd.grad(want, (xu, xi), gy)
    ):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("self_loop", [False, True])
def test_one_rank_weighted_propagation_is_masked_spmm(self_loop, backend):
    # The learned-mask path: gradients reach the edge weights through the renormalisation.
    g = _graph(3).to(DEVICE)
    p = partition_graph(g, 0, [0, g.num_users], [0, g.num_items]).to(DEVICE)
    dtype = torch.float32 if backend == "triton" else torch.float64
    gen = torch.Generator().manual_seed(2)
    w = torch.rand(g.num_edges, dtype=dtype, generator=gen).to(DEVICE)
    w[::5] = 0  # held-out edges
    xu = torch.randn(g.num_users, 3, dtype=dtype, generator=gen).to(DEVICE)
    xi = torch.randn(g.num_items, 3, dtype=dtype, generator=gen).to(DEVICE)
    gy = [torch.randn_like(xu), torch.randn_like(xi)]
    grads = []
    for ours in (True, False):
        leaves = [t.clone().requires_grad_() for t in (xu, xi, w)]
        if ours:
            z_i = leaves[2][p.eid_i]  # the item side's copy of the same weights
            out = weighted_partitioned_spmm(
                p, exchange_plan(p.requests), *leaves[:2], leaves[2], z_i, self_loop, backend
            )
        else:
            out = masked_spmm(
                g, *leaves[:2], edge_weight=leaves[2], self_loop=self_loop, backend="reference"
            )
        grads.append([*out, *torch.autograd.grad(out, leaves, gy)])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_unsupported_runs_are_refused(tmp_path, capsys, monkeypatch):
    data = _write_data(tmp_path / "d")
    assert cli_main(["denoise", "--world-size", "2"]) == 2
    assert "denoise is single-process for now: only train" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")  # started by torchrun
    assert cli_main(["evaluate", "--checkpoint", str(tmp_path)]) == 2
    assert "evaluate is single-process for now" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--model simgcl is single-process for now"):
        distributed._check_supported(_config(data, tmp_path / "o", model="simgcl"))
    for plugin in ("rgcf", "t-ce"):
        with pytest.raises(ValueError, match=f"plug-in --{plugin} is single-process for now"):
            distributed._check_supported(_config(data, tmp_path / "o", plugins=[plugin]))
    with pytest.raises(ValueError, match="--holdout with --mask"):
        distributed._check_supported(_config(data, tmp_path / "o", plugins=["mask", "holdout"]))
    with pytest.raises(ValueError, match="--world-size needs a number"):
        distributed.launch(["train", "--world-size", "two"])


# ---------------------------------------------------------------------- P processes (gloo)
def _worker(rank, world, port, data, out, tmp):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        FASTGCN_DIST_TIMEOUT="30",
    )
    torch.set_num_threads(1)
    result = distributed.train_distributed(_config(data, out))
    # NGCF on degree-balanced ranges: the result must not depend on the partition either.
    ngcf = distributed.train_distributed(
        _config(data, out + "-ngcf", model="ngcf", mess_dropout=0.0), balance="degree"
    )
    report = {"result": result, "ngcf": ngcf}
    for name, options in PLUGIN_RUNS.items():
        report[name] = distributed.train_distributed(
            _config(data, f"{out}-{name}", **options), balance="degree" if name == "dgr" else None
        )
    # The propagation and its backward against the single process, in float64, with a mask.
    g = _graph(2)
    ub, ib = partition_bounds(g.deg_u, world), partition_bounds(g.deg_i, world)
    p = partition_graph(g, rank, ub, ib)
    logits = torch.randn(
        g.num_edges, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    z_u, z_i = partition_mask(
        p,
        logits[p.edge_start : p.edge_start + p.col_u.shape[0]],
        logits[p.eid_i],
        "bernoulli",
        seed=9,
    )
    op = PartitionedOperator(p, exchange_plan(p.requests), z_u, z_i, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    xu = torch.randn(g.num_users, 3, dtype=torch.float64, generator=gen)
    xi = torch.randn(g.num_items, 3, dtype=torch.float64, generator=gen)
    (u0, u1), (i0, i1) = p.users, p.items
    own_u, own_i = xu[u0:u1].clone().requires_grad_(), xi[i0:i1].clone().requires_grad_()
    yu, yi = partitioned_spmm(op, own_u, own_i)
    wu = torch.randn(g.num_users, 3, dtype=torch.float64, generator=gen)[u0:u1]
    wi = torch.randn(g.num_items, 3, dtype=torch.float64, generator=gen)[i0:i1]
    ((yu * wu).sum() + (yi * wi).sum()).backward()
    report["prop"] = [t.detach() for t in (yu, yi, own_u.grad, own_i.grad)]
    # Ranks that disagree: an error on every rank, not a hang.
    try:
        distributed.check_same(rank, "a test value")
    except ValueError as exc:
        report["disagree"] = str(exc)
    torch.save(report, os.path.join(tmp, f"report{rank}.pt"))
    dist.barrier()
    if rank == 1:
        os._exit(0)  # a rank dies: rank 0's next collective fails with a message
    try:
        dist.all_reduce(torch.ones(1))
    except RuntimeError as exc:
        torch.save({"dead": str(distributed.collective_failure(exc))}, os.path.join(tmp, "dead.pt"))
    os._exit(0)  # the group is broken: no orderly shutdown


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    data = _write_data(tmp / "data")
    mp.spawn(_worker, args=(2, _free_port(), data, str(tmp / "p2"), str(tmp)), nprocs=2)
    single = train(_config(data, tmp / "single"))
    train(_config(data, tmp / "single-ngcf", model="ngcf", mess_dropout=0.0))
    for name, options in PLUGIN_RUNS.items():
        train(_config(data, tmp / f"single-{name}", **options))
    return (
        tmp,
        data,
        single,
        [torch.load(tmp / f"report{r}.pt", weights_only=False) for r in range(2)],
    )


def test_two_ranks_train_like_one_process(two_ranks):
    tmp, _, single, reports = two_ranks
    result = reports[0]["result"]
    assert reports[1]["result"] is None
    for split in ("valid", "test"):
        for key, value in result[split].items():
            assert value == pytest.approx(single[split][key], abs=1e-6), (split, key)
    assert result["best_epoch"] == single["best_epoch"]
    want = torch.load(tmp / "single" / "checkpoint.pt", weights_only=False)
    got = torch.load(tmp / "p2" / "checkpoint.pt", weights_only=False)
    assert got["merged_from"]["world_size"] == 2
    for key in ("model", "best_model"):
        for name in ("user_emb", "item_emb"):
            torch.testing.assert_close(got[key][name], want[key][name], rtol=1e-5, atol=1e-6)
    log = [json.loads(line) for line in (tmp / "p2" / "log.jsonl").read_text().splitlines()]
    want_log = [
        json.loads(line) for line in (tmp / "single" / "log.jsonl").read_text().splitlines()
    ]
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in want_log], rel=1e-5)


def test_two_ranks_train_ngcf_like_one_process(two_ranks):
    # NGCF's dense weights are replicated: their gradients are all-reduced.
    tmp, result = two_ranks[0], two_ranks[3][0]["ngcf"]
    assert result["distributed"]["world_size"] == 2
    assert result["distributed"]["balance"] == "degree"
    log = [json.loads(line) for line in (tmp / "p2-ngcf" / "log.jsonl").read_text().splitlines()]
    want_log = [
        json.loads(line) for line in (tmp / "single-ngcf" / "log.jsonl").read_text().splitlines()
    ]
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in want_log], rel=1e-4)
    for got_r, want_r in zip(log, want_log):  # a near tie may swap two ranks: abs 1e-3
        for key, value in got_r["valid"].items():
            assert value == pytest.approx(want_r["valid"][key], abs=1e-3), (got_r["epoch"], key)
    want = torch.load(tmp / "single-ngcf" / "checkpoint.pt", weights_only=False)["model"]
    got = torch.load(tmp / "p2-ngcf" / "checkpoint.pt", weights_only=False)["model"]
    assert set(got) == set(want)
    # Adam divides by sqrt(v): a weight whose gradient is near 0 can move by up to lr (1e-3)
    # on float32 rounding (the all-reduced sums of the dense weights add in another order).
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("name", list(PLUGIN_RUNS))
def test_two_ranks_train_plugins_like_one_process(two_ranks, name):
    tmp = two_ranks[0]

    def log(run):
        return [json.loads(line) for line in (tmp / run / "log.jsonl").read_text().splitlines()]

    got_log, want_log = log(f"p2-{name}"), log(f"single-{name}")
    assert got_log[0].keys() >= {"loss", "bpr", "reg"}
    for got_r, want_r in zip(got_log, want_log, strict=True):
        for key, value in want_r.items():  # every loss term (lec, l0, targets) and metric
            if key in ("seconds", "eval_seconds", "epoch") or key not in got_r:
                continue
            if key == "valid":
                for k, v in got_r[key].items():  # the single process adds smoothness metrics
                    assert v == pytest.approx(value[k], abs=1e-4), (name, k)
            else:
                assert got_r[key] == pytest.approx(value, rel=1e-5), (name, key)
    assert {k for k in want_log[0] if "seconds" not in k} <= set(got_log[0]) | {"epoch"}
    single = json.loads((tmp / f"single-{name}" / "metrics.json").read_text())
    for key, value in two_ranks[3][0][name]["test"].items():
        assert value == pytest.approx(single["test"][key], abs=1e-4), key
    # The merged export is a single-process checkpoint: the same keys, shapes and values.
    want = torch.load(tmp / f"single-{name}" / "checkpoint.pt", weights_only=False)["model"]
    got = torch.load(tmp / f"p2-{name}" / "checkpoint.pt", weights_only=False)["model"]
    assert set(got) == set(want)
    for key, value in want.items():
        if key.endswith("_extra_state"):
            for a, b in zip(got[key]["embeddings"] or (), value["embeddings"] or (), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
            continue
        # Adam with the mask head's lr 1e-2: a weight whose gradient is ~0 (the keep target's
        # shift absorbs the bias's) moves by float32 noise.
        tol = 1e-3 if key.endswith("head.bias") else 1e-5
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=tol)


def test_two_ranks_hold_half_the_tables(two_ranks):
    result = two_ranks[3][0]["result"]
    per_rank = result["distributed"]["per_rank"]
    dim = result["config"]["model_config"]["dim"]
    whole = (result["data"]["users"] + result["data"]["items"]) * dim * 4 * 3  # + Adam moments
    for r in per_rank:
        assert abs(r["tables"] - whole / 2) <= 0.2 * whole / 2, (r, whole)
        assert r["halo_rows"] > 0 and r["graph"] > 0


def test_two_ranks_propagation_and_gradients_match(two_ranks):
    reports = two_ranks[3]
    g = _graph(2)
    logits = torch.randn(
        g.num_edges, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    gen = torch.Generator().manual_seed(1)
    xu = torch.randn(g.num_users, 3, dtype=torch.float64, generator=gen).requires_grad_()
    xi = torch.randn(g.num_items, 3, dtype=torch.float64, generator=gen).requires_grad_()
    yu, yi = masked_spmm(g, xu, xi, logits, "bernoulli", seed=9)
    wu = torch.randn(g.num_users, 3, dtype=torch.float64, generator=gen)
    wi = torch.randn(g.num_items, 3, dtype=torch.float64, generator=gen)
    ((yu * wu).sum() + (yi * wi).sum()).backward()
    got = [torch.cat([rep["prop"][k] for rep in reports]) for k in range(4)]
    for a, b in zip(got, (yu.detach(), yi.detach(), xu.grad, xi.grad)):
        torch.testing.assert_close(a, b)


def test_bad_setups_stop_with_messages(two_ranks, tmp_path):
    tmp, data, _, reports = two_ranks
    assert all("disagree on a test value" in rep["disagree"] for rep in reports)
    assert (tmp / "dead.pt").exists(), "the surviving rank hung instead of failing"
    dead = torch.load(tmp / "dead.pt")["dead"]
    assert dead.startswith("rank 0: a collective failed: another rank died"), dead
    # A checkpoint from another world size: a clear error naming it.
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="written by 2 ranks.*--nproc_per_node 2"):
            distributed.train_distributed(_config(data, tmp / "p2", resume=True))
    finally:
        dist.destroy_process_group()


def test_one_rank_equals_the_plain_trainer(tmp_path):
    data = _write_data(tmp_path / "d", seed=4)
    single = train(_config(data, tmp_path / "single", model="ngcf", mess_dropout=0.0))
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        one = distributed.train_distributed(
            _config(data, tmp_path / "one", model="ngcf", mess_dropout=0.0)
        )
    finally:
        dist.destroy_process_group()
    for key, value in one["test"].items():
        assert value == pytest.approx(single["test"][key], abs=1e-6), key
    want = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=False)["model"]
    got = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)["model"]
    # Adam divides by sqrt(v): where a gradient is near 0, float32 rounding (the products sum
    # in another order) moves a weight by up to a small fraction of lr.
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=1e-4, atol=2e-5)
