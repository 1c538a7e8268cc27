"""ops.masked_spmm on every backend present, against a dense float64 computation."""

import pytest
import torch
from conftest import DEVICE, backend_params, random_graph

from fastgcn_denoise import BipartiteGraph, ops
from fastgcn_denoise.modes import GATE_KINDS, MASK_MODES, MODES
from fastgcn_denoise.ops import BackendUnavailable, reference

BACKEND = backend_params()
# Gradchecks of the new paths under the Triton interpreter take seconds each; the triton gradients
# there are also compared with the reference's (test_differentiable_modes_match_composition,
# test_holdout_equals_graph_without_the_edges), whose own gradients are gradchecked. On a GPU they
# run in every suite.
GRADCHECK_BACKEND = [
    pytest.param(*p.values, marks=[*p.marks, pytest.mark.slow])
    if p.values[0] == "triton" and DEVICE.type == "cpu"
    else p
    for p in BACKEND
]
# Graphs: odd sizes with an isolated user and item; a single edge; a dense block.
GRAPHS = {"odd": (13, 11, 0.3), "single": (2, 3, 0.0), "dense": (6, 5, 0.9)}


def dense_truth(g, x_u, x_i, z, omega, self_loop, renormalize):
    """(y_u, y_i) in float64 from the dense masked adjacency."""
    users, items = g.edges()
    w = z.double() * (1 if omega is None else omega.double())
    R = torch.zeros(g.num_users, g.num_items, dtype=torch.float64, device=z.device)
    R[users, items] = w
    x_u, x_i = x_u.double(), x_i.double()
    if renormalize:
        d_u, d_i = R.sum(1) + self_loop, R.sum(0) + self_loop
        r_u = torch.where(d_u > 0, d_u.clamp_min(1e-300).rsqrt(), torch.zeros_like(d_u))
        r_i = torch.where(d_i > 0, d_i.clamp_min(1e-300).rsqrt(), torch.zeros_like(d_i))
        R = r_u[:, None] * R * r_i[None, :]
        s_u, s_i = (r_u**2)[:, None], (r_i**2)[:, None]
    else:
        s_u = s_i = 1.0
    y_u, y_i = R @ x_i, R.T @ x_u
    if self_loop:
        y_u, y_i = y_u + s_u * x_u, y_i + s_i * x_i
    return y_u, y_i


def make_inputs(g, d, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x_u = torch.randn(g.num_users, d, generator=gen, dtype=torch.float64).to(DEVICE, dtype)
    x_i = torch.randn(g.num_items, d, generator=gen, dtype=torch.float64).to(DEVICE, dtype)
    phi = (2 * torch.randn(g.num_edges, generator=gen, dtype=torch.float64)).to(DEVICE, dtype)
    omega = (0.2 + torch.rand(g.num_edges, generator=gen, dtype=torch.float64)).to(DEVICE, dtype)
    return x_u, x_i, phi, omega


def reference_mask(g, phi, mode, seed, offset):
    return ops.sample_mask(g, phi, mode, seed=seed, offset=offset, backend="reference")


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize(
    "mode", MASK_MODES
)  # the gate modes: test_differentiable_modes_match_composition
@pytest.mark.parametrize(
    "self_loop, renormalize", [(False, True), (True, True), (False, False), (True, False)]
)
def test_forward_modes(backend, mode, self_loop, renormalize):
    g = random_graph(*GRAPHS["odd"], seed=1)
    x_u, x_i, phi, omega = make_inputs(g, 7, torch.float64)
    y_u, y_i = ops.masked_spmm(
        g,
        x_u,
        x_i,
        phi,
        mode=mode,
        seed=11,
        offset=3,
        edge_weight=omega,
        self_loop=self_loop,
        renormalize=renormalize,
        backend=backend,
    )
    z = reference_mask(g, phi, mode, 11, 3) if mode != "ones" else torch.ones_like(phi)
    t_u, t_i = dense_truth(g, x_u, x_i, z, omega, self_loop, renormalize)
    torch.testing.assert_close(y_u, t_u, **tol(torch.float64))
    torch.testing.assert_close(y_i, t_i, **tol(torch.float64))


@pytest.mark.parametrize("backend", BACKEND)
# d covers each column block of the cpu kernel (16/32/64 floats, 8/16/32 doubles), full and partial.
@pytest.mark.parametrize("d", [1, 7, 16, 32, 33, 64, 129])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_forward_shapes_dtypes(backend, d, dtype, graph):
    g = random_graph(*GRAPHS[graph], seed=d)
    x_u, x_i, phi, _ = make_inputs(g, d, dtype, seed=d)
    y_u, y_i = ops.masked_spmm(g, x_u, x_i, phi, mode="bernoulli", seed=5, backend=backend)
    assert y_u.dtype == dtype and y_u.shape == x_u.shape and y_i.shape == x_i.shape
    z = reference_mask(g, phi, "bernoulli", 5, 0)
    t_u, t_i = dense_truth(g, x_u, x_i, z, None, False, True)
    torch.testing.assert_close(y_u.double(), t_u, **tol(dtype))
    torch.testing.assert_close(y_i.double(), t_i, **tol(dtype))
    assert torch.isfinite(y_u).all() and torch.isfinite(y_i).all()


@pytest.mark.parametrize("backend", BACKEND)
def test_isolated_nodes_give_zero_not_nan(backend):
    g = random_graph(*GRAPHS["odd"], seed=2)
    x_u, x_i, _, _ = make_inputs(g, 4, torch.float32)
    phi = torch.full((g.num_edges,), -40.0, device=DEVICE)  # every edge masked out
    y_u, y_i = ops.masked_spmm(g, x_u, x_i, phi, mode="bernoulli", backend=backend)
    assert torch.count_nonzero(y_u) == 0 and torch.count_nonzero(y_i) == 0
    y_u, _ = ops.masked_spmm(g, x_u, x_i, backend=backend)
    assert torch.count_nonzero(y_u[-1]) == 0  # the isolated user


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("d", [9, 32, 64, 129])
def test_dual_equals_two_single_passes(backend, d):
    g = random_graph(*GRAPHS["odd"], seed=3)
    x_u, x_i, phi, omega = make_inputs(g, d, torch.float32)
    (pu, pi), (nu, ni) = ops.masked_spmm_dual(
        g, x_u, x_i, phi, seed=4, offset=100, edge_weight=omega, backend=backend
    )
    for mode, (a, b) in (("arm_pos", (pu, pi)), ("arm_neg", (nu, ni))):
        su, si = ops.masked_spmm(
            g, x_u, x_i, phi, mode=mode, seed=4, offset=100, edge_weight=omega, backend=backend
        )
        torch.testing.assert_close(a, su, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(b, si, rtol=1e-6, atol=1e-6)


BINARY = ("bernoulli", "arm_pos", "arm_neg", "concrete_st")


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("mode", [m for m in MODES if m != "ones"])
def test_mask_identical_to_reference(backend, mode):
    g = random_graph(40, 30, 0.3, seed=4)
    phi = torch.randn(
        3, g.num_edges, device=DEVICE, generator=torch.Generator(DEVICE).manual_seed(4)
    )
    z = ops.sample_mask(g, phi, mode, seed=2**35 + 1, offset=2**32 - 7, backend=backend)
    assert z.shape == phi.shape
    ref = reference_mask(g, phi, mode, 2**35 + 1, 2**32 - 7)
    if mode in ("expect", "hard"):  # continuous values: sigmoid may round differently by an ulp
        torch.testing.assert_close(z, ref, rtol=2e-7, atol=0)
        assert torch.equal(z > 0, ref > 0)
    elif mode in GATE_KINDS and mode not in BINARY:  # log/exp chains: float32 rounding
        torch.testing.assert_close(z, ref, rtol=1e-5, atol=1e-6)
    else:  # binary masks: bit-identical whichever backend drew them
        assert torch.equal(z, ref)
    # Row k uses counters offset + k*E: the same as a single-row draw at layer_offset.
    row = ops.sample_mask(
        g,
        phi[2],
        mode,
        seed=2**35 + 1,
        offset=ops.layer_offset(2**32 - 7, 2, g.num_edges),
        backend=backend,
    )
    if mode in GATE_KINDS and mode not in BINARY:  # the same uniforms; log/exp may differ by an ulp
        torch.testing.assert_close(z[2], row, rtol=1e-6, atol=1e-7)
    else:
        assert torch.equal(z[2], row)


@pytest.mark.parametrize("backend", BACKEND)
def test_mask_statistics(backend):
    n = 20_000 if backend in ("reference", "cpu") or DEVICE.type == "cuda" else 3000
    g = BipartiteGraph(torch.arange(n) % 97, torch.arange(n) // 97).to(DEVICE)
    phi = torch.linspace(-3, 3, g.num_edges, device=DEVICE)
    z = ops.sample_mask(g, phi, "bernoulli", seed=9, backend=backend).double()
    p = torch.sigmoid(phi).double()
    # Mean over all edges, and within 10 bands of similar logits, within 5 standard errors.
    for zb, pb in zip(z.chunk(10), p.chunk(10)):
        se = (pb * (1 - pb)).sum().sqrt() / len(pb)
        assert abs(float(zb.mean() - pb.mean())) < 5 * float(se) + 1e-12


@pytest.mark.parametrize("backend", BACKEND)
def test_arm_pair_is_antithetic(backend):
    g = random_graph(40, 30, 0.4, seed=5)
    phi = torch.randn(g.num_edges, device=DEVICE)
    zp = ops.sample_mask(g, phi, "arm_pos", seed=3, backend=backend)
    zn = ops.sample_mask(g, phi, "arm_neg", seed=3, backend=backend)
    u = reference.edge_uniforms(3, 0, g.num_edges, DEVICE)
    assert torch.equal(zp.bool(), u > torch.sigmoid(-phi))
    assert torch.equal(zn.bool(), u < torch.sigmoid(phi))
    # At phi = 0 the two are exact complements (1[u > 1/2] vs 1[u < 1/2]).
    zero = torch.zeros_like(phi)
    s = ops.sample_mask(g, zero, "arm_pos", seed=3, backend=backend) + ops.sample_mask(
        g, zero, "arm_neg", seed=3, backend=backend
    )
    assert torch.equal(s, torch.ones_like(s))
    assert torch.equal(ops.sample_mask(g, phi, "bernoulli", seed=3, backend=backend), zn)


def _gradcheck(fn, inputs, backend):
    # The interpreter is slow: fast_mode checks random projections of the Jacobian.
    fast = backend == "triton" and DEVICE.type == "cpu"
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=fast, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("mode", ["ones", "bernoulli", "expect", "hard"])
@pytest.mark.parametrize("self_loop, renormalize", [(False, True), (True, True), (True, False)])
def test_gradcheck_x_and_edge_weight(backend, mode, self_loop, renormalize):
    g = random_graph(5, 4, 0.6, seed=6)
    x_u, x_i, phi, omega = make_inputs(g, 3, torch.float64, seed=6)
    x_u.requires_grad_(), x_i.requires_grad_(), omega.requires_grad_()

    def f(a, b, w):
        return ops.masked_spmm(
            g,
            a,
            b,
            phi,
            mode=mode,
            seed=2,
            edge_weight=w,
            self_loop=self_loop,
            renormalize=renormalize,
            backend=backend,
        )

    _gradcheck(f, (x_u, x_i, omega), backend)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("with_weight", [False, True])
def test_gradcheck_logits_expect(backend, with_weight):
    g = random_graph(5, 4, 0.6, seed=7)
    x_u, x_i, phi, omega = make_inputs(g, 2, torch.float64, seed=7)
    phi.requires_grad_()

    def f(p):
        return ops.masked_spmm(
            g,
            x_u,
            x_i,
            p,
            mode="expect",
            edge_weight=omega if with_weight else None,
            backend=backend,
        )

    _gradcheck(f, (phi,), backend)


@pytest.mark.parametrize("backend", BACKEND)
def test_gradcheck_dual(backend):
    g = random_graph(5, 4, 0.6, seed=8)
    x_u, x_i, phi, omega = make_inputs(g, 2, torch.float64, seed=8)
    x_u.requires_grad_(), x_i.requires_grad_(), omega.requires_grad_()

    def f(a, b, w):
        (pu, pi), (nu, ni) = ops.masked_spmm_dual(
            g, a, b, phi, seed=1, edge_weight=w, backend=backend
        )
        return pu, pi, nu, ni

    _gradcheck(f, (x_u, x_i, omega), backend)


def test_binary_modes_give_no_logit_gradient():
    g = random_graph(5, 4, 0.6, seed=9)
    x_u, x_i, phi, _ = make_inputs(g, 2, torch.float64)
    phi.requires_grad_()
    y_u, y_i = ops.masked_spmm(g, x_u.requires_grad_(), x_i, phi, mode="bernoulli")
    (y_u.sum() + y_i.sum()).backward()
    assert phi.grad is None and x_u.grad is not None


# ----------------------------------------------------------------------------- bad input
@pytest.fixture
def small():
    g = random_graph(5, 4, 0.6, seed=10)
    x_u, x_i, phi, omega = make_inputs(g, 3, torch.float32)
    return g, x_u, x_i, phi, omega


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda g, u, i, p, w: dict(x_user=u[:-1]),
            "x_user has 4 rows but the graph has num_users = 5",
        ),
        (lambda g, u, i, p, w: dict(x_item=i[:, :2]), "x_user has d = 3 but x_item has d = 2"),
        (
            lambda g, u, i, p, w: dict(x_item=i.double()),
            "x_user is torch.float32 but x_item is torch.float64",
        ),
        (lambda g, u, i, p, w: dict(x_user=u[0]), "x_user must be a 2-D tensor"),
        (
            lambda g, u, i, p, w: dict(x_user=u.long()),
            "x_user must be float16, bfloat16, float32 or float64",
        ),
        (lambda g, u, i, p, w: dict(mode="dropout"), "unknown mode 'dropout'"),
        (
            lambda g, u, i, p, w: dict(logits=None, mode="bernoulli"),
            "mode 'bernoulli' needs logits",
        ),
        (lambda g, u, i, p, w: dict(logits=p[:-1]), r"logits must have shape \[num_edges\]"),
        (
            lambda g, u, i, p, w: dict(logits=torch.where(torch.arange(len(p)) == 2, torch.nan, p)),
            "logits has non-finite values \\(first at edge 2\\)",
        ),
        (
            lambda g, u, i, p, w: dict(edge_weight=-w),
            "edge_weight must be >= 0 with renormalize=True",
        ),
        (
            lambda g, u, i, p, w: dict(edge_weight=w[None]),
            r"edge_weight must have shape \[num_edges\]",
        ),
        (
            lambda g, u, i, p, w: dict(holdout=torch.tensor([0, len(p)])),
            r"holdout\[1\] = 5 is not an edge id \(0 <= id < num_edges = 5\)",
        ),
        (
            lambda g, u, i, p, w: dict(holdout=torch.tensor([-1])),
            r"holdout\[0\] = -1 is not an edge id",
        ),
        (
            lambda g, u, i, p, w: dict(holdout=torch.tensor([0.0])),
            "holdout must be a 1-D int64 tensor",
        ),
        (
            lambda g, u, i, p, w: dict(holdout=torch.tensor([[0]])),
            "holdout must be a 1-D int64 tensor",
        ),
        (
            lambda g, u, i, p, w: dict(holdout=[0, 1]),
            "holdout must be a 1-D int64 tensor of edge ids, got list",
        ),
        (
            lambda g, u, i, p, w: dict(mode="concrete", temperature=0.0),
            "temperature must be a finite number > 0",
        ),
        (lambda g, u, i, p, w: dict(mode="hard_concrete", gamma=0.1), "gamma < 0 and zeta > 1"),
        (lambda g, u, i, p, w: dict(mode="concret"), "unknown mode 'concret'"),
    ],
)
def test_bad_input_raises(small, change, message):
    g, x_u, x_i, phi, omega = small
    kwargs = dict(x_user=x_u, x_item=x_i, logits=phi, mode="bernoulli", edge_weight=None)
    kwargs.update(change(g, x_u, x_i, phi, omega))
    with pytest.raises(ValueError, match=message):
        ops.masked_spmm(g, **kwargs)


# ----------------------------------------------------------------------------- relaxed gate modes
CONTINUOUS_GATES = ("concrete", "hard_concrete", "hard_concrete_mean")
GATE_PARAMS = dict(
    temperature=0.8, gamma=-0.2, zeta=1.15
)  # not the defaults: they must reach the kernel


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("kind", GATE_KINDS)
def test_gate_masks_equal_ops_gate(backend, kind):
    # The propagation draws ops.gate's sample: counter offset + k E + e = offset + the flat index.
    g = random_graph(30, 20, 0.3, seed=12)
    phi = 2 * torch.randn(2, g.num_edges, device=DEVICE)
    seed, offset = 2**33 + 3, 2**32 - 5
    z = ops.sample_mask(g, phi, kind, seed, offset, backend=backend, **GATE_PARAMS)
    truth = ops.gate(phi, kind, seed, offset, backend="reference", **GATE_PARAMS)
    if kind == "concrete_st":
        assert torch.equal(z, truth)
    else:
        torch.testing.assert_close(z, truth, rtol=1e-5, atol=1e-6)
    if kind in ("concrete", "hard_concrete"):  # the parameters change the sample
        assert not torch.equal(z, ops.sample_mask(g, phi, kind, seed, offset, backend=backend))


def _gate_weight(phi, mode, seed, offset, omega, holdout, params):
    """The edge weight w = z(phi) * omega (0 on holdout) by autograd through ops.gate (reference)."""
    z = (
        torch.sigmoid(phi)
        if mode == "expect"
        else ops.gate(phi, mode, seed, offset, backend="reference", **params)
    )
    w = z if omega is None else z * omega
    if holdout is not None:
        w = w.index_fill(0, holdout, 0.0)
    return w


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("mode", ("expect",) + GATE_KINDS)
@pytest.mark.parametrize(
    "with_weight, with_holdout, self_loop", [(False, False, False), (True, True, True)]
)
def test_differentiable_modes_match_composition(
    backend, mode, with_weight, with_holdout, self_loop
):
    # One fused call = mode "ones" with the weight ops.gate(phi) * omega, values and gradients of
    # x, phi (concrete_st: the straight-through derivative) and omega.
    g = random_graph(9, 8, 0.45, seed=13)
    x_u, x_i, phi, omega = make_inputs(g, 5, torch.float64, seed=13)
    holdout = torch.tensor([1, 4, 4, g.num_edges - 1], device=DEVICE) if with_holdout else None
    omega = omega if with_weight else None
    leaves = [t.requires_grad_() for t in (x_u, x_i, phi) + ((omega,) if with_weight else ())]
    gen = torch.Generator().manual_seed(1)
    c_u = torch.randn(g.num_users, 5, generator=gen, dtype=torch.float64).to(DEVICE)
    c_i = torch.randn(g.num_items, 5, generator=gen, dtype=torch.float64).to(DEVICE)

    def grads(y_u, y_i):
        return torch.autograd.grad((y_u * c_u).sum() + (y_i * c_i).sum(), leaves)

    y = ops.masked_spmm(
        g,
        x_u,
        x_i,
        phi,
        mode,
        7,
        2**32 + 9,
        omega,
        self_loop,
        backend=backend,
        holdout=holdout,
        **GATE_PARAMS,
    )
    w = _gate_weight(phi, mode, 7, 2**32 + 9, omega, holdout, GATE_PARAMS)
    t = ops.masked_spmm(
        g, x_u, x_i, None, "ones", edge_weight=w, self_loop=self_loop, backend="reference"
    )
    tol = dict(rtol=1e-7, atol=1e-9)  # triton takes tau/gamma/zeta as float32 scalars
    for a, b in zip(y, t):
        torch.testing.assert_close(a, b, **tol)
    gy = grads(*y)
    for a, b in zip(gy, grads(*t)):
        torch.testing.assert_close(a, b, **tol)
    if with_holdout:
        assert torch.count_nonzero(gy[2][holdout]) == 0


@pytest.mark.parametrize("backend", GRADCHECK_BACKEND)
@pytest.mark.parametrize("mode", CONTINUOUS_GATES)
def test_gradcheck_gate_modes(backend, mode):
    # With a self-loop and a held-out edge (repeated): the paths without them are in
    # test_differentiable_modes_match_composition.
    g = random_graph(5, 4, 0.6, seed=14)
    x_u, x_i, phi, omega = make_inputs(g, 3, torch.float64, seed=14)
    phi = 0.5 * phi  # most stretched gates inside (0, 1): nonzero logit gradients
    holdout = torch.tensor([0, 0], device=DEVICE)

    def f(a, b, p, w):
        return ops.masked_spmm(
            g,
            a,
            b,
            p,
            mode=mode,
            seed=3,
            edge_weight=w,
            self_loop=True,
            holdout=holdout,
            backend=backend,
            **GATE_PARAMS,
        )

    _gradcheck(f, tuple(t.requires_grad_() for t in (x_u, x_i, phi, omega)), backend)


@pytest.mark.parametrize("backend", GRADCHECK_BACKEND)
def test_gradcheck_straight_through_embeddings(backend):
    # concrete_st's value is piecewise constant in phi (its logit gradient is the surrogate one,
    # checked against the composition above); x and omega get exact gradients.
    g = random_graph(5, 4, 0.6, seed=15)
    x_u, x_i, phi, omega = make_inputs(g, 3, torch.float64, seed=15)

    def f(a, b, w):
        return ops.masked_spmm(
            g, a, b, phi, mode="concrete_st", seed=4, edge_weight=w, backend=backend
        )

    _gradcheck(f, tuple(t.requires_grad_() for t in (x_u, x_i, omega)), backend)


# ----------------------------------------------------------------------------- target-edge holdout
def _without(g, held):
    """The graph with the edges ``held`` removed (kept edges stay in edge-id order) and the kept ids."""
    keep = torch.ones(g.num_edges, dtype=torch.bool, device=g.device)
    keep[held] = False
    users, items = g.edges()
    sub = BipartiteGraph(users[keep].cpu(), items[keep].cpu(), g.num_users, g.num_items).to(
        g.device
    )
    return sub, keep.nonzero().squeeze(1)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("mode", ["ones", "bernoulli", "expect", "concrete_st", "hard_concrete"])
@pytest.mark.parametrize("self_loop, renormalize", [(True, True), (False, False)])
def test_holdout_equals_graph_without_the_edges(backend, mode, self_loop, renormalize):
    g = random_graph(*GRAPHS["odd"], seed=16)
    x_u, x_i, phi, omega = make_inputs(g, 6, torch.float64, seed=16)
    held = torch.tensor([3, 0, 3, g.num_edges - 1, 7, 7, 7], device=DEVICE)  # with repeats
    sub, kept = _without(g, held)
    x_u.requires_grad_(), x_i.requires_grad_(), omega.requires_grad_()
    y = ops.masked_spmm(
        g,
        x_u,
        x_i,
        phi,
        mode=mode,
        seed=5,
        offset=11,
        edge_weight=omega,
        self_loop=self_loop,
        renormalize=renormalize,
        holdout=held,
        backend=backend,
    )
    # The subgraph sees the full graph's mask on its edges (its own edge ids would draw others).
    z = torch.ones_like(phi) if mode == "ones" else reference_mask(g, phi, mode, 5, 11)
    t = ops.masked_spmm(
        sub,
        x_u,
        x_i,
        edge_weight=z[kept] * omega[kept],
        self_loop=self_loop,
        renormalize=renormalize,
        backend="reference",
    )
    for a, b in zip(y, t):
        torch.testing.assert_close(a, b, **tol(torch.float64))
    gen = torch.Generator().manual_seed(2)
    c = [torch.randn(a.shape, generator=gen, dtype=torch.float64).to(DEVICE) for a in y]
    leaves = (x_u, x_i, omega)
    gy = torch.autograd.grad(sum((a * ci).sum() for a, ci in zip(y, c)), leaves)
    gt = torch.autograd.grad(sum((b * ci).sum() for b, ci in zip(t, c)), leaves)
    torch.testing.assert_close(gy[0], gt[0], **tol(torch.float64))
    torch.testing.assert_close(gy[1], gt[1], **tol(torch.float64))
    assert torch.count_nonzero(gy[2][held]) == 0
    torch.testing.assert_close(gy[2][kept], gt[2][kept], **tol(torch.float64))


@pytest.mark.parametrize("backend", BACKEND)
def test_holdout_in_the_dual_pass(backend):
    g = random_graph(*GRAPHS["odd"], seed=17)
    x_u, x_i, phi, omega = make_inputs(g, 9, torch.float32, seed=17)
    held = torch.tensor([2, 5, 5, 0], device=DEVICE)
    sub, kept = _without(g, held)
    (pu, pi), (nu, ni) = ops.masked_spmm_dual(
        g, x_u, x_i, phi, seed=4, offset=100, edge_weight=omega, holdout=held, backend=backend
    )
    for mode, (a, b) in (("arm_pos", (pu, pi)), ("arm_neg", (nu, ni))):
        z = reference_mask(g, phi, mode, 4, 100)
        t_u, t_i = ops.masked_spmm(
            sub, x_u, x_i, edge_weight=z[kept] * omega[kept], backend="reference"
        )
        torch.testing.assert_close(a, t_u, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b, t_i, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", GRADCHECK_BACKEND)
def test_gradcheck_dual_with_holdout(backend):
    g = random_graph(5, 4, 0.6, seed=18)
    x_u, x_i, phi, omega = make_inputs(g, 2, torch.float64, seed=18)

    def f(a, b, w):
        (pu, pi), (nu, ni) = ops.masked_spmm_dual(
            g,
            a,
            b,
            phi,
            seed=1,
            edge_weight=w,
            backend=backend,
            holdout=torch.tensor([1, 1], device=DEVICE),
        )
        return pu, pi, nu, ni

    _gradcheck(f, tuple(t.requires_grad_() for t in (x_u, x_i, omega)), backend)


def test_holdout_of_nothing_and_of_everything():
    g = random_graph(*GRAPHS["odd"], seed=19)
    x_u, x_i, phi, _ = make_inputs(g, 4, torch.float32, seed=19)
    empty = torch.zeros(0, dtype=torch.int64, device=DEVICE)
    a = ops.masked_spmm(g, x_u, x_i, phi, "concrete", seed=1, holdout=empty)
    b = ops.masked_spmm(g, x_u, x_i, phi, "concrete", seed=1)
    assert all(torch.equal(s, t) for s, t in zip(a, b))
    every = torch.arange(g.num_edges, device=DEVICE, dtype=torch.int32)  # int32 ids are accepted
    y_u, y_i = ops.masked_spmm(g, x_u, x_i, phi, "concrete", seed=1, holdout=every, self_loop=True)
    torch.testing.assert_close(y_u, x_u)  # only the self-loops are left
    torch.testing.assert_close(y_i, x_i)


# ----------------------------------------------------------------------------- dtypes, empty graphs
@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32(backend, dtype):
    # Issue 10 item 11: masks, weights and degrees in float32, sums accumulated in float32,
    # outputs and gradients in the input dtype. The truth: the same computation on the float32
    # values of the half inputs, rounded once.
    mode = "hard_concrete"
    g = random_graph(*GRAPHS["odd"], seed=20)
    x_u, x_i, phi, omega = make_inputs(g, 24, torch.float32, seed=20)
    x_u, x_i = x_u.to(dtype).requires_grad_(), x_i.to(dtype).requires_grad_()
    phi = phi.requires_grad_()
    y_u, y_i = ops.masked_spmm(g, x_u, x_i, phi, mode, seed=2, edge_weight=omega, backend=backend)
    assert y_u.dtype == dtype and y_i.dtype == dtype
    (y_u.float().sum() + y_i.float().square().sum()).backward()
    assert x_u.grad.dtype == dtype
    xu32, xi32 = x_u.detach().float().requires_grad_(), x_i.detach().float().requires_grad_()
    phi32 = phi.detach().clone().requires_grad_()
    t_u, t_i = ops.masked_spmm(
        g, xu32, xi32, phi32, mode, seed=2, edge_weight=omega, backend="reference"
    )
    (t_u.sum() + t_i.square().sum()).backward()
    rel = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(y_u.float(), t_u, **rel)
    torch.testing.assert_close(y_i.float(), t_i, **rel)
    torch.testing.assert_close(x_u.grad.float(), xu32.grad, **rel)
    # Formed from the half outputs' gradients, in float32.
    assert phi.grad.dtype == torch.float32
    torch.testing.assert_close(phi.grad, phi32.grad, rtol=5e-2, atol=5e-2)
    z = ops.sample_mask(g, phi.detach().to(dtype), "bernoulli", seed=2, backend=backend)
    assert z.dtype == dtype
    assert torch.equal(
        z, reference_mask(g, phi.detach().to(dtype).float(), "bernoulli", 2, 0).to(dtype)
    )


def _empty_graph():
    return BipartiteGraph.from_csr([0, 0, 0, 0], [], 2).to(DEVICE)  # 3 users, 2 items, 0 edges


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("mode", ["ones", "bernoulli", "concrete"])
@pytest.mark.parametrize("self_loop", [False, True])
def test_empty_graph_gives_zeros(backend, mode, self_loop):
    # Issue 10 item 12: a graph with no edges is legal; every row is isolated.
    g = _empty_graph()
    x_u = torch.randn(3, 4, device=DEVICE, requires_grad=True)
    x_i = torch.randn(2, 4, device=DEVICE, requires_grad=True)
    phi = torch.zeros(0, device=DEVICE, requires_grad=True)
    y_u, y_i = ops.masked_spmm(
        g,
        x_u,
        x_i,
        None if mode == "ones" else phi,
        mode,
        seed=1,
        self_loop=self_loop,
        backend=backend,
        holdout=torch.zeros(0, dtype=torch.int64, device=DEVICE),
    )
    torch.testing.assert_close(y_u, x_u.detach() if self_loop else torch.zeros_like(x_u))
    torch.testing.assert_close(y_i, x_i.detach() if self_loop else torch.zeros_like(x_i))
    (y_u.sum() + y_i.sum()).backward()
    torch.testing.assert_close(x_u.grad, torch.full_like(x_u, float(self_loop)))
    torch.testing.assert_close(x_i.grad, torch.full_like(x_i, float(self_loop)))
    if mode == "concrete":
        assert phi.grad is not None and phi.grad.shape == (0,)
    (pu, pi), _ = ops.masked_spmm_dual(g, x_u, x_i, phi, backend=backend)
    assert torch.count_nonzero(pu) == 0 and torch.count_nonzero(pi) == 0


@pytest.mark.parametrize("backend", BACKEND)
def test_sample_mask_of_an_empty_graph(backend):
    g = _empty_graph()
    assert ops.sample_mask(g, torch.zeros(0, device=DEVICE), backend=backend).shape == (0,)
    assert ops.sample_mask(
        g, torch.zeros(3, 0, device=DEVICE), "concrete", backend=backend
    ).shape == (3, 0)


def test_sample_mask_rejects_bad_logits():
    g = random_graph(5, 4, 0.6, seed=21)
    phi = torch.zeros(2, g.num_edges, device=DEVICE)
    phi[1, 1] = float("nan")
    if DEVICE.type == "cpu":
        with pytest.raises(
            ValueError,
            match=f"logits has non-finite values \\(first at flat index {g.num_edges + 1}\\)",
        ):
            ops.sample_mask(g, phi)
    with pytest.raises(
        ValueError, match=r"logits must have shape \[num_edges\] or \[K, num_edges\]"
    ):
        ops.sample_mask(g, phi[:, :-1])
    with pytest.raises(ValueError, match="unknown mode 'soft'"):
        ops.sample_mask(g, phi[0], "soft")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        ops.sample_mask(g, phi[0], "concrete", temperature=float("inf"))


def test_negative_weight_allowed_without_renormalisation(small):
    g, x_u, x_i, phi, omega = small
    ops.masked_spmm(g, x_u, x_i, edge_weight=-omega, renormalize=False)


def test_unknown_or_unavailable_backend(small, monkeypatch):
    g, x_u, x_i, _, _ = small
    with pytest.raises(BackendUnavailable, match="unknown backend 'fast'"):
        ops.masked_spmm(g, x_u, x_i, backend="fast")
    monkeypatch.setenv("FASTGCN_BACKEND", "cuda")
    if ops.availability(DEVICE)["cuda"] is not None:
        with pytest.raises(BackendUnavailable, match="backend 'cuda' is not available"):
            ops.masked_spmm(g, x_u, x_i)


def test_env_var_forces_backend(small, monkeypatch):
    g, x_u, x_i, _, _ = small
    monkeypatch.setenv("FASTGCN_BACKEND", "reference")
    assert ops.resolve_name(DEVICE) == "reference"
    monkeypatch.delenv("FASTGCN_BACKEND")
    avail = ops.availability(DEVICE)
    if DEVICE.type == "cpu":
        assert ops.resolve_name(DEVICE) == ("cpu" if avail["cpu"] is None else "reference")
    else:
        assert ops.resolve_name(DEVICE) == ("triton" if avail["triton"] is None else "cuda")


@pytest.mark.skipif(
    DEVICE.type != "cpu" or ops.availability("cpu")["cpu"] is not None,
    reason="the compiled cpu backend runs on CPU tensors only",
)
@pytest.mark.parametrize("d", [1, 7, 16, 33, 64, 129])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("self_loop, renormalize", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("need_xu, need_xi", [(True, True), (True, False), (False, True)])
def test_fused_cpu_backward_equals_the_composition(
    d, dtype, self_loop, renormalize, need_xu, need_xi
):
    """The cpu backend's spmm_backward (two passes) against its spmm + spmm + edge_grad."""
    from fastgcn_denoise.ops import _cpp_backend as cpp

    g = random_graph(23, 17, 0.3, seed=d)
    x_u, x_i, phi, omega = make_inputs(g, d, dtype, seed=d)
    gy_u, gy_i = torch.randn_like(x_u), torch.randn_like(x_i)
    w = omega[None]
    r_u, r_i = cpp.degree_rsqrt(g, w, self_loop) if renormalize else (None, None)
    gx_u, gx_i, gw = cpp.spmm_backward(
        g,
        w[0],
        None if r_u is None else r_u[0],
        None if r_i is None else r_i[0],
        x_u,
        x_i,
        gy_u,
        gy_i,
        self_loop,
        need_xu,
        need_xi,
    )
    want_u = cpp.spmm(g.rowptr_u, g.col_item, None, w, r_u, r_i, gy_i, gy_u if self_loop else None)
    want_i = cpp.spmm(
        g.rowptr_i, g.col_user, g.perm, w, r_i, r_u, gy_u, gy_i if self_loop else None
    )
    want_w = reference.edge_grad(
        g,
        w[0],
        None if r_u is None else r_u[0],
        None if r_i is None else r_i[0],
        x_u,
        x_i,
        gy_u,
        gy_i,
        self_loop,
    )
    assert (gx_u is not None) == need_xu and (gx_i is not None) == need_xi
    if need_xu:
        torch.testing.assert_close(gx_u, want_u[0], **tol(dtype))
    if need_xi:
        torch.testing.assert_close(gx_i, want_i[0], **tol(dtype))
    torch.testing.assert_close(gw, want_w, **tol(dtype))
