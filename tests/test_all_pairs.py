"""ops.all_pairs_interaction (L0-SIGN's fused pair pass): the reference against a direct loop over
each graph's pairs, every backend against the reference (values and all gradients), float64
gradcheck, empty graphs and k = 1, the gate draws, and clear errors."""

import pytest
import torch
from conftest import DEVICE

from fastgcn_denoise import ops
from fastgcn_denoise.modes import GATE_ID, GATE_KINDS
from fastgcn_denoise.ops import availability, reference
from fastgcn_denoise.ops.all_pairs import KINDS, pair_pointers, upper_pairs

_AVAIL = availability(DEVICE)
BACKEND = [
    pytest.param(
        name, marks=pytest.mark.skipif(_AVAIL[name] is not None, reason=f"{name}: {_AVAIL[name]}")
    )
    for name in ("reference", "cpu", "triton")
]
SEED = 0x1234_5678_9ABC  # > 2^32: both Philox key words matter
OFFSET = (1 << 33) + 5  # > 2^32: both counter words matter


def rand(shape, dtype, gen, scale=1.0, shift=0.0):
    return (shift + scale * torch.randn(shape, generator=gen, dtype=torch.float64)).to(
        DEVICE, dtype
    )


def make_inputs(
    sizes,
    dtype=torch.float64,
    num_features=11,
    d=5,
    b=3,
    hidden=7,
    g_hidden=6,
    seed=0,
    gate_bias=0.0,
):
    """A batch with the given graph sizes (0 = empty graph; features may repeat in a graph)."""
    gen = torch.Generator().manual_seed(seed)
    ptr = torch.zeros(len(sizes) + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(torch.tensor(sizes, dtype=torch.int64), 0)
    nodes = torch.randint(0, num_features, (int(ptr[-1]),), generator=gen)
    tensors = {
        "node_emb": rand((num_features, d), dtype, gen),
        "h": [
            rand((hidden, d), dtype, gen, 0.7),
            rand((hidden,), dtype, gen, 0.3),
            rand((d, hidden), dtype, gen, 0.7),
            rand((d,), dtype, gen, 0.3),
        ],
        "edge_emb": rand((num_features, b), dtype, gen),
        "gate": [
            rand((g_hidden, b), dtype, gen),
            rand((g_hidden,), dtype, gen, 0.5),
            rand((1, g_hidden), dtype, gen),
            rand((1,), dtype, gen, 0.5, gate_bias),
        ],
    }
    return ptr.to(DEVICE), nodes.to(DEVICE), tensors


def run(ptr, nodes, t, kind, directed=False, backend=None, seed=SEED, offset=OFFSET, **kw):
    gate = {} if kind == "none" else {"edge_emb": t["edge_emb"], "gate_weights": t["gate"]}
    return ops.all_pairs_interaction(
        ptr,
        nodes,
        t["node_emb"],
        t["h"],
        kind=kind,
        seed=seed,
        offset=offset,
        directed=directed,
        backend=backend,
        **gate,
        **kw,
    )


def direct_loop(ptr, nodes, t, kind, directed, seed=SEED, offset=OFFSET):
    """The module docstring's definition, graph by graph and pair by pair."""
    dtype = t["node_emb"].dtype
    w1, b1, w2, b2 = (x.double() for x in t["h"])
    g1, gb1, g2, gb2 = (x.double() for x in t["gate"])
    u_tab, e_tab = t["node_emb"].double(), t["edge_emb"].double()
    pooled, l0s, l2s, kept = [], [], [], []
    counter = offset
    for g in range(ptr.shape[0] - 1):
        feats = nodes[ptr[g] : ptr[g + 1]].tolist()
        k = len(feats)
        acc = torch.zeros(k, u_tab.shape[1], dtype=torch.float64, device=DEVICE)
        cnt = [0] * k
        l0 = l2 = 0.0
        n_kept = 0
        for i in range(k):
            for j in range(i, k):
                z = torch.relu((u_tab[feats[i]] * u_tab[feats[j]]) @ w1.T + b1) @ w2.T + b2
                if kind == "none":
                    s = 1.0
                else:
                    logit = (
                        torch.relu((e_tab[feats[i]] * e_tab[feats[j]]) @ g1.T + gb1) @ g2.T + gb2
                    )
                    u = reference.philox_uniform(seed, torch.tensor([counter], device=DEVICE))
                    s = float(
                        reference.gate_from_uniforms(GATE_ID[kind], logit, u, 2 / 3, -0.1, 1.1)[0]
                    )
                    l0 += float(ops.l0_probability(logit, kind))
                counter += 1
                if s > 0:
                    n_kept += 1
                    l2 += float((z * z).sum())
                    acc[j] += s * z
                    cnt[j] += 1
                    if not directed and i != j:
                        acc[i] += s * z
                        cnt[i] += 1
        nodes_out = [acc[v] / max(cnt[v], 1) for v in range(k)]
        pooled.append(torch.stack(nodes_out).mean(0) if k else acc.new_zeros(u_tab.shape[1]))
        l0s.append(l0)
        l2s.append(l2)
        kept.append(n_kept)
    as_t = lambda v: torch.tensor(v, dtype=torch.float64, device=DEVICE)  # noqa: E731
    pooled = torch.stack(pooled) if pooled else u_tab.new_zeros(0, u_tab.shape[1])
    return (
        pooled.to(dtype),
        as_t(l0s).to(dtype),
        as_t(l2s).to(dtype),
        torch.tensor(kept, dtype=torch.int64, device=DEVICE),
    )


SIZES = [3, 0, 1, 5, 2, 4]  # an empty graph and a single node among them


@pytest.mark.parametrize("kind", ["hard_concrete", "hard_concrete_mean", "none"])
@pytest.mark.parametrize("directed", [False, True])
def test_reference_matches_direct_loop(kind, directed):
    ptr, nodes, t = make_inputs(SIZES, seed=1)
    out = run(ptr, nodes, t, kind, directed, backend="reference")
    truth = direct_loop(ptr, nodes, t, kind, directed)
    for got, want in zip(out, truth):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    if kind == "hard_concrete":  # the draws must drop some pairs and keep others
        assert 0 < int(out.kept.sum()) < int(pair_pointers(ptr)[-1])


def test_upper_pairs_order():
    ptr = torch.tensor([0, 2, 2, 5])
    graph, i, j, q = upper_pairs(ptr)
    assert graph.tolist() == [0, 0, 0, 2, 2, 2, 2, 2, 2]
    assert list(zip(i.tolist(), j.tolist())) == [
        (0, 0),
        (0, 1),
        (1, 1),
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
        (2, 2),
    ]
    assert q.tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5]
    assert pair_pointers(ptr).tolist() == [0, 3, 3, 9]


def _grads(ptr, nodes, t, kind, directed, backend, weights):
    leaves = {
        "node_emb": t["node_emb"].detach().clone().requires_grad_(),
        "h": [x.detach().clone().requires_grad_() for x in t["h"]],
        "edge_emb": t["edge_emb"].detach().clone().requires_grad_(),
        "gate": [x.detach().clone().requires_grad_() for x in t["gate"]],
    }
    out = run(ptr, nodes, leaves, kind, directed, backend)
    wp, w0, w2 = weights
    loss = (
        (out.pooled.double() * wp).sum()
        + (out.l0.double() * w0).sum()
        + (out.l2.double() * w2).sum()
    )
    flat = [leaves["node_emb"], *leaves["h"]]
    if kind != "none":
        flat += [leaves["edge_emb"], *leaves["gate"]]
    return out, torch.autograd.grad(loss, flat)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("kind", ["hard_concrete", "hard_concrete_mean", "concrete", "none"])
@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backend_matches_reference(backend, kind, directed, dtype):
    # Sizes past one Triton source chunk (16) and repeated features.
    sizes = [3, 0, 1, 18, 2] if backend != "reference" else SIZES
    ptr, nodes, t = make_inputs(sizes, dtype=dtype, seed=2)
    gen = torch.Generator().manual_seed(3)
    weights = (
        rand((len(sizes), 5), torch.float64, gen),
        rand((len(sizes),), torch.float64, gen),
        rand((len(sizes),), torch.float64, gen, 0.1),
    )
    out, grads = _grads(ptr, nodes, t, kind, directed, backend, weights)
    t64 = {
        "node_emb": t["node_emb"].double(),
        "h": [x.double() for x in t["h"]],
        "edge_emb": t["edge_emb"].double(),
        "gate": [x.double() for x in t["gate"]],
    }
    ref, ref_grads = _grads(ptr, nodes, t64, kind, directed, "reference", weights)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-11)
    assert out.pooled.dtype == dtype and out.kept.dtype == torch.int64
    if dtype == torch.float32 and kind == "hard_concrete":
        # A float32 logit can sit within rounding of a gate's 0/1 decision; then the kept sets
        # differ by that pair and the values cannot be compared pair for pair.
        if not torch.equal(out.kept, ref.kept):
            pytest.skip("a float32 gate decision differs from float64's (rounding at the edge)")
    assert torch.equal(out.kept, ref.kept)
    for got, want in zip(out[:3], ref[:3]):
        torch.testing.assert_close(got.double(), want, **tol)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("kind", ["hard_concrete", "hard_concrete_mean", "concrete", "none"])
@pytest.mark.parametrize("directed", [False, True])
def test_gradcheck(backend, kind, directed):
    if backend == "triton" and DEVICE.type == "cpu":
        pytest.skip(
            "triton under the interpreter: ~100 s a case; its gradients are compared with "
            "the gradchecked reference's in test_backend_matches_reference, and this "
            "gradcheck runs where a GPU is"
        )
    ptr, nodes, t = make_inputs(
        [3, 1, 0, 4], num_features=6, d=3, b=2, hidden=4, g_hidden=3, seed=4
    )
    names = ["node_emb", "h0", "h1", "h2", "h3"] + (
        [] if kind == "none" else ["edge_emb", "g0", "g1", "g2", "g3"]
    )
    flat = [t["node_emb"], *t["h"]] + ([] if kind == "none" else [t["edge_emb"], *t["gate"]])
    flat = [x.detach().clone().requires_grad_() for x in flat]

    def fn(*xs):
        given = dict(zip(names, xs))
        tt = {"node_emb": given["node_emb"], "h": [given[f"h{n}"] for n in range(4)]}
        if kind != "none":
            tt.update(edge_emb=given["edge_emb"], gate=[given[f"g{n}"] for n in range(4)])
        out = run(ptr, nodes, tt, kind, directed, backend)
        return out.pooled, out.l0, out.l2

    assert torch.autograd.gradcheck(fn, tuple(flat), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("sizes", [[], [0], [0, 0, 0], [1], [1, 1, 0, 1]])
def test_empty_graphs_and_single_nodes(backend, sizes):
    ptr, nodes, t = make_inputs(sizes, seed=5)
    out = run(ptr, nodes, t, "hard_concrete_mean", backend=backend)
    assert out.pooled.shape == (len(sizes), 5) and out.kept.shape == (len(sizes),)
    truth = direct_loop(ptr, nodes, t, "hard_concrete_mean", False)
    for got, want in zip(out, truth):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    empty = torch.tensor(sizes, dtype=torch.int64, device=DEVICE) == 0
    assert (out.pooled[empty] == 0).all() and (out.kept[empty] == 0).all()
    # k = 1: the self pair alone, so pooled = s * h(u, u) / 1 when kept.
    leaf = t["node_emb"].detach().clone().requires_grad_()
    res = ops.all_pairs_interaction(
        ptr,
        nodes,
        leaf,
        t["h"],
        edge_emb=t["edge_emb"],
        gate_weights=t["gate"],
        kind="hard_concrete",
        backend=backend,
    )
    (res.pooled.sum() + res.l2.sum()).backward()
    assert torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize("backend", BACKEND)
def test_gates_are_the_op_draws(backend):
    # pair_gates (the export's view) reproduces the kernel's sampled gates: the kept count per
    # graph agrees, and a different offset or seed gives different draws.
    ptr, nodes, t = make_inputs([4, 6, 2, 5], seed=6)
    out = run(ptr, nodes, t, "hard_concrete", backend=backend)
    graph, _, _, s = ops.pair_gates(
        ptr, nodes, t["edge_emb"], t["gate"], "hard_concrete", SEED, OFFSET
    )
    kept = torch.zeros(4, dtype=torch.int64, device=DEVICE).index_add_(0, graph, (s > 0).long())
    assert torch.equal(out.kept, kept)
    again = run(ptr, nodes, t, "hard_concrete", backend=backend)
    assert torch.equal(again.pooled, out.pooled)
    _, _, _, s2 = ops.pair_gates(
        ptr, nodes, t["edge_emb"], t["gate"], "hard_concrete", SEED, OFFSET + 1
    )
    assert not torch.equal(s, s2)
    # The mean gate needs no uniforms: the seed does not matter.
    a = run(ptr, nodes, t, "hard_concrete_mean", backend=backend, seed=1)
    b = run(ptr, nodes, t, "hard_concrete_mean", backend=backend, seed=2)
    assert torch.equal(a.pooled, b.pooled)


def test_kept_pairs_follow_the_gate_bias():
    # Open gates (large log alpha) keep every pair at inference; shut ones drop every pair, and
    # a graph without kept pairs pools to zero (no residual term).
    ptr, nodes, t = make_inputs([3, 4], seed=7, gate_bias=20.0)
    assert run(ptr, nodes, t, "hard_concrete_mean").kept.tolist() == [6, 10]
    ptr, nodes, t = make_inputs([3, 4], seed=7, gate_bias=-20.0)
    out = run(ptr, nodes, t, "hard_concrete_mean")
    assert out.kept.tolist() == [0, 0] and (out.pooled == 0).all()


def test_errors():
    ptr, nodes, t = make_inputs([2, 3], seed=8)
    with pytest.raises(ValueError, match="unknown kind 'hard'"):
        run(ptr, nodes, t, "hard")
    with pytest.raises(ValueError, match="ptr must start at 0"):
        run(torch.tensor([0, 4, 3], device=DEVICE), nodes[:3], t, "none")
    with pytest.raises(ValueError, match="ptr must start at 0"):
        run(torch.tensor([0, 2, 4], device=DEVICE), nodes, t, "none")
    bad = nodes.clone()
    bad[3] = 11
    with pytest.raises(
        ValueError, match=r"nodes\[3\] = 11 is outside the embedding tables' \[0, 11\)"
    ):
        run(ptr, bad, t, "none")
    with pytest.raises(ValueError, match="kind 'none' keeps every pair"):
        ops.all_pairs_interaction(
            ptr,
            nodes,
            t["node_emb"],
            t["h"],
            edge_emb=t["edge_emb"],
            gate_weights=t["gate"],
            kind="none",
        )
    with pytest.raises(ValueError, match="needs edge_emb"):
        ops.all_pairs_interaction(ptr, nodes, t["node_emb"], t["h"], kind="hard_concrete")
    with pytest.raises(ValueError, match=r"h_weights W2 must have shape \[5, 7\]"):
        ops.all_pairs_interaction(
            ptr, nodes, t["node_emb"], [t["h"][0], t["h"][1], t["h"][0], t["h"][3]], kind="none"
        )
    with pytest.raises(ValueError, match="is torch.float32 but node_emb is torch.float64"):
        ops.all_pairs_interaction(
            ptr, nodes, t["node_emb"], [t["h"][0].float(), *t["h"][1:]], kind="none"
        )
    with pytest.raises(ValueError, match="gamma < 0 and zeta > 1"):
        run(ptr, nodes, t, "hard_concrete", gamma=0.1)
    with pytest.raises(ValueError, match="1-D int64"):
        run(ptr.int(), nodes, t, "none")
    with pytest.raises(ValueError, match="unknown kind 'concrete_st'"):
        run(ptr, nodes, t, "concrete_st")  # its dropped pairs would need their h
    assert set(KINDS) < set(GATE_KINDS) | {"none"}
