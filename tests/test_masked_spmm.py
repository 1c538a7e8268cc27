"""ops.masked_spmm on every backend present, against a dense float64 computation."""

import pytest
import torch

from fastgcn_denoise import BipartiteGraph, ops
from fastgcn_denoise.ops import BackendUnavailable, reference
from fastgcn_denoise.ops.reference import MODES

from conftest import DEVICE, backend_params, random_graph

BACKEND = backend_params()
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
        s_u, s_i = (r_u ** 2)[:, None], (r_i ** 2)[:, None]
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
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("self_loop, renormalize", [(False, True), (True, True), (False, False), (True, False)])
def test_forward_modes(backend, mode, self_loop, renormalize):
    g = random_graph(*GRAPHS["odd"], seed=1)
    x_u, x_i, phi, omega = make_inputs(g, 7, torch.float64)
    y_u, y_i = ops.masked_spmm(g, x_u, x_i, phi, mode=mode, seed=11, offset=3, edge_weight=omega,
                               self_loop=self_loop, renormalize=renormalize, backend=backend)
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
    (pu, pi), (nu, ni) = ops.masked_spmm_dual(g, x_u, x_i, phi, seed=4, offset=100, edge_weight=omega,
                                              backend=backend)
    for mode, (a, b) in (("arm_pos", (pu, pi)), ("arm_neg", (nu, ni))):
        su, si = ops.masked_spmm(g, x_u, x_i, phi, mode=mode, seed=4, offset=100, edge_weight=omega,
                                 backend=backend)
        torch.testing.assert_close(a, su, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(b, si, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("mode", ["bernoulli", "arm_pos", "arm_neg", "expect", "hard"])
def test_mask_identical_to_reference(backend, mode):
    g = random_graph(40, 30, 0.3, seed=4)
    phi = torch.randn(3, g.num_edges, device=DEVICE)
    z = ops.sample_mask(g, phi, mode, seed=2**35 + 1, offset=2**32 - 7, backend=backend)
    assert z.shape == phi.shape
    ref = reference_mask(g, phi, mode, 2**35 + 1, 2**32 - 7)
    if mode in ("expect", "hard"):  # continuous values: sigmoid may round differently by an ulp
        torch.testing.assert_close(z, ref, rtol=2e-7, atol=0)
        assert torch.equal(z > 0, ref > 0)
    else:  # binary masks: bit-identical whichever backend drew them
        assert torch.equal(z, ref)
    # Row k uses counters offset + k*E: the same as a single-row draw at layer_offset.
    row = ops.sample_mask(g, phi[2], mode, seed=2**35 + 1,
                          offset=ops.layer_offset(2**32 - 7, 2, g.num_edges), backend=backend)
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
    s = (ops.sample_mask(g, zero, "arm_pos", seed=3, backend=backend)
         + ops.sample_mask(g, zero, "arm_neg", seed=3, backend=backend))
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
        return ops.masked_spmm(g, a, b, phi, mode=mode, seed=2, edge_weight=w, self_loop=self_loop,
                               renormalize=renormalize, backend=backend)
    _gradcheck(f, (x_u, x_i, omega), backend)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("with_weight", [False, True])
def test_gradcheck_logits_expect(backend, with_weight):
    g = random_graph(5, 4, 0.6, seed=7)
    x_u, x_i, phi, omega = make_inputs(g, 2, torch.float64, seed=7)
    phi.requires_grad_()

    def f(p):
        return ops.masked_spmm(g, x_u, x_i, p, mode="expect", edge_weight=omega if with_weight else None,
                               backend=backend)
    _gradcheck(f, (phi,), backend)


@pytest.mark.parametrize("backend", BACKEND)
def test_gradcheck_dual(backend):
    g = random_graph(5, 4, 0.6, seed=8)
    x_u, x_i, phi, omega = make_inputs(g, 2, torch.float64, seed=8)
    x_u.requires_grad_(), x_i.requires_grad_(), omega.requires_grad_()

    def f(a, b, w):
        (pu, pi), (nu, ni) = ops.masked_spmm_dual(g, a, b, phi, seed=1, edge_weight=w, backend=backend)
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


@pytest.mark.parametrize("change, message", [
    (lambda g, u, i, p, w: dict(x_user=u[:-1]), "x_user has 4 rows but the graph has num_users = 5"),
    (lambda g, u, i, p, w: dict(x_item=i[:, :2]), "x_user has d = 3 but x_item has d = 2"),
    (lambda g, u, i, p, w: dict(x_item=i.double()), "x_user is torch.float32 but x_item is torch.float64"),
    (lambda g, u, i, p, w: dict(x_user=u[0]), "x_user must be a 2-D tensor"),
    (lambda g, u, i, p, w: dict(x_user=u.long()), "x_user must be floating point"),
    (lambda g, u, i, p, w: dict(mode="dropout"), "unknown mode 'dropout'"),
    (lambda g, u, i, p, w: dict(logits=None, mode="bernoulli"), "mode 'bernoulli' needs logits"),
    (lambda g, u, i, p, w: dict(logits=p[:-1]), r"logits must have shape \[num_edges\]"),
    (lambda g, u, i, p, w: dict(logits=torch.where(torch.arange(len(p)) == 2, torch.nan, p)),
     "logits has non-finite values \\(first at edge 2\\)"),
    (lambda g, u, i, p, w: dict(edge_weight=-w), "edge_weight must be >= 0 with renormalize=True"),
    (lambda g, u, i, p, w: dict(edge_weight=w[None]), r"edge_weight must have shape \[num_edges\]"),
])
def test_bad_input_raises(small, change, message):
    g, x_u, x_i, phi, omega = small
    kwargs = dict(x_user=x_u, x_item=x_i, logits=phi, mode="bernoulli", edge_weight=None)
    kwargs.update(change(g, x_u, x_i, phi, omega))
    with pytest.raises(ValueError, match=message):
        ops.masked_spmm(g, **kwargs)


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
