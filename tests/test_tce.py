"""ADT's T-CE and R-CE: the loss against a plain reference, the schedule, the plug-in on backbones."""

import math

import numpy as np
import pytest
import torch

from fastgcn_denoise.data import make_synthetic, sample_bpr, save_npz
from fastgcn_denoise.denoisers.tce import adt_loss, drop_rate
from fastgcn_denoise.models.base import Batch
from fastgcn_denoise.pipelines.train import make_config, restore_run, train


def _softplus(x):
    return math.log1p(math.exp(x))


def reference(s_pos, s_neg, method, loss, rate, beta):
    """ADT loss written sample by sample (the paper's definitions, no vectorisation)."""
    if loss == "bce":
        pos = [(_softplus(-s), 1 / (1 + math.exp(-s))) for s in s_pos]
        neg = [(_softplus(s), 1 / (1 + math.exp(s))) for s in s_neg]
        if method == "t-ce":
            drop = round(rate * len(pos))
            kept = sorted(x for x, _ in pos)[: len(pos) - drop]
            return (sum(kept) + sum(x for x, _ in neg)) / (len(kept) + len(neg))
        return sum(x * w**beta for x, w in pos + neg) / (len(pos) + len(neg))
    triples = [(_softplus(n - p), 1 / (1 + math.exp(n - p))) for p, n in zip(s_pos, s_neg)]
    if method == "t-ce":
        drop = round(rate * len(triples))
        kept = sorted(x for x, _ in triples)[: len(triples) - drop]
        return sum(kept) / len(kept)
    return sum(x * w**beta for x, w in triples) / len(triples)


@pytest.mark.parametrize("method", ["t-ce", "r-ce"])
@pytest.mark.parametrize("loss", ["bce", "bpr"])
@pytest.mark.parametrize("seed", range(3))
def test_adt_loss_matches_the_reference(method, loss, seed):
    gen = torch.Generator().manual_seed(seed)
    s_pos = torch.randn(37, generator=gen, dtype=torch.float64) * 2
    s_neg = torch.randn(37, generator=gen, dtype=torch.float64) * 2
    rate, beta = 0.1 + 0.1 * seed, [0.25, 0.5, 1.0][seed]
    got = adt_loss(s_pos, s_neg, method, loss, rate, beta).item()
    want = reference(s_pos.tolist(), s_neg.tolist(), method, loss, rate, beta)
    assert got == pytest.approx(want, rel=1e-10)


def test_tce_drops_the_largest_positive_losses_and_rce_weights_are_detached():
    s_pos = torch.tensor([3.0, -4.0, 2.0, -1.0], requires_grad=True)
    s_neg = torch.zeros(4)
    adt_loss(s_pos, s_neg, "t-ce", "bce", rate=0.5).backward()
    # the two lowest-scored positives (largest loss) are dropped: no gradient reaches them
    assert s_pos.grad[1] == 0 and s_pos.grad[3] == 0 and s_pos.grad[0] < 0 and s_pos.grad[2] < 0
    s = torch.tensor([0.5], requires_grad=True)
    adt_loss(s, torch.tensor([-20.0]), "r-ce", "bce", beta=0.25).backward()
    p = torch.sigmoid(torch.tensor(0.5))
    # d/ds [p^β · softplus(-s)] with p^β detached = -p^β (1 - p) (/2: two samples in the mean)
    assert s.grad.item() == pytest.approx((-(p**0.25) * (1 - p) / 2).item(), rel=1e-5)


def test_drop_rate_schedule():
    assert [drop_rate(t, 0.2, 100) for t in (0, 50, 100, 1000)] == pytest.approx([0, 0.1, 0.2, 0.2])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tce") / "tiny.npz"
    save_npz(make_synthetic(num_users=60, num_items=40, dim=4, avg_degree=8, seed=2), path)
    return path


@pytest.mark.parametrize("model", ["lightgcn", "ngcf", "simgcl", "xsimgcl"])
@pytest.mark.parametrize(
    "plugin,options", [("t-ce", {"tce_num_gradual": 3}), ("r-ce", {"rce_loss": "bpr"})]
)
def test_plugin_replaces_the_bpr_term_on_every_backbone(tiny, tmp_path, model, plugin, options):
    config = make_config(
        model=model,
        plugins=(plugin,),
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
        **options,
    )
    result = train(config)
    assert np.isfinite(result["test"]["recall@5"])
    _, _, prep, net = restore_run(tmp_path / "r" / "checkpoint.pt", weights="last")
    adt = net.plugins[0]
    assert adt.steps == 2 * math.ceil(prep.train.num_edges / 64)
    if plugin == "t-ce":
        assert adt.rate == pytest.approx(0.2)  # past tce_num_gradual = 3 steps
    keep = net.keep_scores(prep.train)
    assert keep.shape == (prep.train.num_edges,) and bool(((keep > 0) & (keep <= 1)).all())
    assert int((adt.loss_count > 0).sum()) > 0.5 * prep.train.num_edges
    # the total is reg + the ADT loss: the BPR term is replaced, not added to
    net.train()
    users, pos, neg = sample_bpr(prep.train, 32, torch.Generator().manual_seed(0))
    torch.manual_seed(1)  # the same dropout / perturbation draws in both passes
    terms = net.loss(prep.train, Batch(users, pos, neg))
    key = plugin.replace("-", "")
    rest = sum(v for k, v in terms.items() if k not in ("loss", "bpr", key))
    torch.manual_seed(1)
    u, it = net.readout(
        [
            (x[users], y[torch.cat([pos, neg])])
            for x, y in net.layer_outputs(prep.train, Batch(users, pos, neg))
        ]
    )
    want = adt_loss(
        (u * it[:32]).sum(-1), (u * it[32:]).sum(-1), plugin, adt.loss_kind, adt.rate, adt.beta
    )
    assert (terms["loss"] - rest).item() == pytest.approx(want.item(), rel=1e-4, abs=1e-6)
