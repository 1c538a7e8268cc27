"""RGCF: the reliability-weighted, pruned propagation against a dense reference; the
augmentation; the plug-in on every ranking backbone."""

import numpy as np
import pytest
import torch
from conftest import DEVICE, backend_params, random_graph

from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.data import make_synthetic, save_npz
from fastgcn_denoise.denoisers.rgcf import RGCF, edge_reliability, reliability
from fastgcn_denoise.models import LightGCN
from fastgcn_denoise.pipelines.train import make_config, restore_run, train


def dense_reference(model, users, items, threshold):
    """LightGCN on the weighted adjacency W (w = (cos + 1) / 2, 0 below the threshold), degrees
    from W, float64, written with dense matrices."""
    eu, ei = model.user_emb.detach().double(), model.item_emb.detach().double()
    nu, ni = eu.shape[0], ei.shape[0]
    w = torch.zeros(nu, ni, dtype=torch.float64)
    for u, i in zip(users.tolist(), items.tolist()):
        r = (torch.dot(eu[u], ei[i]) / (eu[u].norm() * ei[i].norm()) + 1) / 2
        w[u, i] = r if r >= threshold else 0.0
    du, di = w.sum(1), w.sum(0)
    ru = torch.where(du > 0, du.rsqrt(), torch.zeros_like(du))
    ri = torch.where(di > 0, di.rsqrt(), torch.zeros_like(di))
    a = ru[:, None] * w * ri[None, :]
    layers = [(eu, ei)]
    for _ in range(model.num_layers):
        xu, xi = layers[-1]
        layers.append((a @ xi, a.T @ xu))
    return (
        torch.stack([x for x, _ in layers]).mean(0),
        torch.stack([y for _, y in layers]).mean(0),
    )


@pytest.mark.parametrize("backend", backend_params(("reference", "cpu", "triton")))
@pytest.mark.parametrize("shape", [(7, 5, 0.5), (30, 22, 0.2)])
def test_edge_reliability_matches_the_gathered_cosine(backend, shape):
    """The fused SDDMM of the normalised tables against cosine_similarity on gathered rows:
    values and both tables' gradients (float64), empty rows included."""
    graph = random_graph(*shape, seed=shape[0]).to(DEVICE)
    gen = torch.Generator().manual_seed(shape[1])
    xu = torch.randn(graph.num_users, 6, generator=gen, dtype=torch.float64).to(DEVICE)
    xi = torch.randn(graph.num_items, 6, generator=gen, dtype=torch.float64).to(DEVICE)
    weight = torch.rand(graph.num_edges, generator=gen, dtype=torch.float64).to(DEVICE)
    grads = []
    for fn in (
        lambda a, b: edge_reliability(graph, a, b, backend),
        lambda a, b: reliability(a, b, *graph.edges()),
    ):
        a, b = xu.clone().requires_grad_(), xi.clone().requires_grad_()
        r = fn(a, b)
        (r * weight).sum().backward()
        grads.append((r.detach(), a.grad, b.grad))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.6])
@pytest.mark.parametrize("seed", range(2))
def test_weighted_pruned_propagation_matches_dense(threshold, seed):
    rng = np.random.default_rng(seed)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, 7, 30), rng.integers(0, 9, 30))}
    users, items = map(np.array, zip(*sorted(pairs)))
    graph = BipartiteGraph(users, items, 7, 9)
    torch.manual_seed(seed)
    model = LightGCN(7, 9, dim=5, num_layers=2).double()
    plugin = RGCF(model, graph.num_edges, threshold=threshold)
    model.add_plugin(plugin)
    model.eval()
    got_u, got_i = model(graph)
    want_u, want_i = dense_reference(
        model, torch.from_numpy(users), torch.from_numpy(items), threshold
    )
    torch.testing.assert_close(got_u, want_u, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got_i, want_i, rtol=1e-9, atol=1e-12)
    keep = plugin.keep_scores(graph).numpy()
    cos = torch.nn.functional.cosine_similarity(model.user_emb[users], model.item_emb[items])
    r = ((cos + 1) / 2).detach().numpy()
    np.testing.assert_allclose(keep, np.where(r >= threshold, r, 0.0), rtol=1e-12)


def test_augmentation_adds_the_most_reliable_new_pairs():
    rng = np.random.default_rng(0)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, 20, 200), rng.integers(0, 30, 200))}
    users, items = map(np.array, zip(*sorted(pairs)))
    graph = BipartiteGraph(users, items, 20, 30)
    torch.manual_seed(0)
    model = LightGCN(20, 30, dim=4, num_layers=1)
    plugin = RGCF(model, graph.num_edges, aug_ratio=0.2, candidates=3)
    aug = plugin._augment(graph, epoch=0)
    old = set(zip(users.tolist(), items.tolist()))
    au, ai = (t.numpy() for t in aug.edges())
    new = [(u, i) for u, i in zip(au.tolist(), ai.tolist()) if (u, i) not in old]
    assert old <= set(zip(au.tolist(), ai.tolist()))
    deg = np.bincount(users, minlength=20)
    added = np.bincount([u for u, _ in new], minlength=20)
    assert bool((added <= np.maximum(np.round(0.2 * deg), 1)).all()) and added.sum() > 0
    assert plugin._augment(graph, epoch=0).num_edges == aug.num_edges  # seeded by the epoch


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("rgcf") / "tiny.npz"
    save_npz(make_synthetic(num_users=60, num_items=40, dim=4, avg_degree=8, seed=2), path)
    return path


@pytest.mark.parametrize("model", ["lightgcn", "ngcf", "simgcl", "xsimgcl"])
def test_plugin_trains_on_every_backbone(tiny, tmp_path, model):
    config = make_config(
        model=model,
        plugins=("rgcf",),
        data=str(tiny),
        out=str(tmp_path / "r"),
        epochs=2,
        eval_every=1,
        dim=8,
        layers=2,
        batch_size=64,
        ks=(5,),
        progress=False,
        verbose=False,
    )
    result = train(config)
    assert np.isfinite(result["test"]["recall@5"])
    log = (tmp_path / "r" / "log.jsonl").read_text().splitlines()
    assert "rgcf_ssl" in log[0]
    _, _, prep, net = restore_run(tmp_path / "r" / "checkpoint.pt")
    keep = net.keep_scores(prep.train)
    assert keep.shape == (prep.train.num_edges,) and bool(((keep >= 0) & (keep <= 1)).all())
