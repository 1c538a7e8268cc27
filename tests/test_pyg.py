"""fastgcn_denoise.pyg.LGConv and the edge_index / HeteroData converters.

Against a dense float64 reference written from PyG's documented LGConv formula
(x'_j = sum_k e_kj / sqrt(deg(j) deg(k)) x_k, deg(j) = sum_k e_kj over the incoming columns), on
every backend present, and against PyG's own LGConv where torch_geometric is installed.
"""

import numpy as np
import pytest
import torch
from conftest import DEVICE, backend_params, random_graph

from fastgcn_denoise import BipartiteGraph, ops, pyg
from fastgcn_denoise.graph import parse_edge_index

BACKEND = backend_params()

try:
    import torch_geometric
    from torch_geometric.nn import LGConv as PygLGConv

    NO_PYG = None
except ImportError as exc:  # the test extra installs it; a bare environment may not have it
    torch_geometric = PygLGConv = None
    NO_PYG = f"torch_geometric not importable ({exc})"


def homogeneous(graph: BipartiteGraph, seed: int):
    """graph's edge_index with the columns shuffled (so edge_index order != edge-id order)."""
    ei = graph.to_edge_index()
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(ei.shape[1])).to(ei.device)
    return ei[:, perm]


def formula(x, edge_index, edge_weight=None, normalize=True):
    """PyG's documented LGConv in dense float64: source = edge_index[0], target = edge_index[1]."""
    n = x.shape[0]
    src, dst = edge_index
    w = (
        torch.ones(src.shape[0], dtype=torch.float64, device=x.device)
        if edge_weight is None
        else edge_weight.double()
    )
    a = torch.zeros(n, n, dtype=torch.float64, device=x.device).index_put(
        (dst, src), w, accumulate=True
    )
    if normalize:
        deg = a.sum(1)
        r = torch.where(deg > 0, deg.clamp_min(1e-300).rsqrt(), torch.zeros_like(deg))
        a = r[:, None] * a * r[None, :]
    return a @ x.double()


def rand(shape, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(DEVICE, dtype)


@pytest.fixture(autouse=True)
def fresh_cache():
    pyg.clear_cache()
    yield
    pyg.clear_cache()


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes,d", [((7, 9), 5), ((13, 4), 33), ((1, 3), 1)])
def test_lgconv_matches_formula_and_gradients(backend, dtype, sizes, d):
    graph = random_graph(*sizes, 0.4, seed=d)
    ei = homogeneous(graph, d)
    n = graph.num_users + graph.num_items
    x = rand((n, d), 1, dtype).requires_grad_()
    conv = pyg.LGConv(backend=backend)
    y = conv(x, ei, None)
    truth_x = x.detach().double().requires_grad_()
    truth = formula(truth_x, ei)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y.double(), truth, **tol)
    assert y.dtype == dtype and y.shape == x.shape
    gy = rand((n, d), 2)
    y.backward(gy.to(dtype))
    truth.backward(gy)
    torch.testing.assert_close(x.grad.double(), truth_x.grad, **tol)


@pytest.mark.parametrize("backend", BACKEND)
def test_lgconv_edge_weight_and_masks(backend):
    graph = random_graph(8, 6, 0.5, seed=3)
    ei = homogeneous(graph, 3)
    layout = parse_edge_index(ei)
    n, e = graph.num_users + graph.num_items, graph.num_edges
    x = rand((n, 4), 4)
    # Symmetric PyG edge weights: one positive value per interaction on both copies.
    per_edge = rand((e,), 5).abs() + 0.1
    ew = torch.empty(ei.shape[1], dtype=torch.float64, device=DEVICE)
    ew[layout.user_to_item.to(DEVICE)] = per_edge
    ew[layout.item_to_user.to(DEVICE)] = per_edge
    ew.requires_grad_()
    conv = pyg.LGConv(backend=backend)
    y = conv(x, ei, ew)
    ew_t = ew.detach().clone().requires_grad_()
    truth = formula(x, ei, ew_t)
    torch.testing.assert_close(y, truth, rtol=1e-10, atol=1e-12)
    gy = rand((n, 4), 6)
    y.backward(gy)
    truth.backward(gy)
    # The copies share one weight: their summed gradient is PyG's summed gradient, split evenly.
    ui, iu = layout.user_to_item.to(DEVICE), layout.item_to_user.to(DEVICE)
    torch.testing.assert_close(
        ew.grad[ui] + ew.grad[iu], ew_t.grad[ui] + ew_t.grad[iu], rtol=1e-9, atol=1e-11
    )
    torch.testing.assert_close(ew.grad[ui], ew.grad[iu])
    # interaction_weight / logits are per interaction in the order of the user -> item columns.
    order = ei[0] < graph.num_users
    w_cols = ew.detach()[order]
    torch.testing.assert_close(conv(x, ei, interaction_weight=w_cols), y.detach())
    # The masked path with unit weights equals the plain path (one cached weighted product).
    ones = torch.ones(e, dtype=torch.float64, device=DEVICE)
    torch.testing.assert_close(
        conv(x, ei, interaction_weight=ones), conv(x, ei), rtol=1e-12, atol=1e-14
    )
    phi = rand((e,), 7).requires_grad_()
    y_expect = conv(x, ei, logits=phi, mode="expect")
    ref = ops.masked_spmm(
        graph,
        x[: graph.num_users],
        x[graph.num_users :],
        phi.detach()[layout.interaction_order.to(DEVICE)],
        mode="expect",
        backend="reference",
    )
    torch.testing.assert_close(y_expect.detach(), torch.cat(ref), rtol=1e-10, atol=1e-12)
    y_expect.sum().backward()
    assert phi.grad is not None and phi.grad.abs().sum() > 0
    # A relaxed gate with its parameters and a holdout, both per interaction.
    held = torch.tensor([0, 3, 3], device=DEVICE)
    edge_of = torch.argsort(layout.interaction_order.to(DEVICE))  # interaction index -> edge id
    y_gate = conv(
        x,
        ei,
        logits=phi.detach(),
        mode="hard_concrete",
        seed=4,
        temperature=0.4,
        zeta=1.2,
        holdout=held,
    )
    ref = ops.masked_spmm(
        graph,
        x[: graph.num_users],
        x[graph.num_users :],
        phi.detach()[layout.interaction_order.to(DEVICE)],
        "hard_concrete",
        seed=4,
        temperature=0.4,
        zeta=1.2,
        holdout=edge_of[held],
        backend="reference",
    )
    torch.testing.assert_close(y_gate, torch.cat(ref), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKEND)
def test_lgconv_without_normalisation(backend):
    graph = random_graph(5, 7, 0.5, seed=8)
    ei = homogeneous(graph, 8)
    x = rand((graph.num_users + graph.num_items, 3), 9)
    y = pyg.LGConv(normalize=False, backend=backend)(x, ei)
    torch.testing.assert_close(y, formula(x, ei, normalize=False), rtol=1e-10, atol=1e-12)


def test_lgconv_float64_gradcheck():
    graph = random_graph(4, 5, 0.6, seed=10)
    ei = homogeneous(graph, 10)
    x = rand((9, 2), 11).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: pyg.LGConv()(x, ei), (x,))


@pytest.mark.skipif(NO_PYG is not None, reason=str(NO_PYG))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lgconv_equals_pyg(seed):
    """Output and gradients equal torch_geometric's LGConv on random graphs (float64)."""
    graph = random_graph(11 + seed, 17 - seed, 0.3, seed=seed)
    ei = homogeneous(graph, seed)
    n = graph.num_users + graph.num_items
    x = rand((n, 8), seed + 20).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    ours, theirs = pyg.LGConv()(x, ei), PygLGConv()(x_ref, ei)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    gy = rand((n, 8), seed + 30)
    ours.backward(gy)
    theirs.backward(gy)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


def test_cache_is_keyed_by_tensor_and_version():
    graph = random_graph(6, 5, 0.5, seed=12)
    ei = homogeneous(graph, 12)
    n = graph.num_users + graph.num_items
    conv = pyg.LGConv()
    first = conv.layout(ei, n)
    assert conv.layout(ei, n) is first  # the same tensor: no re-parse
    assert pyg.LGConv().layout(ei.clone(), n) is first  # equal content: found by comparison
    swapped = ei.clone()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]  # an in-place write bumps the version
    again = conv.layout(swapped, n)
    assert again is not first  # re-parsed: the columns moved
    assert torch.equal(again.graph.col_item, first.graph.col_item)
    users, items = again.graph.edges()
    assert torch.equal(swapped[0, again.user_to_item], users)
    assert torch.equal(swapped[1, again.user_to_item] - again.graph.num_users, items)
    # A different graph of the same shape is not mistaken for the cached one.
    other = homogeneous(random_graph(6, 5, 0.5, seed=13), 13)
    if other.shape == ei.shape and not torch.equal(other, ei):
        assert conv.layout(other, n) is not first


def test_errors_name_the_problem():
    conv = pyg.LGConv()
    x = torch.zeros(6, 2, dtype=torch.float64, device=DEVICE)
    ok = torch.tensor([[0, 3, 1, 4], [3, 0, 4, 1]], device=DEVICE)  # users 0-2, items 3-5
    conv(x, ok)
    with pytest.raises(ValueError, match="not bipartite"):
        conv(x, torch.tensor([[0, 1, 1, 3], [1, 0, 3, 1]], device=DEVICE))  # a user-user edge
    with pytest.raises(ValueError, match="both users"):
        pyg.LGConv(num_users=3)(x, torch.tensor([[0, 1, 0, 4], [1, 0, 4, 0]], device=DEVICE))
    with pytest.raises(ValueError, match="not symmetric"):
        conv(x, torch.tensor([[0, 3, 1], [3, 0, 4]], device=DEVICE))
    with pytest.raises(ValueError, match="only user -> item"):
        conv(x, torch.tensor([[0, 1], [3, 4]], device=DEVICE))
    with pytest.raises(ValueError, match="twice"):
        conv(x, torch.tensor([[0, 3, 0, 3], [3, 0, 3, 0]], device=DEVICE))
    with pytest.raises(ValueError, match="self-loop"):
        conv(x, torch.tensor([[0, 3, 2], [3, 0, 2]], device=DEVICE))
    with pytest.raises(ValueError, match="refers to node 7"):
        conv(x, torch.tensor([[0, 7], [7, 0]], device=DEVICE))
    with pytest.raises(ValueError, match=r"\[2, num_edges\]"):
        conv(x, ok[0])
    with pytest.raises(ValueError, match="integer node ids"):
        conv(x, ok.double())
    with pytest.raises(ValueError, match="not symmetric: column"):
        conv(x, ok, torch.tensor([1.0, 2.0, 1.0, 1.0], dtype=torch.float64, device=DEVICE))
    with pytest.raises(ValueError, match="one value per interaction"):
        conv(x, ok, logits=torch.zeros(4, dtype=torch.float64, device=DEVICE), mode="expect")


def test_converters_round_trip():
    graph = random_graph(9, 7, 0.4, seed=14)
    ei = graph.to_edge_index()
    assert ei.shape == (2, 2 * graph.num_edges)
    back = BipartiteGraph.from_edge_index(
        ei, num_users=graph.num_users, num_nodes=graph.num_users + graph.num_items
    )
    for name in BipartiteGraph._TENSORS:
        assert torch.equal(getattr(back, name).to(DEVICE), getattr(graph, name)), name
    # One direction only (the user -> item copies) gives the same graph.
    one_way = BipartiteGraph.from_edge_index(
        ei[:, : graph.num_edges], graph.num_users, graph.num_users + graph.num_items
    )
    assert torch.equal(one_way.col_item.to(DEVICE), graph.col_item)
    # The inferred split puts nodes without edges between the last user and first item on the
    # item side (here the isolated last user), which leaves every edge where it was.
    inferred = BipartiteGraph.from_edge_index(ei)
    assert inferred.num_edges == graph.num_edges


class _Store:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _FakeHetero:
    """The two things from_hetero_data reads of a HeteroData: edge_types and item access."""

    def __init__(self, stores):
        self._stores = stores
        self.edge_types = [k for k in stores if isinstance(k, tuple)]

    def __getitem__(self, key):
        return self._stores[key]


def test_from_hetero_data():
    users = torch.tensor([0, 2, 2, 1])
    items = torch.tensor([1, 0, 3, 1])
    ei = torch.stack([users, items])
    stores = {
        "user": _Store(num_nodes=4),
        "item": _Store(num_nodes=5),
        ("user", "rates", "item"): _Store(edge_index=ei),
        ("item", "rev_rates", "user"): _Store(edge_index=ei.flip(0)),
    }
    data = _FakeHetero(stores)
    if torch_geometric is not None:  # the real thing too, where PyG is installed
        from torch_geometric.data import HeteroData

        data = HeteroData()
        data["user"].num_nodes, data["item"].num_nodes = 4, 5
        data["user", "rates", "item"].edge_index = ei
        data["item", "rev_rates", "user"].edge_index = ei.flip(0)
    g = BipartiteGraph.from_hetero_data(data)
    assert (g.num_users, g.num_items, g.num_edges) == (4, 5, 4)
    assert g.col_item.tolist() == [1, 1, 0, 3] and g.deg_u.tolist() == [1, 1, 2, 0]
    g2 = BipartiteGraph.from_hetero_data(data, ("user", "rates", "item"))
    assert torch.equal(g2.col_item, g.col_item)
    stores[("user", "clicks", "item")] = _Store(edge_index=ei)
    with pytest.raises(ValueError, match="pass edge_type"):
        BipartiteGraph.from_hetero_data(_FakeHetero(stores))
