"""denoisers.reweight (the edge-weights plug-in): the weighted propagation against masked_spmm's,
a zero weight against a graph without the edge, the weighted BPR by hand, the data plumbing."""

import numpy as np
import pytest
import torch
from conftest import DEVICE, random_graph

from fastgcn_denoise import ops
from fastgcn_denoise.data import inject_noise, load_npz, make_synthetic, save_npz
from fastgcn_denoise.denoisers.reweight import EdgeWeights
from fastgcn_denoise.graph import BipartiteGraph
from fastgcn_denoise.models import Batch, LightGCN
from fastgcn_denoise.models.base import GraphRecommender
from fastgcn_denoise.pipelines.train import make_config, restore_run, train


def model_and_batch(graph, weight, loss=False, dtype=torch.float64):
    torch.manual_seed(0)
    model = LightGCN(graph.num_users, graph.num_items, dim=6, num_layers=3).to(DEVICE, dtype)
    model.add_plugin(EdgeWeights(weight, loss).to(DEVICE))
    gen = torch.Generator().manual_seed(1)
    users, items = (t.to(DEVICE) for t in graph.edges())
    pick = torch.randint(graph.num_edges, (24,), generator=gen).to(DEVICE)
    neg = torch.randint(graph.num_items, (24,), generator=gen).to(DEVICE)
    return model, Batch(users[pick], items[pick], neg)


def weights(graph, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(graph.num_edges, generator=gen, dtype=torch.float64) + 0.05


@pytest.mark.parametrize("loss", [False, True])
def test_fused_step_is_the_weighted_layers(loss):
    """A LightGCN with edge weights keeps its fused step (propagation_rows with edge_weight),
    with the weighted loss too; it equals the generic step's masked_spmm layers with
    edge_weight, every term, values and gradients."""
    graph = random_graph(20, 25, 0.2, seed=1).to(DEVICE)
    model, batch = model_and_batch(graph, weights(graph), loss)
    model.train()
    assert model.plugins[0].propagation_rows_args(graph, 3) is not None
    fast = model.loss(graph, batch)
    fast_grads = torch.autograd.grad(fast["loss"], (model.user_emb, model.item_emb))
    slow = GraphRecommender.loss(model, graph, batch)
    slow_grads = torch.autograd.grad(slow["loss"], (model.user_emb, model.item_emb))
    assert set(fast) == set(slow) == {"loss", "bpr", "reg"} | ({"reweight"} if loss else set())
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name])
    assert model._rows is None  # the step's memo is not kept
    for a, b in zip(fast_grads, slow_grads):
        torch.testing.assert_close(a, b)
    # and the weights change the propagation: not the unweighted one
    plain = LightGCN(graph.num_users, graph.num_items, dim=6, num_layers=3).to(DEVICE)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "plugins" not in k})
    assert not torch.allclose(plain.double().loss(graph, batch)["bpr"], fast["bpr"])


def test_a_zero_weight_is_a_graph_without_the_edge():
    graph = random_graph(12, 15, 0.3, seed=2)
    users, items = (t.numpy() for t in graph.edges())
    keep = np.ones(graph.num_edges, bool)
    keep[[0, 5]] = False
    smaller = BipartiteGraph(users[keep], items[keep], graph.num_users, graph.num_items)
    gen = torch.Generator().manual_seed(3)
    x_u = torch.randn(graph.num_users, 4, generator=gen, dtype=torch.float64)
    x_i = torch.randn(graph.num_items, 4, generator=gen, dtype=torch.float64)
    rows = torch.arange(graph.num_users + graph.num_items)
    w = torch.ones(graph.num_edges, dtype=torch.float64)
    ops.propagation_rows(graph, x_u, x_i, rows, 2, edge_weight=w)  # cached for these weights
    w[[0, 5]] = 0.0  # changed in place: the operator is rebuilt
    got, _ = ops.propagation_rows(graph, x_u, x_i, rows, 2, edge_weight=w)
    want, _ = ops.propagation_rows(smaller, x_u, x_i, rows, 2)
    torch.testing.assert_close(got, want)
    # all-ones weights: plain LightGCN
    ones, _ = ops.propagation_rows(graph, x_u, x_i, rows, 2, edge_weight=torch.ones_like(w))
    torch.testing.assert_close(ones, ops.propagation_rows(graph, x_u, x_i, rows, 2)[0])


def test_weighted_loss_by_hand():
    """reweight_loss: the BPR term is sum_b w_b softplus(s_neg - s_pos) / sum_b w_b (the
    plug-in's term replaces the backbone's mean), on the weighted propagation."""
    graph = random_graph(15, 18, 0.25, seed=4).to(DEVICE)
    w = weights(graph, seed=5)
    model, batch = model_and_batch(graph, w, loss=True)
    model.train()
    terms = model.loss(graph, batch)
    user_emb, item_emb = model(graph)
    users, pos, neg = batch
    s_pos = (user_emb[users] * item_emb[pos]).sum(-1)
    s_neg = (user_emb[users] * item_emb[neg]).sum(-1)
    keys = {(int(u), int(i)): e for e, (u, i) in enumerate(zip(*graph.edges()))}
    wb = w[[keys[(int(u), int(i))] for u, i in zip(users, pos)]].to(DEVICE)
    bpr = torch.nn.functional.softplus(s_neg - s_pos)
    torch.testing.assert_close(terms["bpr"] + terms["reweight"], (wb * bpr).sum() / wb.sum())
    torch.testing.assert_close(terms["loss"], terms["bpr"] + terms["reg"] + terms["reweight"])


def test_bad_weights_are_refused():
    graph = random_graph(6, 7, 0.5, seed=6)
    with pytest.raises(ValueError, match="finite and >= 0"):
        EdgeWeights(-torch.ones(graph.num_edges))
    with pytest.raises(ValueError, match="every weight is 0"):
        EdgeWeights(torch.zeros(graph.num_edges))
    plugin = EdgeWeights(torch.ones(graph.num_edges + 1))
    with pytest.raises(ValueError, match=f"but this graph has {graph.num_edges} edges"):
        plugin.layer_kwargs(0, graph, None)


def test_train_reads_the_weights_from_the_data_and_restores_them(tmp_path):
    data = make_synthetic(num_users=50, num_items=40, dim=4, avg_degree=8, seed=1)
    rng = np.random.default_rng(0)
    plain = tmp_path / "plain.npz"
    save_npz(data, plain)
    options = dict(epochs=1, dim=8, layers=2, batch_size=64, ks=(5,), progress=False)
    with pytest.raises(ValueError, match="no per-interaction weights"):
        train(
            make_config(
                plugins=("edge-weights",), data=str(plain), out=str(tmp_path / "a"), **options
            )
        )
    data.train_weight = rng.random(data.train[0].shape[0]).astype(np.float32)
    path = tmp_path / "weighted.npz"
    save_npz(data, path)
    np.testing.assert_array_equal(load_npz(path).train_weight, data.train_weight)
    train(
        make_config(plugins=("edge-weights",), data=str(path), out=str(tmp_path / "b"), **options)
    )
    _, _, prep, model = restore_run(tmp_path / "b" / "checkpoint.pt")
    np.testing.assert_allclose(
        model.plugins[0].weight.numpy(), prep.data.weight_per_edge(prep.train)
    )
    # a split keeps each pair's weight with it; injected noise pairs weigh 1
    kept = prep.data.take_train(np.arange(0, prep.data.train[0].shape[0], 2))
    np.testing.assert_array_equal(kept.train_weight, prep.data.train_weight[::2])
    noisy = inject_noise(data, 0.2, seed=1)
    n = data.train[0].shape[0]
    assert noisy.train_weight.shape == noisy.train[0].shape and noisy.train[0].shape[0] > n
    np.testing.assert_array_equal(noisy.train_weight[:n], data.train_weight)
    assert (noisy.train_weight[n:] == 1).all()


def test_malformed_weights_in_a_file_are_refused(tmp_path):
    data = make_synthetic(num_users=30, num_items=20, dim=4, avg_degree=6, seed=2)
    data.train_weight = np.full(data.train[0].shape[0], -1.0, dtype=np.float32)
    save_npz(data, tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="train_weight must be floats, finite and >= 0"):
        load_npz(tmp_path / "bad.npz")
