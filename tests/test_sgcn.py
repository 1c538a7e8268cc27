"""S-LightGCN / S-NGCF: the paper's degenerate cases, the gradient plumbing, ARM unbiasedness."""

import copy
import itertools
import math

import pytest
import torch
from conftest import DEVICE, random_graph

from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.denoisers import SNGCF, SLightGCN
from fastgcn_denoise.models import Batch
from fastgcn_denoise.ops import arm_grad, nuclear_norm, sample_mask

SATURATED = 40.0  # float32/64 sigmoid(40) == 1 exactly: every mask mode keeps every edge


def make(cls, graph, **kw):
    torch.manual_seed(0)
    backbone = (
        {"layer_dims": (5, 4), "mess_dropout": 0.3}
        if cls is SNGCF
        else {"num_layers": kw.pop("num_layers", 2)}
    )
    model = cls(graph.num_users, graph.num_items, graph.num_edges, dim=5, **backbone, **kw)
    return model.double().to(DEVICE)


def batch(graph, n=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    users, items = (t.cpu() for t in graph.edges())
    pick = torch.randint(0, graph.num_edges, (n,), generator=gen)
    neg = torch.randint(0, graph.num_items, (n,), generator=gen)
    return Batch(users[pick].to(DEVICE), items[pick].to(DEVICE), neg.to(DEVICE))


def backbone_copy(model):
    """The bare backbone with the SGCN model's weights."""
    return copy.deepcopy(model.net)


@pytest.mark.parametrize("cls", [SLightGCN, SNGCF])
def test_all_ones_masks_give_the_backbone(cls):
    graph = random_graph(9, 7, 0.4, seed=1)
    model = make(cls, graph)
    with torch.no_grad():
        model.logits.fill_(SATURATED)
    twin = backbone_copy(model)
    model.eval(), twin.eval()
    want = twin(graph)
    for mode in ("hard", "arm_pos", "arm_neg", "bernoulli", "expect"):
        got = model(graph, model.mask_spec(mode, seed=3))
        for g, w in zip(got, want):
            assert torch.equal(g, w), mode
    # Training step: both ARM passes are the backbone itself (the same dropout draws for NGCF),
    # so f_pos = f_neg, and the embedding gradient is exactly the backbone's.
    model.train(), twin.train()
    b = batch(graph)
    model.beta = model.gamma = 0.0
    torch.manual_seed(5)
    terms = model.loss(graph, b)
    terms["loss"].backward()
    torch.manual_seed(5)
    torch.randint(0, 2**62, (1,))  # the seed draw the SGCN step made
    want = twin.loss(graph, b, mask_spec=[{}] * twin.num_layers)
    want["loss"].backward()
    assert torch.equal(terms["bpr"], want["bpr"])
    for (name, p), q in zip(model.net.named_parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad), name
    assert torch.count_nonzero(model.logits.grad) == 0  # f_pos = f_neg: ARM gives exactly zero


def test_drop_edge_when_penalties_are_off():
    """beta = gamma = 0 with detached random masks: each step is LightGCN on a DropEdge sample."""
    graph = random_graph(11, 8, 0.4, seed=2)
    model = make(SLightGCN, graph, num_layers=1, beta=0.0, gamma=0.0)
    with torch.no_grad():
        model.logits.uniform_(-1.0, 1.0)
    model.logits.requires_grad_(False)
    b = batch(graph, seed=1)
    torch.manual_seed(7)
    terms = model.loss(graph, b)
    terms["loss"].backward()
    torch.manual_seed(7)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    z = sample_mask(graph, model.logits, "arm_pos", seed=seed).bool()[0]
    u, i = graph.edges()
    dropped = BipartiteGraph(u[z].cpu(), i[z].cpu(), graph.num_users, graph.num_items).to(DEVICE)
    twin = backbone_copy(model)
    want = twin.loss(dropped, b)
    want["loss"].backward()
    torch.testing.assert_close(terms["bpr"], want["bpr"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms["loss"], want["loss"], rtol=1e-12, atol=1e-12)
    for p, q in zip(model.net.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("estimator", ["arm", "disarm"])
@pytest.mark.parametrize("svd_every", [1, 3])
def test_logit_gradient_is_arm_plus_penalties(estimator, svd_every):
    """Step 2's logit gradient, replayed by hand: ARM/DisARM on the two passes' BPR losses,
    beta * sigmoid', and gamma * (U_n V_n^T on the pattern) * sigmoid', where U_n, V_n come from
    the last SVD step (step 2 itself when svd_every = 1, step 0 when svd_every = 3)."""
    graph = random_graph(10, 9, 0.35, seed=3)
    beta, gamma = 0.05, 0.2
    model = make(
        SLightGCN,
        graph,
        beta=beta,
        gamma=gamma,
        svd_rank=4,
        svd_every=svd_every,
        estimator=estimator,
    )
    with torch.no_grad():
        model.logits.normal_(0.5, 1.0)
    twin = backbone_copy(model)
    b = batch(graph, seed=2)
    history = []
    for step in range(3):
        history.append(model.logits.detach().clone())
        model.logits.grad = None
        torch.manual_seed(11 + step)
        model.loss(graph, b)["loss"].backward()
        if step < 2:
            with torch.no_grad():  # move the logits, so a reused SVD gradient is visibly stale
                model.logits.add_(0.3)
    torch.manual_seed(13)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    f = {}
    for mode in ("arm_pos", "arm_neg"):
        with torch.no_grad():
            f[mode] = twin.loss(graph, b, mask_spec=model.mask_spec(mode, seed))["bpr"]
    phi = history[2]
    keep = torch.sigmoid(phi)
    want = arm_grad(phi, seed, 0, f["arm_pos"], f["arm_neg"], estimator)
    want = want + beta * keep * (1 - keep)
    svd_keep = torch.sigmoid(history[2 if svd_every == 1 else 0])
    for k in range(model.num_layers):
        w = svd_keep[k].clone().requires_grad_()
        (gw,) = torch.autograd.grad(nuclear_norm(graph, w, 4, n_iter=20, tol=0.0), w)
        want[k] += gamma * gw * keep[k] * (1 - keep[k])
    torch.testing.assert_close(model.logits.grad, want, rtol=1e-6, atol=1e-9)


def test_arm_step_is_unbiased_by_enumeration():
    """The expected logit gradient of the training step equals the exact gradient of
    E_z[BPR] (enumerating all 2^3 masks of a 3-edge graph), within Monte-Carlo error."""
    graph = BipartiteGraph(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2, 2).to(DEVICE)
    model = make(SLightGCN, graph, num_layers=1, beta=0.0, gamma=0.0, estimator="disarm")
    phi0 = torch.tensor([[0.3, -0.8, 1.2]], dtype=torch.float64, device=DEVICE)
    with torch.no_grad():
        model.logits.copy_(phi0)
        for emb in (model.net.user_emb, model.net.item_emb):  # scores large enough to matter
            emb.mul_(20.0)
    b = Batch(*(torch.tensor(v, device=DEVICE) for v in ([0, 1, 0], [1, 1, 0], [0, 0, 1])))
    twin = backbone_copy(model)

    def expected_loss(phi):
        p = torch.sigmoid(phi[0])
        total = 0
        for bits in itertools.product([0.0, 1.0], repeat=3):
            z = torch.tensor(bits, dtype=torch.float64, device=DEVICE)
            with torch.no_grad():
                f = twin.loss(graph, b, mask_spec=[{"edge_weight": z}])["bpr"]
            total = total + f * torch.prod(torch.where(z > 0, p, 1 - p))
        return total

    phi = phi0.clone().requires_grad_()
    (exact,) = torch.autograd.grad(expected_loss(phi), phi)
    samples = []
    torch.manual_seed(0)
    for _ in range(2000):
        model.logits.grad = None
        (g,) = torch.autograd.grad(model.loss(graph, b)["loss"], model.logits)
        samples.append(g)
    samples = torch.stack(samples)
    mean, sem = samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])
    assert (exact.abs() > 1e-3).any()  # a non-trivial target
    assert ((mean - exact).abs() <= 4 * sem + 1e-12).all(), (mean, exact, sem)


def test_eval_uses_hard_masks_and_keep_probabilities():
    graph = random_graph(8, 6, 0.5, seed=4)
    model = make(SLightGCN, graph)
    with torch.no_grad():
        model.logits.normal_(0.0, 2.0)
    model.eval()
    twin = backbone_copy(model)
    keep = model.keep_probabilities()
    spec = [
        {"edge_weight": torch.where(keep[k] > 0.5, keep[k], torch.zeros_like(keep[k]))}
        for k in range(model.num_layers)
    ]
    for g, w in zip(model(graph), twin(graph, spec)):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_state_dict_round_trip_and_graph_check():
    graph = random_graph(8, 6, 0.5, seed=5)
    model = make(SLightGCN, graph, svd_rank=3)
    model.loss(graph, batch(graph))["loss"].backward()
    clone = make(SLightGCN, graph, svd_rank=3)
    clone.load_state_dict(model.state_dict())
    assert clone.steps == model.steps == 1
    assert torch.equal(clone.logits, model.logits)
    other = random_graph(8, 6, 0.9, seed=6)
    with pytest.raises(ValueError, match="mask logit per interaction"):
        model(other)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"estimator": "reinforce"}, "estimator"),
        ({"beta": -1.0}, "beta"),
        ({"init_keep": 1.0}, "init_keep"),
        ({"nuclear_backward": "svd"}, "nuclear_backward"),
        ({"svd_every": 0}, "svd_every"),
        ({"num_layers": 0}, "at least one"),
    ],
)
def test_bad_arguments(kwargs, match):
    graph = random_graph(5, 4, 0.5)
    with pytest.raises(ValueError, match=match):
        SLightGCN(5, 4, graph.num_edges, **{"num_layers": 2, **kwargs})
