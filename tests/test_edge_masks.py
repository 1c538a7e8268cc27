"""Learned edge masks: target-edge holdout, pathwise gates, mask heads, keep-level control, the
plug-ins in the trainer."""

import pytest
import torch
from conftest import random_graph

from fastgcn_denoise import ops
from fastgcn_denoise.data import make_synthetic, save_npz
from fastgcn_denoise.denoisers.masks import (
    EdgeMask,
    Holdout,
    KeepControl,
    MaskHead,
    edge_features,
    edge_ids,
    holdout_kwargs,
)
from fastgcn_denoise.models import Batch, LightGCN
from fastgcn_denoise.pipelines.train import make_config, restore_run, train


def batch_of(graph, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    users, items = graph.edges()
    pick = torch.randint(graph.num_edges, (n,), generator=gen)
    neg = torch.randint(graph.num_items, (n,), generator=gen)
    return Batch(users[pick], items[pick], neg), pick


def test_edge_ids_and_holdout_weights():
    g = random_graph(9, 7, 0.4, seed=1)
    batch, picked = batch_of(g, 12)
    assert torch.equal(edge_ids(g, batch.users, batch.pos), picked)
    with pytest.raises(ValueError, match="not edges"):
        edge_ids(g, torch.tensor([8]), torch.tensor([6]))  # the isolated user and item
    kw = holdout_kwargs(g, batch)
    # the same propagation as the explicit weights: 0 on the batch's positives
    w = torch.ones(g.num_edges)
    w[picked] = 0
    x_u, x_i = torch.randn(9, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    got = ops.masked_spmm(g, x_u, x_i, **kw)
    want = ops.masked_spmm(g, x_u, x_i, edge_weight=w.double())
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert holdout_kwargs(g, None) == {}


def test_holdout_plugin_changes_only_training_steps():
    g = random_graph(12, 10, 0.3, seed=2)
    batch, picked = batch_of(g, 6)
    torch.manual_seed(0)
    plain = LightGCN(12, 10, dim=4, num_layers=2)
    held = LightGCN(12, 10, dim=4, num_layers=2)
    held.load_state_dict(plain.state_dict())
    held.add_plugin(Holdout())
    w = torch.ones(g.num_edges)
    w[picked] = 0
    spec = [{"edge_weight": w}] * 2
    torch.testing.assert_close(held.loss(g, batch)["loss"], plain.loss(g, batch, spec)["loss"])
    held.eval(), plain.eval()
    for a, b in zip(held(g), plain(g)):
        torch.testing.assert_close(a, b)


def test_keep_control_meets_the_target_and_learns_no_common_shift():
    torch.manual_seed(0)
    control = KeepControl(target_keep=0.8)
    phi = (torch.randn(3, 500, dtype=torch.float64) * 2).requires_grad_()
    shifted = control.shift(phi)
    torch.testing.assert_close(
        torch.sigmoid(shifted).mean(1),
        torch.full((3,), 0.8, dtype=torch.float64),
        rtol=0,
        atol=1e-5,
    )
    # the mean keep is pinned: its gradient in the raw logits vanishes
    (grad,) = torch.autograd.grad(torch.sigmoid(shifted).mean(), phi)
    assert grad.abs().max() < 1e-7
    # a common shift of the raw logits changes nothing (up to the solver's 1e-5 keep tolerance)
    torch.testing.assert_close(
        KeepControl(0.8).shift(phi.detach() + 3.0), shifted.detach(), rtol=0, atol=1e-4
    )
    # a loss on some edges still moves them relative to the others
    (grad,) = torch.autograd.grad(torch.sigmoid(control.shift(phi))[:, :10].sum(), phi)
    assert (grad[:, :10] > 0).all() and (grad[:, 10:] <= 0).all()
    # with the hard concrete offset the keep probability sigma(phi - offset) is the target
    hc = KeepControl(0.7).shift(phi.detach(), offset=-1.5)
    torch.testing.assert_close(
        torch.sigmoid(hc + 1.5).mean(1),
        torch.full((3,), 0.7, dtype=torch.float64),
        rtol=0,
        atol=1e-5,
    )
    assert KeepControl().shift(phi) is phi
    with pytest.raises(ValueError, match="target_keep"):
        KeepControl(1.0)


def test_mask_heads_shapes_and_start():
    g = random_graph(10, 8, 0.4, seed=3)
    f_u, f_i = torch.randn(10, 4), torch.randn(8, 4)
    for head, width in (("score", 1), ("linear", 3), ("mlp", 3)):
        feats = edge_features(g, f_u, f_i, head)
        assert feats.shape == (g.num_edges, width)
        torch.testing.assert_close(feats.mean(0), torch.zeros(width), atol=1e-5, rtol=0)
        logits = MaskHead(head, 2, g.num_edges, init_keep=0.9)(feats)
        assert logits.shape == (2, g.num_edges)
        if head != "mlp":  # zero weights: every edge starts at init_keep
            torch.testing.assert_close(torch.sigmoid(logits), torch.full_like(logits, 0.9))
    # the score is standardised within each user's interactions
    score = edge_features(g, f_u, f_i, "score")[:, 0].double()
    users, items = g.edges()
    raw = (f_u[users] * f_i[items]).sum(1).double()
    for u in range(10):
        mine = users == u
        if mine.sum() > 1:
            want = (raw[mine] - raw[mine].mean()) / raw[mine].std(unbiased=False)
            torch.testing.assert_close(score[mine], want, atol=1e-4, rtol=1e-4)
    free = MaskHead("free", 3, g.num_edges, 0.5)
    assert free().shape == (3, g.num_edges) and not free.amortised
    with pytest.raises(ValueError, match="mask head"):
        MaskHead("cnn", 1, 3)


@pytest.mark.parametrize("estimator", ["gumbel", "hard_concrete"])
def test_mask_forward_is_the_gated_holdout_propagation(estimator):
    """A training forward propagates on gate(logits) x holdout, with the gate drawn from the
    Philox stream at counter k E + e; the head's parameters get gradients through it."""
    g = random_graph(14, 11, 0.35, seed=4)
    torch.manual_seed(1)
    model = LightGCN(14, 11, dim=4, num_layers=2)
    mask = EdgeMask(
        model,
        g.num_edges,
        estimator=estimator,
        head="score",
        target_keep=None,
        warmup_epochs=0.0,
        init_keep=0.7,
    )
    model.add_plugin(mask)
    with torch.no_grad():
        mask.head.weight.fill_(0.5)
    batch, picked = batch_of(g, 5)
    torch.manual_seed(7)
    terms = model.loss(g, batch)
    seed, logits, *_ = mask._step
    kind = "concrete_st" if estimator == "gumbel" else "hard_concrete"
    stretch = {} if estimator == "gumbel" else {"gamma": -0.1, "zeta": 1.1}
    hold = torch.ones(g.num_edges)
    hold[picked] = 0
    spec = [
        {
            "edge_weight": ops.gate(logits[k].detach(), kind, seed, k * g.num_edges, 0.5, **stretch)
            * hold
        }
        for k in range(2)
    ]
    plain = LightGCN(14, 11, dim=4, num_layers=2)
    plain.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("plugins")}
    )
    want = plain.loss(g, batch, spec)
    torch.testing.assert_close(terms["bpr"], want["bpr"])
    # mask_targets: each positive's BPR term weighted by its (detached) mean keep probability
    keep = mask.keep_prob(logits.detach()[:, picked]).mean(0)
    fu, fi = plain.readout(plain.layer_outputs(g, batch, spec))
    per = torch.nn.functional.softplus(
        (fu[batch.users] * fi[batch.neg]).sum(1) - (fu[batch.users] * fi[batch.pos]).sum(1)
    )
    torch.testing.assert_close(terms["loss"], (keep * per).mean() + want["reg"])
    assert terms["targets"] < 0
    terms["loss"].backward()
    assert mask.head.weight.grad is not None and mask.head.weight.grad.abs().sum() > 0
    # evaluation: deterministic gates (gumbel: the Bernoulli's mode; hard concrete: its mean)
    model.eval()
    a, b = model(g), model(g)
    torch.testing.assert_close(a[0], b[0])
    keep = mask.keep_scores(g)
    assert keep.shape == (2, g.num_edges) and 0 <= float(keep.min()) <= float(keep.max()) <= 1


def test_mask_warmup_then_target_keep():
    g = random_graph(20, 15, 0.3, seed=5)
    model = LightGCN(20, 15, dim=4, num_layers=2)
    mask = EdgeMask(model, g.num_edges, head="free", target_keep=0.75, warmup_epochs=1.0)
    model.add_plugin(mask)
    batch, _ = batch_of(g, g.num_edges // 2)
    kw = model.layer_kwargs(0, g, batch)
    assert set(kw) <= {"edge_weight", "holdout"} and "logits" not in kw  # warm-up: holdout only
    model.loss(g, batch)
    model.loss(g, batch)
    assert mask.examples == 2 * (g.num_edges // 2) and mask.active
    torch.testing.assert_close(
        mask.keep_scores(g).mean(1), torch.full((2,), 0.75), atol=1e-4, rtol=0
    )
    terms = model.loss(g, batch)
    assert mask._step[1] is not None
    # the state dict carries the warm-up count, the embeddings and the shift
    other = LightGCN(20, 15, dim=4, num_layers=2)
    other.add_plugin(EdgeMask(other, g.num_edges, head="free", target_keep=0.75))
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other.plugins[0].keep_scores(g), mask.keep_scores(g))
    assert other.plugins[0].examples == mask.examples
    assert torch.isfinite(terms["loss"])


def test_mask_rejects_a_foreign_graph():
    g = random_graph(10, 8, 0.4, seed=6)
    model = LightGCN(10, 8, dim=4, num_layers=1)
    mask = EdgeMask(model, g.num_edges + 1, warmup_epochs=0.0)
    with pytest.raises(ValueError, match="edges"):
        mask.keep_scores(g)
    with pytest.raises(ValueError, match="at least one"):
        EdgeMask(LightGCN(10, 8, dim=4, num_layers=0), g.num_edges)


def test_mask_and_holdout_plugins_in_the_trainer(tmp_path):
    data = make_synthetic(
        num_users=120, num_items=80, dim=4, avg_degree=10, seed=1, noise_mix={"uniform": 1.0}
    )
    save_npz(data, tmp_path / "d.npz")
    common = dict(
        data=str(tmp_path / "d.npz"), epochs=3, eval_every=1, lr=1e-2, progress=False, verbose=False
    )
    cfg = make_config(
        "lightgcn",
        plugins=["mask"],
        out=str(tmp_path / "m"),
        mask_warmup=1.0,
        mask_head="linear",
        target_keep=0.8,
        mask_head_lr=0.05,
        **common,
    )
    result = train(cfg)
    assert result["test"]["recall@20"] > 0
    _, _, prep, model = restore_run(tmp_path / "m" / "checkpoint.pt")
    keep = model.keep_scores(prep.train)
    assert keep.shape == (3, prep.train.num_edges)
    assert abs(float(keep.mean()) - 0.8) < 1e-3
    groups = model.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [1e-3, 0.05]
    assert (
        train(make_config("lightgcn", plugins=["holdout"], out=str(tmp_path / "h"), **common))[
            "test"
        ]["recall@20"]
        > 0
    )
