"""The DGR plug-in (GMP and LEC) on LightGCN, SimGCL and XSimGCL against dense float64 references."""

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICE, random_graph
from test_models import split

from fastgcn_denoise import ops
from fastgcn_denoise.denoisers.dgr import DGR, DGRConfig
from fastgcn_denoise.models.base import Batch
from fastgcn_denoise.models.lightgcn import LightGCN
from fastgcn_denoise.models.simgcl import SimGCL
from fastgcn_denoise.models.xsimgcl import XSimGCL


def dense_adjacency(graph, self_loops):
    """(Ã [n, n], d̂ [n]): D̂^-1/2 (A + I?) D̂^-1/2 of the bipartite graph, float64."""
    u, i = graph.edges()
    n = graph.num_users + graph.num_items
    a = torch.zeros(n, n, dtype=torch.float64, device=graph.device)
    a[u, graph.num_users + i] = 1.0
    a[graph.num_users + i, u] = 1.0
    if self_loops:
        a += torch.eye(n, dtype=torch.float64, device=graph.device)
    d = a.sum(1)
    r = torch.where(d > 0, d.rsqrt(), torch.zeros_like(d))
    return r[:, None] * a * r[None, :], d


def dense_gmp_layers(model, graph, alphas, self_loops, z_factor):
    lap, d = dense_adjacency(graph, self_loops)
    root = d.sqrt()
    z = z_factor * d.sum()
    cur = torch.cat([model.user_emb, model.item_emb])
    outs = [cur]
    for alpha in alphas:
        hat = lap @ cur
        m = root[:, None] * (root @ hat)[None, :] / z
        cur = (1 + alpha) * hat - alpha * m
        outs.append(cur)
    return outs


def dgr(graph, layers=3, **config):
    return DGR(DGRConfig(**config), graph, layers)


def plugged(model, *plugins):
    for p in plugins:
        model.add_plugin(p.attach(model))
    return model


@pytest.mark.parametrize(
    "self_loops,z,z_factor",
    [(True, "degree_sum", 1), (False, "degree_sum", 1), (False, "twice_degree_sum", 2)],
)
def test_gmp_forward_matches_dense(self_loops, z, z_factor):
    graph = random_graph(12, 9, 0.3, seed=2)  # with an isolated user and item
    alphas = (0.3, 1.1, -0.2)
    torch.manual_seed(0)
    plugin = dgr(graph, dgr_alpha=alphas, dgr_self_loops=self_loops, dgr_z=z, dgr_lec=False)
    model = plugged(LightGCN(12, 9, dim=5, num_layers=3), plugin).double().to(DEVICE)
    want = torch.stack(dense_gmp_layers(model, graph, alphas, self_loops, z_factor)).mean(0)
    torch.testing.assert_close(torch.cat(model(graph)), want, rtol=1e-12, atol=1e-12)


def test_gmp_scales_what_is_orthogonal_to_the_smoothing_direction():
    # Paper constants: E = (1 + α)(Ê − m) + m, m the projection onto √d̂; so √d̂ᵀ E = √d̂ᵀ Ê.
    graph = random_graph(10, 8, 0.4, seed=3)
    plugin = dgr(
        graph, layers=1, dgr_alpha=(0.7,), dgr_self_loops=True, dgr_z="degree_sum", dgr_lec=False
    ).to(DEVICE)
    torch.manual_seed(1)
    x_u = torch.randn(10, 4, dtype=torch.float64, device=DEVICE)
    x_i = torch.randn(8, 4, dtype=torch.float64, device=DEVICE)
    y = torch.cat(plugin.after_layer(0, graph, x_u, x_i))
    x = torch.cat([x_u, x_i])
    root = plugin.sqrt_d.double()
    unit = root / root.norm()
    proj = unit[:, None] * (unit @ x)[None, :]
    torch.testing.assert_close(y, 1.7 * (x - proj) + proj, rtol=1e-12, atol=1e-12)


def test_gmp_gradcheck():
    graph = random_graph(6, 5, 0.5, seed=4)
    plugin = dgr(graph, layers=1, dgr_alpha=(0.4,), dgr_lec=False).to(DEVICE)
    x_u = torch.randn(6, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    x_i = torch.randn(5, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: plugin.after_layer(0, graph, a, b), (x_u, x_i))


@pytest.mark.parametrize(
    "config",
    [
        dict(dgr_self_loops=True, dgr_z="degree_sum"),  # the speed scoreboard's gmp_overhead row
        dict(dgr_self_loops=False, dgr_z="twice_degree_sum"),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gmp_step_on_propagation_rows_is_the_layerwise_step(config, dtype):
    # LightGCN + GMP (no LEC) trains on ops.propagation_rows; the plug-in's after_layer path
    # (GraphRecommender.loss) is the truth: every term and the embeddings' gradients.
    graph = random_graph(14, 10, 0.3, seed=6).to(DEVICE)  # with isolated nodes
    plugin = dgr(graph, dgr_alpha=(0.1, 1.1, 0.1), dgr_lec=False, **config)
    assert plugin.propagation_rows_args(graph, 3) is not None
    torch.manual_seed(0)
    model = plugged(LightGCN(14, 10, dim=6, num_layers=3), plugin).to(DEVICE, dtype)
    gen = torch.Generator().manual_seed(2)
    users = torch.randint(14, (20,), generator=gen).to(DEVICE)
    items = torch.randint(10, (40,), generator=gen).to(DEVICE)
    batch = Batch(users, items[:20], items[20:])
    params = (model.user_emb, model.item_emb)
    fast = model.loss(graph, batch)
    fast_grads = torch.autograd.grad(fast["loss"], params)
    slow = super(LightGCN, model).loss(graph, batch)
    slow_grads = torch.autograd.grad(slow["loss"], params)
    assert set(fast) == set(slow) == {"loss", "bpr", "reg"}
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], **tol, msg=name)
    for a, b in zip(fast_grads, slow_grads):
        torch.testing.assert_close(a, b, **tol)


def test_gmp_with_lec_or_another_graph_keeps_the_layerwise_path():
    graph = random_graph(14, 10, 0.3, seed=6)
    assert dgr(graph).propagation_rows_args(graph, 3) is None  # LEC: a loss on the layers
    other = random_graph(14, 10, 0.3, seed=7)
    assert dgr(graph, dgr_lec=False).propagation_rows_args(other, 3) is None


def test_zero_alpha_and_no_gmp_leave_lightgcn_unchanged():
    graph = random_graph(9, 11, 0.3, seed=5)
    torch.manual_seed(0)
    plain = LightGCN(9, 11, dim=4, num_layers=3).double().to(DEVICE)
    want = plain(graph)
    for config in ({"dgr_gmp": False}, {"dgr_alpha": (0.0,)}):  # the default GMP: no self-loops
        model = (
            plugged(LightGCN(9, 11, dim=4, num_layers=3), dgr(graph, dgr_lec=False, **config))
            .double()
            .to(DEVICE)
        )
        model.load_state_dict(plain.state_dict())
        for got, exp in zip(model(graph), want):
            torch.testing.assert_close(got, exp, rtol=1e-14, atol=1e-14)


def dense_lec(final, graph, batch, neighbours, lam1, lam2):
    """λ1 L_pos − λ2 L_neg by explicit loops over the batch and the neighbour lists."""
    u, it = split(final, graph)
    total = torch.zeros((), dtype=torch.float64, device=DEVICE)
    for b in range(batch.users.shape[0]):
        user, item = int(batch.users[b]), int(batch.pos[b])
        for items, weights, lam in (
            (neighbours.similar, neighbours.similar_weight, lam1),
            (neighbours.marginal, neighbours.marginal_weight, -lam2),
        ):
            for j, w in zip(items[item].tolist(), weights[item].tolist()):
                if j >= 0:
                    total = total - lam * w * F.logsigmoid(u[user] @ it[j])
    return total


@pytest.mark.parametrize("backbone", ["lightgcn", "simgcl", "xsimgcl"])
def test_lec_and_gmp_on_every_backbone(backbone):
    graph = random_graph(30, 14, 0.25, seed=6)
    config = dict(
        dgr_alpha=(0.2, 0.5),
        lec_similar=3,
        lec_marginal=2,
        lec_min_cooccurrence=4,
        lec_pos_weight=0.3,
        lec_neg_weight=0.05,
    )
    plugin = dgr(graph, layers=2, **config)
    cls = {"lightgcn": LightGCN, "simgcl": SimGCL, "xsimgcl": XSimGCL}[backbone]
    torch.manual_seed(0)
    model = plugged(cls(30, 14, dim=4, num_layers=2), plugin).double().to(DEVICE)
    users, pos = graph.edges()
    batch = Batch(users[:16], pos[:16], (pos[:16] + 3) % 14)
    torch.manual_seed(3)
    terms = model.loss(graph, batch)
    # The LEC term reads out the layers the recommendation loss uses (XSimGCL: the perturbed ones).
    torch.manual_seed(3)
    layers = model.layer_outputs(graph, batch)
    final = torch.cat(model.readout(layers))
    neighbours = ops.lec_neighbors(graph, 3, 2, 4)
    want = dense_lec(final, graph, batch, neighbours, 0.3, 0.05)
    assert neighbours.marginal.ge(0).any() and neighbours.similar.ge(0).any()
    torch.testing.assert_close(terms["lec"], want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(terms["loss"], sum(v for k, v in terms.items() if k != "loss"))
    terms["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # GMP is in the layers: the clean forward matches the dense GMP propagation.
    model.eval()
    z_factor = 2 if plugin.config.dgr_z == "twice_degree_sum" else 1
    want = dense_gmp_layers(model, graph, (0.2, 0.5), plugin.config.dgr_self_loops, z_factor)
    first = 0 if backbone == "lightgcn" else 1  # SimGCL's readout leaves E^(0) out
    torch.testing.assert_close(torch.cat(model(graph)), torch.stack(want[first:]).mean(0))


def test_config_errors_and_keep_scores():
    graph = random_graph(8, 6, 0.4, seed=7)
    with pytest.raises(ValueError, match="dgr_alpha has 2 values but the backbone has 3 layers"):
        dgr(graph, dgr_alpha=(0.1, 0.2))
    with pytest.raises(ValueError, match="dgr_z = 'half'"):
        dgr(graph, dgr_z="half")
    with pytest.raises(ValueError, match="lec_neg_weight = -1.0: must be >= 0"):
        dgr(graph, lec_neg_weight=-1.0)
    model = plugged(LightGCN(8, 6, dim=3, num_layers=3), dgr(graph)).to(DEVICE)
    scores = model.keep_scores(graph)
    assert scores.shape == (graph.num_edges,) and ((scores > 0) & (scores < 1)).all()
    other = random_graph(9, 6, 0.4, seed=8)
    with pytest.raises(ValueError, match="DGR was built for a 8 x 6 graph"):
        model.plugins[0].after_layer(0, other, torch.zeros(9, 3), torch.zeros(6, 3))


@pytest.mark.parametrize("model", ["lightgcn", "simgcl", "xsimgcl"])
def test_train_any_backbone_with_dgr_from_the_command_line(tmp_path, capsys, model):
    import json

    from fastgcn_denoise.cli import main
    from fastgcn_denoise.data import make_synthetic, save_npz

    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=60, num_items=45, dim=4, avg_degree=8, seed=1), data)
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--model",
            model,
            "--dgr",
            "--data",
            str(data),
            "--out",
            str(out),
            "--dim",
            "8",
            "--layers",
            "2",
            "--dgr-alpha",
            "0.1,0.5",
            "--lec-similar",
            "3",
            "--lec-marginal",
            "2",
            "--epochs",
            "2",
            "--eval-every",
            "1",
            "--batch-size",
            "64",
            "--ks",
            "5,10",
            "--device",
            str(DEVICE),
        ]
    )
    assert code == 0, capsys.readouterr().err
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    terms = {"loss", "bpr", "reg", "lec"} | ({"cl"} if model != "lightgcn" else set())
    assert terms <= set(log[0]), log[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["plugins"]["dgr"]["dgr_alpha"] == [0.1, 0.5]
    assert metrics["test"]["row_diff"] > 0 and "mad" in log[-1]["valid"]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--dgr-alpha" in capsys.readouterr().out
