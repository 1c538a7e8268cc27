"""GRCN: shapes, gradients to every parameter, routing modes, weight fusion and pruning, keep
scores, a few training steps, and that routing on the built-in data's content exposes its noise."""

import numpy as np
import pytest
import torch
from conftest import DEVICE

from fastgcn_denoise.data import make_synthetic
from fastgcn_denoise.denoisers.grcn import FUSIONS, GRCN, WEIGHT_MODES
from fastgcn_denoise.pipelines.denoise import roc_auc


@pytest.fixture(scope="module")
def small():
    data = make_synthetic(num_users=80, num_items=60, dim=4, avg_degree=8, seed=5)
    return data, data.train_graph().to(DEVICE)


def model_for(data, **kw):
    torch.manual_seed(0)
    return GRCN(data.num_users, data.num_items, data.features, dim=8, content_dim=8, **kw).to(
        DEVICE
    )


def batch(graph, n=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    users, items = graph.edges()
    pick = torch.randint(graph.num_edges, (n,), generator=gen).to(DEVICE)
    neg = torch.randint(graph.num_items, (n,), generator=gen).to(DEVICE)
    return users[pick], items[pick], neg


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("weight_mode", WEIGHT_MODES)
def test_forward_shapes_and_gradients(small, fusion, weight_mode):
    data, g = small
    model = model_for(data, fusion=fusion, weight_mode=weight_mode)
    u, i = model(g)
    width = {"concat": 8 + 2 * 8, "mean": 8, "id": 8}[fusion]
    assert u.shape == (g.num_users, width) and i.shape == (g.num_items, width)
    terms = model.loss(g, batch(g))
    assert set(terms) == {"loss", "bpr", "reg"} and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    for name, p in model.named_parameters():  # with fusion "id" too, through the edge weights
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_routing_modes(small):
    data, g = small
    official = model_for(data, routing_mode="official")
    paper = model_for(data, routing_mode="paper")
    paper.load_state_dict(official.state_dict())
    # Official: the loop only re-normalises p, so the routed preferences are the parameters'.
    reps_o, w_o, _ = official.refine(g)
    reps_p, w_p, _ = paper.refine(g)
    assert not torch.allclose(w_o, w_p)
    zero = model_for(data, routing_mode="paper", routing=0)
    zero.load_state_dict(official.state_dict())
    for (a, b), (c, d) in zip(official.refine(g)[0], zero.refine(g)[0]):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, d)


def test_pruning_and_keep_scores(small):
    data, g = small
    soft = model_for(data, pruning="soft")
    with torch.no_grad():
        soft.confidence.copy_(-soft.confidence.abs())  # every confidence negative
    _, w_u, _ = soft.refine(g)
    assert (w_u < 0).all()
    hard = model_for(data, pruning="hard")
    hard.load_state_dict(soft.state_dict())
    _, w_u, w_i = hard.refine(g)
    assert (w_u == 0).all() and (w_i == 0).all()
    # Constant content: every item looks the same, so each user's row is uniform (score 1).
    flat = {n: np.ones_like(f) for n, f in data.features.items()}
    model = GRCN(data.num_users, data.num_items, flat, dim=8, content_dim=8, weight_mode="mean").to(
        DEVICE
    )
    scores = model.keep_scores(g)
    assert scores.shape == (2, g.num_edges)
    torch.testing.assert_close(scores[0], torch.ones_like(scores[0]))


def test_confidence_init(small):
    """Default (ones): the refined graph starts as weight_mode "max", every edge kept. Xavier (the
    official init): c ~ N(0, 2 / (U + I + M)), weights ~1% of the affinities, a share negative
    and pruned; the ID branch then barely propagates (the TikTok defect, see GRCN.__init__)."""
    data, g = small
    ones = model_for(data)
    _, w_u, w_i = ones.refine(g)
    largest = model_for(data, weight_mode="max")
    largest.load_state_dict(
        {k: v for k, v in ones.state_dict().items() if k != "confidence"}, strict=False
    )
    _, m_u, m_i = largest.refine(g)
    torch.testing.assert_close(w_u, m_u)
    torch.testing.assert_close(w_i, m_i)
    assert (w_u > 0).all() and (w_i > 0).all()
    xavier = model_for(data, confidence_init="xavier")
    c = xavier.confidence.detach()
    n = data.num_users + data.num_items
    assert c.shape == (n, 2) and abs(c.std().item() / (2 / (n + 2)) ** 0.5 - 1) < 0.25
    xavier.load_state_dict(
        {k: v for k, v in ones.state_dict().items() if k != "confidence"} | {"confidence": c}
    )
    _, x_u, x_i = xavier.refine(g)
    assert 0.1 < (x_u == 0).float().mean() < 0.45  # both modalities' c < 0: pruned
    assert (x_u.sum() / w_u.sum()).abs() < 0.1  # the propagation starts ~switched off
    h_ones = ones.layer_outputs(g)[1][0].norm(dim=1).mean()
    h_xavier = xavier.layer_outputs(g)[1][0].norm(dim=1).mean()
    assert h_xavier < 0.2 * h_ones, (h_xavier, h_ones)
    with pytest.raises(ValueError, match="confidence_init = 'zeros'"):
        model_for(data, confidence_init="zeros")


def test_training_steps_lower_the_loss(small):
    data, g = small
    model = model_for(data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    b = batch(g, 64, seed=1)
    first = model.loss(g, b)["loss"].item()
    for _ in range(20):
        loss = model.loss(g, b)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first


@pytest.mark.parametrize("rate", [0.3, 0.6])
def test_edge_dropout(small, rate):
    """Training steps run on a thinned graph (about ``rate`` of the edges gone, a fresh draw each
    step, so the training pair's own edge is often absent); evaluation and keep scores see every
    edge, the same as without dropout."""
    data, g = small
    plain = model_for(data)
    drop = model_for(data, edge_dropout=rate)
    drop.load_state_dict(plain.state_dict())
    b = batch(g)
    plain.eval(), drop.eval()
    torch.testing.assert_close(drop.loss(g, b)["loss"], plain.loss(g, b)["loss"])
    torch.testing.assert_close(drop.keep_scores(g), plain.keep_scores(g))
    drop.train()
    thinned = [drop._dropped(g) for _ in range(2)]
    for t in thinned:
        assert (t.num_users, t.num_items) == (g.num_users, g.num_items)
        assert abs(1 - t.num_edges / g.num_edges - rate) < 0.08, (t.num_edges, g.num_edges)
    assert not torch.equal(thinned[0].col_item, thinned[1].col_item)
    torch.manual_seed(1)
    first = drop.loss(g, b)["loss"]
    assert not torch.allclose(first, plain.loss(g, b)["loss"])
    first.backward()
    assert all(p.grad is not None for p in drop.parameters())
    with pytest.raises(ValueError, match="edge_dropout = 1.0"):
        model_for(data, edge_dropout=1.0)


def test_routing_on_content_exposes_noise():
    """On the built-in data (topic-bearing content, popularity noise), the routed preferences of
    an untrained GRCN already weight off-topic clicks down: keep-score ROC AUC well above 0.5."""
    data = make_synthetic(num_users=300, num_items=200, dim=8, avg_degree=15, seed=1)
    g = data.train_graph().to(DEVICE)
    torch.manual_seed(0)
    noise = data.noise_per_edge(g)
    aucs = []
    for routing in (0, 3):
        model = GRCN(
            data.num_users,
            data.num_items,
            data.features,
            content_dim=64,
            routing=routing,
            weight_mode="mean",
        ).to(DEVICE)
        aucs.append(roc_auc(model.keep_scores(g)[0].cpu().numpy(), ~noise))
    assert aucs[0] < 0.56 and aucs[1] > 0.65, aucs


def test_errors(small):
    data, g = small
    with pytest.raises(ValueError, match="needs item content features"):
        GRCN(data.num_users, data.num_items, {})
    with pytest.raises(ValueError, match="content_dim .* must equal dim"):
        GRCN(data.num_users, data.num_items, data.features, dim=8, content_dim=4, fusion="mean")
    with pytest.raises(ValueError, match="weight_mode = 'sum'"):
        GRCN(data.num_users, data.num_items, data.features, weight_mode="sum")
    with pytest.raises(ValueError, match=r"expected \[num_items = 61, width\]"):
        GRCN(data.num_users, data.num_items + 1, data.features)


def test_train_select_and_denoise_export(tmp_path):
    """``grcn`` through the registry: features found beside train.txt (the item count taken from
    their rows), trained and selected on validation, restored, and its keep scores exported."""
    from fastgcn_denoise.data import write_interactions
    from fastgcn_denoise.pipelines.denoise import denoise_checkpoint
    from fastgcn_denoise.pipelines.train import make_config, train

    data = make_synthetic(num_users=60, num_items=40, dim=4, avg_degree=8, seed=3)
    folder = tmp_path / "lg"
    folder.mkdir()
    write_interactions(data, *data.train, folder / "train.txt")
    write_interactions(data, *data.test, folder / "test.txt")
    extra = {n: np.concatenate([f, f[:3]]) for n, f in data.features.items()}  # 3 cold items
    for name, f in extra.items():
        np.save(folder / f"{name}_feat.npy", f)
    config = make_config(
        "grcn",
        data=str(folder),
        out=str(tmp_path / "run"),
        epochs=2,
        eval_every=1,
        dim=8,
        grcn_content_dim=8,
        progress=False,
        verbose=False,
    )
    result = train(config)
    assert result["data"]["items"] == 43 and result["best_epoch"] in (1, 2)
    summary = denoise_checkpoint(tmp_path / "run" / "checkpoint.pt", tmp_path / "dn")
    assert summary["scored"] == result["data"]["train"]
    header = (tmp_path / "dn" / "keep_probabilities.csv").read_text().splitlines()[0]
    assert header.startswith("user,item,keep_layer1,keep_layer2,keep_mean")
    from fastgcn_denoise.data import save_npz

    save_npz(
        make_synthetic(num_users=30, num_items=20, dim=4, avg_degree=6, features=()),
        tmp_path / "plain.npz",
    )
    with pytest.raises(ValueError, match="needs item content features"):
        train(
            make_config(
                "grcn",
                data=str(tmp_path / "plain.npz"),
                out=str(tmp_path / "r2"),
                epochs=1,
                progress=False,
                verbose=False,
            )
        )
