"""LightGCN and NGCF against dense float64 computations on tiny graphs."""

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICE, random_graph

from fastgcn_denoise.models import NGCF, Batch, LightGCN, Plugin, bpr_loss, model_entry

CLASSES = {"lightgcn": LightGCN, "ngcf": NGCF}

SHAPES = [(5, 4, 0.5), (9, 13, 0.3), (1, 3, 1.0), (16, 7, 0.2)]


def dense_laplacian(graph):
    """float64 [U+I, U+I] D^-1/2 A D^-1/2 of the bipartite adjacency, 0 rows for isolated nodes."""
    u, i = graph.edges()
    n = graph.num_users + graph.num_items
    a = torch.zeros(n, n, dtype=torch.float64, device=graph.device)
    a[u, graph.num_users + i] = 1.0
    a[graph.num_users + i, u] = 1.0
    d = a.sum(1)
    r = torch.where(d > 0, d.rsqrt(), torch.zeros_like(d))
    return r[:, None] * a * r[None, :]


def split(x, graph):
    return x[: graph.num_users], x[graph.num_users :]


@pytest.mark.parametrize("num_users,num_items,density", SHAPES)
@pytest.mark.parametrize("layers", [0, 1, 3])
def test_lightgcn_forward_matches_dense(num_users, num_items, density, layers):
    graph = random_graph(num_users, num_items, density, seed=layers)
    torch.manual_seed(0)
    model = LightGCN(num_users, num_items, dim=6, num_layers=layers).double().to(DEVICE)
    lap = dense_laplacian(graph)
    e = torch.cat([model.user_emb, model.item_emb]).detach()
    acc, cur = e.clone(), e
    for _ in range(layers):
        cur = lap @ cur
        acc += cur
    want_u, want_i = split(acc / (layers + 1), graph)
    got_u, got_i = model(graph)
    torch.testing.assert_close(got_u, want_u, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_i, want_i, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("num_users,num_items,density", SHAPES)
def test_ngcf_forward_matches_dense(num_users, num_items, density):
    graph = random_graph(num_users, num_items, density, seed=1)
    torch.manual_seed(0)
    model = (
        NGCF(num_users, num_items, dim=5, layer_dims=(4, 7), mess_dropout=0.3, node_dropout=0.5)
        .double()
        .to(DEVICE)
    )
    for lin in (*model.w1, *model.w2):  # non-zero biases, so they are checked too
        torch.nn.init.normal_(lin.bias)
    model.eval()  # no dropout
    lap = dense_laplacian(graph)
    cur = torch.cat([model.user_emb, model.item_emb]).detach()
    parts = [cur]
    for w1, w2 in zip(model.w1, model.w2):
        side = lap @ cur
        cur = F.leaky_relu(
            (side + cur) @ w1.weight.T + w1.bias + (side * cur) @ w2.weight.T + w2.bias, 0.2
        )
        parts.append(F.normalize(cur, dim=1))
    want_u, want_i = split(torch.cat(parts, 1), graph)
    got_u, got_i = model(graph)
    assert got_u.shape == (num_users, 5 + 4 + 7)
    torch.testing.assert_close(got_u, want_u, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_i, want_i, rtol=1e-12, atol=1e-12)


def all_ones_specs(graph, layers):
    e = graph.num_edges
    big = torch.full((e,), 60.0, dtype=torch.float64, device=DEVICE)  # sigmoid rounds to 1.0
    return [
        [{"mode": "ones"}] * layers,
        [{"logits": big, "mode": "bernoulli", "seed": k, "offset": 7 * k} for k in range(layers)],
        [{"logits": big, "mode": "hard", "edge_weight": torch.ones(e, device=DEVICE)}] * layers,
    ]


@pytest.mark.parametrize(
    "name,kwargs",
    [("lightgcn", {"num_layers": 3}), ("ngcf", {"layer_dims": (4, 4, 4), "mess_dropout": 0.0})],
)
def test_all_ones_mask_spec_equals_no_mask(name, kwargs):
    graph = random_graph(8, 11, 0.3)
    torch.manual_seed(0)
    model = CLASSES[name](8, 11, dim=4, **kwargs).double().to(DEVICE)
    want = model(graph)
    for spec in all_ones_specs(graph, 3):
        got = model(graph, spec)
        torch.testing.assert_close(got[0], want[0], rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(got[1], want[1], rtol=1e-14, atol=1e-14)


def test_mask_spec_changes_propagation():
    graph = random_graph(8, 11, 0.4)
    model = LightGCN(8, 11, dim=4, num_layers=2).double().to(DEVICE)
    zero = torch.full((graph.num_edges,), -60.0, dtype=torch.float64, device=DEVICE)
    u, i = model(graph, [{"logits": zero, "mode": "bernoulli"}] * 2)
    # Every edge dropped: layers 1..K are zero, the readout is E^(0) / (K + 1).
    torch.testing.assert_close(u, model.user_emb / 3)
    torch.testing.assert_close(i, model.item_emb / 3)


@pytest.mark.parametrize(
    "name,kwargs", [("lightgcn", {}), ("ngcf", {"layer_dims": (6, 6), "node_dropout": 0.2})]
)
def test_loss_and_gradients_flow(name, kwargs):
    graph = random_graph(10, 12, 0.3)
    torch.manual_seed(0)
    model = CLASSES[name](10, 12, dim=6, decay=1e-2, **kwargs).to(DEVICE)
    users, pos = graph.edges()
    neg = (pos + 1) % 12
    terms = model.loss(graph, Batch(users, pos, neg))
    total, bpr, reg = terms["loss"], terms["bpr"], terms["reg"]
    assert set(terms) == {"loss", "bpr", "reg"}
    assert torch.isfinite(total) and total.item() == pytest.approx(bpr.item() + reg.item())
    total.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_bpr_loss_values():
    user = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    item = torch.tensor([[1.0, 1.0], [0.0, -1.0], [3.0, 0.0]], dtype=torch.float64)
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([2, 0]), torch.tensor([1, 1])
    terms = bpr_loss(user, item, user, item, Batch(users, pos, neg), decay=0.5)
    total, bpr, reg = terms["loss"], terms["bpr"], terms["reg"]
    s_diff = torch.tensor([3.0 - 0.0, 2.0 - (-2.0)], dtype=torch.float64)
    assert bpr.item() == pytest.approx(-torch.log(torch.sigmoid(s_diff)).mean().item())
    sq = (1 + 4) + (9 + 2) + (1 + 1)  # users, positives, negatives
    assert reg.item() == pytest.approx(0.5 * sq / (2 * 2))
    assert total.item() == pytest.approx(bpr.item() + reg.item())


def test_ngcf_node_dropout_is_seeded_and_off_in_eval():
    graph = random_graph(12, 9, 0.5)
    model = NGCF(12, 9, dim=4, layer_dims=(4,), mess_dropout=0.0, node_dropout=0.5).double()
    model = model.to(DEVICE)
    torch.manual_seed(3)
    a = model(graph)[0]
    torch.manual_seed(3)
    b = model(graph)[0]
    c = model(graph)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    model.eval()
    torch.testing.assert_close(model(graph)[0], model(graph, [{"mode": "ones"}])[0])


def test_bad_arguments():
    graph = random_graph(5, 4, 0.5)
    with pytest.raises(ValueError, match="unknown model 'mf'"):
        model_entry("mf")
    with pytest.raises(ValueError, match="mask_spec has 1 entries"):
        LightGCN(5, 4, num_layers=2).to(DEVICE)(graph, [{}])
    with pytest.raises(ValueError, match="built for 6 x 4"):
        NGCF(6, 4).to(DEVICE)(graph)
    with pytest.raises(ValueError, match="mess_dropout must be in"):
        NGCF(5, 4, mess_dropout=1.0)


class _Recorder(Plugin):
    """A plug-in touching every seam: halves layer 1's output, weights every edge of layer 0,
    adds a loss term and reports keep scores."""

    def __init__(self, num_edges):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
        self.num_edges = num_edges
        self.batches = []

    def layer_kwargs(self, layer, graph, batch):
        self.batches.append(batch)
        if layer == 0:
            return {
                "edge_weight": torch.full(
                    (graph.num_edges,), 2.0, dtype=torch.float64, device=graph.device
                )
            }
        return {}

    def after_layer(self, layer, graph, x_user, x_item):
        return (x_user * self.scale, x_item * self.scale) if layer == 1 else (x_user, x_item)

    def extra_loss(self, model, graph, layers, batch):
        return {"extra": self.scale * layers[-1][0][batch.users].sum()}

    def keep_scores(self, graph):
        return torch.linspace(0, 1, graph.num_edges, device=graph.device)


def test_plugin_seams():
    graph = random_graph(8, 11, 0.4)
    torch.manual_seed(0)
    model = LightGCN(8, 11, dim=4, num_layers=2).double().to(DEVICE)
    plain_layers = model.layer_outputs(graph)
    plugin = _Recorder(graph.num_edges).to(DEVICE)
    model.add_plugin(plugin)
    assert any(p is plugin.scale for p in model.parameters())  # trains with the model
    layers = model.layer_outputs(graph)
    # Layer 0 with all weights 2: renormalisation cancels a constant weight.
    torch.testing.assert_close(layers[1][0], plain_layers[1][0])
    # Layer 1 is halved after propagation (and so is nothing else).
    from fastgcn_denoise.ops import masked_spmm

    want = masked_spmm(graph, *layers[1])
    torch.testing.assert_close(layers[2][0], 0.5 * want[0])
    users, pos = graph.edges()
    batch = Batch(users, pos, (pos + 1) % 11)
    terms = model.loss(graph, batch)
    assert set(terms) == {"loss", "bpr", "reg", "extra"}
    assert terms["loss"].item() == pytest.approx(
        (terms["bpr"] + terms["reg"] + terms["extra"]).item()
    )
    assert plugin.batches[-1] is batch  # the step's triples reach the layers
    assert torch.equal(model.keep_scores(graph), plugin.keep_scores(graph))
    with pytest.raises(ValueError, match="'edge_weight' is set twice"):
        model(
            graph,
            [{"edge_weight": torch.ones(graph.num_edges, dtype=torch.float64, device=DEVICE)}, {}],
        )
