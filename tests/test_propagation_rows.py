"""ops.propagation_rows (a plain LightGCN's propagation read out at a batch's rows) on every
backend present, against masked_spmm's layers and LightGCN's generic loss, values and gradients."""

import pytest
import torch
from conftest import DEVICE, backend_params, check_gradients, random_graph

from fastgcn_denoise import ops
from fastgcn_denoise.models import Batch, LightGCN
from fastgcn_denoise.models.base import GraphRecommender

BACKEND = backend_params()


def embeddings(graph, d, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, d, generator=gen, dtype=torch.float64).to(DEVICE, dtype).requires_grad_()
        for n in (graph.num_users, graph.num_items)
    ]


def truth(
    graph,
    x_user,
    x_item,
    rows,
    num_layers,
    weights=None,
    self_loop=False,
    gmp=None,
    edge_weight=None,
):
    """(readout, ego, layers 1..K) through the op's definition: masked_spmm layers (reference),
    each desmoothed by GMP's β x − c r (rᵀ x) when given, then gathers."""
    if edge_weight is None:
        degree = torch.cat([graph.deg_u, graph.deg_i]).to(x_user.dtype)
    else:
        users, items = graph.edges()
        w = edge_weight.to(x_user.dtype)
        degree = torch.cat(
            [
                torch.zeros(graph.num_users, dtype=w.dtype).index_add(0, users, w),
                torch.zeros(graph.num_items, dtype=w.dtype).index_add(0, items, w),
            ]
        )
    r = (degree + int(self_loop)).sqrt()
    layers = [torch.cat([x_user, x_item])]
    x_u, x_i = x_user, x_item
    for k in range(num_layers):
        x_u, x_i = ops.masked_spmm(
            graph, x_u, x_i, backend="reference", self_loop=self_loop, edge_weight=edge_weight
        )
        x = torch.cat([x_u, x_i])
        if gmp is not None:
            beta, c = gmp[k]
            x = beta * x - c * torch.outer(r, r @ x)
            x_u, x_i = x[: graph.num_users], x[graph.num_users :]
        layers.append(x)
    if weights is None:
        weights = [1 / (num_layers + 1)] * (num_layers + 1)
    read = sum(w * x[rows] for w, x in zip(weights, layers))
    return read, layers[0][rows], layers[1:]


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("num_layers", [0, 1, 3])
def test_values_and_gradients_match_the_layers(backend, num_layers):
    graph = random_graph(7, 9, 0.35, seed=num_layers).to(DEVICE)  # with isolated nodes
    x_user, x_item = embeddings(graph, 5, torch.float64)
    rows = torch.tensor([0, 3, 3, 7 + 2, 7 + 8, 0, 6, 7 + 2], device=DEVICE)  # repeats
    mean, ego = ops.propagation_rows(graph, x_user, x_item, rows, num_layers, backend=backend)
    want_mean, want_ego, _ = truth(graph, x_user, x_item, rows, num_layers)
    torch.testing.assert_close(mean, want_mean)
    torch.testing.assert_close(ego, want_ego)
    gen = torch.Generator().manual_seed(1)
    g_mean, g_ego = (torch.randn(mean.shape, generator=gen, dtype=mean.dtype) for _ in range(2))
    got = torch.autograd.grad(
        (mean * g_mean.to(DEVICE)).sum() + (ego * g_ego.to(DEVICE)).sum(), (x_user, x_item)
    )
    want = torch.autograd.grad(
        (want_mean * g_mean.to(DEVICE)).sum() + (want_ego * g_ego.to(DEVICE)).sum(),
        (x_user, x_item),
    )
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", BACKEND)
def test_gradcheck(backend):
    graph = random_graph(5, 6, 0.4, seed=3).to(DEVICE)
    x_user, x_item = embeddings(graph, 3, torch.float64, seed=2)
    rows = torch.tensor([1, 5 + 0, 5 + 4, 1], device=DEVICE)
    check_gradients(
        lambda b, u, i: ops.propagation_rows(graph, u, i, rows, 2, backend=b),
        (x_user, x_item),
        backend,
    )


OPTIONS = {  # the options of the models built on the op (SimGCL's readout, DGR's GMP)
    "weights": dict(weights=(0.0, 0.5, 0.5)),
    "self_loop": dict(self_loop=True),
    "gmp": dict(gmp=((1.1, 0.01), (2.1, 0.05))),
    "gmp_self_loop": dict(gmp=((0.3, 0.2), (1.4, -0.03)), self_loop=True, weights=(0.2, 0.3, 0.5)),
    "edge_weight": dict(edge_weight=True),  # the denoisers' fixed soft weights (built per graph)
    "edge_weight_gmp_self_loop": dict(
        edge_weight=True, gmp=((1.1, 0.01), (2.1, 0.05)), self_loop=True
    ),
}


def soft_weights(graph):
    """Per-edge weights in [0, 2) with zeros: edge 0, and every edge of the first user with two
    or more (a user with edges whose weighted degree is 0)."""
    gen = torch.Generator().manual_seed(9)
    w = 2 * torch.rand(graph.num_edges, generator=gen, dtype=torch.float64)
    w[0] = 0.0
    users = graph.edges()[0].cpu()
    w[users == int((graph.deg_u.cpu() >= 2).nonzero()[0])] = 0.0
    return w.to(DEVICE)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("option", OPTIONS)
def test_options_values_gradients_and_kept_layers(backend, option):
    graph = random_graph(7, 9, 0.35, seed=4).to(DEVICE)  # with isolated nodes
    x_user, x_item = embeddings(graph, 4, torch.float64, seed=5)
    rows = torch.tensor([1, 7 + 2, 7 + 2, 6, 7 + 8, 0], device=DEVICE)
    kw = dict(OPTIONS[option])
    if "edge_weight" in kw:
        kw["edge_weight"] = soft_weights(graph)
    read, ego, *layers = ops.propagation_rows(
        graph, x_user, x_item, rows, 2, backend=backend, keep_layers=True, **kw
    )
    want_read, want_ego, want_layers = truth(graph, x_user, x_item, rows, 2, **kw)
    torch.testing.assert_close(read, want_read)
    torch.testing.assert_close(ego, want_ego)
    assert len(layers) == 2 and not any(x.requires_grad for x in layers)
    for got, want in zip(layers, want_layers):
        torch.testing.assert_close(got, want.detach())
    check_gradients(
        lambda b, u, i: ops.propagation_rows(graph, u, i, rows, 2, backend=b, **kw),
        (x_user, x_item),
        backend,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lightgcn_loss_is_the_generic_loss(dtype):
    """LightGCN.loss (on propagation_rows) against GraphRecommender.loss (masked_spmm layers):
    every term and the embeddings' gradients."""
    graph = random_graph(30, 40, 0.15, seed=5).to(DEVICE)
    torch.manual_seed(0)
    model = LightGCN(graph.num_users, graph.num_items, dim=8, num_layers=3).to(DEVICE, dtype)
    gen = torch.Generator().manual_seed(0)
    users = torch.randint(graph.num_users, (64,), generator=gen).to(DEVICE)
    items = torch.randint(graph.num_items, (128,), generator=gen).to(DEVICE)
    batch = Batch(users, items[:64], items[64:])
    fast = model.loss(graph, batch)
    fast_grads = torch.autograd.grad(fast["loss"], (model.user_emb, model.item_emb))
    slow = GraphRecommender.loss(model, graph, batch)
    slow_grads = torch.autograd.grad(slow["loss"], (model.user_emb, model.item_emb))
    assert set(fast) == set(slow) == {"loss", "bpr", "reg"}
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == torch.float32 else {}
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], **tol)
    for a, b in zip(fast_grads, slow_grads):
        torch.testing.assert_close(a, b, **tol)


def test_bad_inputs_are_refused():
    graph = random_graph(4, 5, 0.5).to(DEVICE)
    x_user, x_item = embeddings(graph, 2, torch.float32)
    rows = torch.tensor([0], device=DEVICE)
    with pytest.raises(ValueError, match="num_layers must be >= 0"):
        ops.propagation_rows(graph, x_user, x_item, rows, -1)
    with pytest.raises(ValueError, match="the graph has 4 users and 5 items"):
        ops.propagation_rows(graph, x_item, x_user, rows, 1)
    with pytest.raises(ValueError, match="weights has 3 values, num_layers \\+ 1 = 2 needed"):
        ops.propagation_rows(graph, x_user, x_item, rows, 1, weights=(1, 1, 1))
    with pytest.raises(ValueError, match="gmp has 2 \\(beta, c\\) pairs for 1 layers"):
        ops.propagation_rows(graph, x_user, x_item, rows, 1, gmp=((1, 0), (1, 0)))
    bad = torch.ones(graph.num_edges, device=DEVICE)
    bad[2] = -1.0
    with pytest.raises(ValueError, match="finite and >= 0; edge 2 has -1.0"):
        ops.propagation_rows(graph, x_user, x_item, rows, 1, edge_weight=bad)
    with pytest.raises(ValueError, match="must have shape \\[num_edges\\]"):
        ops.propagation_rows(graph, x_user, x_item, rows, 1, edge_weight=bad[:-1])
    with pytest.raises(ValueError, match="fixed \\(no gradient\\)"):
        ops.propagation_rows(graph, x_user, x_item, rows, 1, edge_weight=bad.abs().requires_grad_())
