"""SimGCL and XSimGCL against dense float64 computations on tiny graphs."""

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICE, random_graph
from test_models import dense_laplacian, split

from fastgcn_denoise.models.base import Batch, Plugin
from fastgcn_denoise.models.simgcl import (
    SimGCL,
    info_nce,
    noise_offset,
    noise_seed,
    operator_rows,
    perturb_rows,
)
from fastgcn_denoise.models.xsimgcl import XSimGCL
from fastgcn_denoise.ops import masked_spmm, reference
from fastgcn_denoise.ops.weighted_spmm import csr_product


def batch_of(graph, seed=0):
    users, pos = graph.edges()
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(users.shape[0], generator=gen)[:12].to(DEVICE)
    neg = (pos[pick] + 1) % graph.num_items
    return Batch(users[pick], pos[pick], neg)


def dense_layers(model, graph, eps=None, view=0, seed=None):
    """[E^(0), ..., E^(L)] stacked users then items; with ``eps`` the noise of view ``view``
    under Philox key ``seed``: column c of node v is word c % 4 of counter
    noise_offset(view, layer) + v ⌈d / 4⌉ + c // 4."""
    lap = dense_laplacian(graph)
    cur = torch.cat([model.user_emb, model.item_emb])
    n, d = cur.shape
    q = (d + 3) // 4  # Philox calls per row, four words each
    counters = torch.arange(n, device=DEVICE)[:, None] * q + torch.arange(q, device=DEVICE)
    outs = [cur]
    for k in range(model.num_layers):
        cur = lap @ cur
        if eps is not None:
            base = noise_offset(view, k, model.num_layers, n, d)
            u = reference.philox_uniform4(seed, base + counters).reshape(n, 4 * q)[:, :d]
            u = u.to(cur.dtype)
            cur = cur + eps * torch.sign(cur) * F.normalize(u, dim=1)
        outs.append(cur)
    return outs


def dense_bpr(final, graph, batch, model):
    u, it = split(final, graph)
    s_pos = (u[batch.users] * it[batch.pos]).sum(1)
    s_neg = (u[batch.users] * it[batch.neg]).sum(1)
    ego = torch.cat(
        [model.user_emb[batch.users], model.item_emb[batch.pos], model.item_emb[batch.neg]]
    )
    return -F.logsigmoid(s_pos - s_neg).mean(), model.decay * ego.pow(2).sum() / (2 * 12)


def dense_info_nce(a, b, tau):
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    pos = (a * b).sum(1) / tau
    return -(pos - torch.log(torch.exp(a @ b.T / tau).sum(1))).mean()


def test_perturb_rows_is_sign_aligned_with_norm_eps():
    torch.manual_seed(0)
    x = torch.randn(50, 7, dtype=torch.float64)
    delta = perturb_rows(x, 0.3, seed=123, offset=0) - x
    torch.testing.assert_close(delta.norm(dim=1), torch.full((50,), 0.3, dtype=torch.float64))
    assert (torch.sign(delta) == torch.sign(x)).all()


def test_info_nce_matches_formula():
    torch.manual_seed(1)
    a, b = torch.randn(9, 4, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    torch.testing.assert_close(info_nce(a, b, 0.2), dense_info_nce(a, b, 0.2))


@pytest.mark.parametrize("layers", [1, 3])
def test_simgcl_forward_and_loss_match_dense(layers):
    graph = random_graph(11, 9, 0.35, seed=layers)
    torch.manual_seed(0)
    model = (
        SimGCL(11, 9, dim=5, num_layers=layers, cl_weight=0.7, cl_temperature=0.3, noise_eps=0.25)
        .double()
        .to(DEVICE)
    )
    # Clean readout: the mean of layers 1..L (no E^(0)), no noise.
    want = torch.stack(dense_layers(model, graph)[1:]).mean(0)
    got = torch.cat(model(graph))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)

    batch = batch_of(graph)
    torch.manual_seed(5)
    terms = model.loss(graph, batch)
    torch.manual_seed(5)
    seed = noise_seed()  # the model's one draw of the step
    bpr, reg = dense_bpr(want, graph, batch, model)
    views = [
        split(torch.stack(dense_layers(model, graph, 0.25, v, seed)[1:]).mean(0), graph)
        for v in range(2)
    ]
    users, items = torch.unique(batch.users), torch.unique(batch.pos)
    cl = 0.7 * (
        dense_info_nce(views[0][0][users], views[1][0][users], 0.3)
        + dense_info_nce(views[0][1][items], views[1][1][items], 0.3)
    )
    assert set(terms) == {"bpr", "reg", "cl", "loss"}
    for name, value in (("bpr", bpr), ("reg", reg), ("cl", cl), ("loss", bpr + reg + cl)):
        torch.testing.assert_close(terms[name], value, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("cl_layer", [1, 2])
def test_xsimgcl_loss_matches_dense(cl_layer):
    graph = random_graph(10, 12, 0.3, seed=4)
    torch.manual_seed(0)
    model = (
        XSimGCL(
            10,
            12,
            dim=6,
            num_layers=2,
            cl_weight=0.4,
            cl_temperature=0.15,
            noise_eps=0.2,
            cl_layer=cl_layer,
        )
        .double()
        .to(DEVICE)
    )
    batch = batch_of(graph, seed=2)
    torch.manual_seed(7)
    terms = model.loss(graph, batch)
    torch.manual_seed(7)
    layers = dense_layers(model, graph, 0.2, 0, noise_seed())  # one pass: BPR and the contrast
    final = torch.stack(layers[1:]).mean(0)
    bpr, reg = dense_bpr(final, graph, batch, model)
    users, items = torch.unique(batch.users), torch.unique(batch.pos)
    (fu, fi), (lu, li) = split(final, graph), split(layers[cl_layer], graph)
    cl = 0.4 * (
        dense_info_nce(fu[users], lu[users], 0.15) + dense_info_nce(fi[items], li[items], 0.15)
    )
    for name, value in (("bpr", bpr), ("reg", reg), ("cl", cl)):
        torch.testing.assert_close(terms[name], value, rtol=1e-10, atol=1e-12, msg=name)
    # Evaluation is the clean pass: deterministic, equal to SimGCL's readout of the same weights.
    model.eval()
    torch.testing.assert_close(
        torch.cat(model(graph)), torch.stack(dense_layers(model, graph)[1:]).mean(0)
    )


@pytest.mark.parametrize("cls", [SimGCL, XSimGCL])
def test_gradients_reach_every_parameter(cls):
    graph = random_graph(9, 8, 0.4, seed=1)
    torch.manual_seed(0)
    model = cls(9, 8, dim=4, num_layers=2).to(DEVICE)
    terms = model.loss(graph, batch_of(graph))
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and terms["cl"] > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_no_contrast_without_weight_and_bad_settings():
    graph = random_graph(6, 5, 0.5)
    model = SimGCL(6, 5, dim=3, num_layers=2, cl_weight=0.0).to(DEVICE)
    assert set(model.loss(graph, batch_of(graph))) == {"bpr", "reg", "loss"}
    with pytest.raises(ValueError, match="num_layers >= 1"):
        SimGCL(6, 5, num_layers=0)
    with pytest.raises(ValueError, match="cl_temperature > 0"):
        SimGCL(6, 5, cl_temperature=0.0)
    with pytest.raises(ValueError, match=r"cl_layer must be in \[1, num_layers = 2\]"):
        XSimGCL(6, 5, num_layers=2, cl_layer=3)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_simgcl_one_pass_backward_matches_three_passes(layers):
    # Without plug-ins SimGCL propagates only the views' deviations from the clean pass and lets
    # the clean pass carry their gradient; a no-op plug-in forces the three explicit passes. Same
    # seed, same uniforms: the same terms and gradients to rounding.
    graph = random_graph(14, 11, 0.3, seed=layers + 10)
    batch = batch_of(graph, seed=3)
    got = []
    for explicit in (False, True):
        torch.manual_seed(0)
        model = SimGCL(14, 11, dim=5, num_layers=layers, cl_weight=0.6, noise_eps=0.3)
        model = model.double().to(DEVICE)
        if explicit:
            model.add_plugin(Plugin())
        torch.manual_seed(9)
        terms = model.loss(graph, batch)
        terms["loss"].backward()
        got.append((terms, model.user_emb.grad, model.item_emb.grad))
    (fast, fu, fi), (slow, su, si) = got
    assert set(fast) == set(slow) == {"bpr", "reg", "cl", "loss"}
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-12, atol=1e-14, msg=name)
    torch.testing.assert_close(fu, su, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(fi, si, rtol=1e-10, atol=1e-14)


def test_operator_rows_are_masked_spmm_on_those_rows():
    graph = random_graph(13, 17, 0.25, seed=5).to(DEVICE)
    gen = torch.Generator().manual_seed(1)
    x = (
        torch.randn(13, 6, generator=gen, dtype=torch.float64).to(DEVICE),
        torch.randn(17, 6, generator=gen, dtype=torch.float64).to(DEVICE),
    )
    rows = torch.tensor([0, 4, 4, 12, 13 + 16, 13 + 2, 13 + 0], device=DEVICE)
    crow, col, w = operator_rows(graph, torch.float64, rows)
    got = csr_product(crow, col, None, w, torch.cat(x))
    want = torch.cat(masked_spmm(graph, *x))[rows]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
