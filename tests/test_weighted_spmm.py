"""ops.weighted_spmm / ops.directed_spmm on every backend present, against dense float64 products."""

import numpy as np
import pytest
import torch
from conftest import DEVICE, backend_params, check_gradients, random_graph

from fastgcn_denoise import BipartiteGraph, ops
from fastgcn_denoise.ops import CSRPattern

BACKEND = backend_params()


def rand(shape, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(DEVICE, dtype)


def random_pattern(rows, cols, density, seed):
    """A pattern with an empty row and an empty column, given in shuffled COO order."""
    rng = np.random.default_rng(seed)
    mask = rng.random((rows, cols)) < density
    mask[rows // 2, :] = False
    mask[:, cols - 1] = False
    r, c = np.nonzero(mask)
    shuffle = rng.permutation(r.shape[0])
    pattern, order = CSRPattern.from_coo(r[shuffle], c[shuffle], rows, cols)
    return pattern.to(DEVICE), r[shuffle][order.numpy()], c[shuffle][order.numpy()]


def dense(rows, cols, r, c, w, shape):
    a = torch.zeros(shape, dtype=torch.float64, device=DEVICE)
    a[torch.as_tensor(r, device=DEVICE), torch.as_tensor(c, device=DEVICE)] = w.double()
    return a


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,d", [((9, 7), 5), ((1, 4), 1), ((12, 12), 33), ((10, 8), 130)])
def test_weighted_spmm_matches_dense(backend, dtype, shape, d):
    pattern, r, c = random_pattern(*shape, 0.4, seed=d)
    w = rand((pattern.nnz,), dtype, 1)
    x = rand((shape[1], d), dtype, 2)
    y = ops.weighted_spmm(pattern, w, x, backend=backend)
    truth = dense(*shape, r, c, w, shape) @ x.double()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y.double(), truth, **tol)
    assert y.dtype == dtype and y[shape[0] // 2].abs().sum() == 0  # the empty row


@pytest.mark.parametrize("backend", BACKEND)
def test_weighted_spmm_gradcheck(backend):
    pattern, _, _ = random_pattern(6, 5, 0.5, seed=3)
    w = rand((pattern.nnz,), torch.float64, 4).requires_grad_()
    x = rand((5, 3), torch.float64, 5).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda w, x: ops.weighted_spmm(pattern, w, x, backend=backend), (w, x)
    )


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_directed_spmm_matches_dense_and_masked_spmm(backend, dtype):
    g = random_graph(13, 11, 0.3, seed=7)
    users, items = (t.cpu().numpy() for t in g.edges())
    x_u, x_i = rand((13, 6), dtype, 8), rand((11, 6), dtype, 9)
    w_u, w_i = rand((g.num_edges,), dtype, 10), rand((g.num_edges,), dtype, 11)
    y_u, y_i = ops.directed_spmm(g, x_u, x_i, w_u, w_i, backend=backend)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        y_u.double(), dense(13, 11, users, items, w_u, (13, 11)) @ x_i.double(), **tol
    )
    torch.testing.assert_close(
        y_i.double(), dense(13, 11, users, items, w_i, (13, 11)).T @ x_u.double(), **tol
    )
    # Equal weights in both directions: masked_spmm without renormalisation.
    w = w_u.abs()
    tied = ops.directed_spmm(g, x_u, x_i, w, w, backend=backend)
    ref = ops.masked_spmm(g, x_u, x_i, edge_weight=w, renormalize=False, backend=backend)
    for a, b in zip(tied, ref):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("backend", BACKEND)
def test_directed_spmm_gradcheck(backend):
    g = random_graph(7, 6, 0.4, seed=12)
    args = [
        rand((7, 3), torch.float64, 13),
        rand((6, 3), torch.float64, 14),
        rand((g.num_edges,), torch.float64, 15),
        rand((g.num_edges,), torch.float64, 16),
    ]
    args = [a.requires_grad_() for a in args]
    check_gradients(lambda b, *a: ops.directed_spmm(g, *a, backend=b), args, backend)


def test_empty_pattern_and_errors():
    pattern, _ = CSRPattern.from_coo([], [], 3, 4)
    pattern = pattern.to(DEVICE)
    y = ops.weighted_spmm(pattern, torch.zeros(0, device=DEVICE), torch.ones(4, 2, device=DEVICE))
    assert y.shape == (3, 2) and not y.any()
    with pytest.raises(ValueError, match=r"duplicate entry \(1, 2\)"):
        CSRPattern.from_coo([1, 0, 1], [2, 0, 2], 2, 3)
    with pytest.raises(ValueError, match=r"cols\[0\] = 5 is outside \[0, 3\)"):
        CSRPattern.from_coo([0], [5], 2, 3)
    with pytest.raises(ValueError, match=r"rowptr\[2\] = 1 is below rowptr\[1\] = 2"):
        CSRPattern.from_csr([0, 2, 1], [0, 1], 3)
    g = BipartiteGraph([0, 1], [1, 0]).to(DEVICE)
    x_u, x_i = torch.ones(2, 3, device=DEVICE), torch.ones(2, 3, device=DEVICE)
    with pytest.raises(ValueError, match=r"w_to_item must have shape \[2\]"):
        ops.directed_spmm(g, x_u, x_i, torch.ones(2, device=DEVICE), torch.ones(3, device=DEVICE))
    with pytest.raises(ValueError, match=r"x_item must have shape \[num_items = 2, d\]"):
        ops.directed_spmm(
            g,
            x_u,
            torch.ones(3, 3, device=DEVICE),
            torch.ones(2, device=DEVICE),
            torch.ones(2, device=DEVICE),
        )
    if DEVICE.type == "cpu":
        with pytest.raises(
            ValueError, match=r"w_to_user has non-finite values \(first at entry 1\)"
        ):
            ops.directed_spmm(g, x_u, x_i, torch.tensor([1.0, float("inf")]), torch.ones(2))


def _direct(rowptr, col, num_cols=3):
    """A CSRPattern built directly: a valid transpose of a 2 x 3 pattern, the given forward CSR."""
    good = CSRPattern.from_csr([0, 2, 3], [0, 2, 1], 3)
    t = torch.as_tensor
    return CSRPattern(t(rowptr), t(col), good.t_rowptr, good.t_col, good.t_perm, 2, num_cols)


@pytest.mark.parametrize(
    "build, message",
    [
        # The case: a column past num_cols went straight to the kernel (segfault).
        (
            lambda: _direct([0, 2, 3], [0, 100000, 1]),
            r"CSRPattern: col\[1\] = 100000 is outside \[0, 3\)",
        ),
        (lambda: _direct([0, 2, 3], [0, -1, 1]), r"CSRPattern: col\[1\] = -1 is outside"),
        (
            lambda: _direct([0, 3, 2], [0, 2, 1]),
            r"CSRPattern: rowptr\[2\] = 2 is below rowptr\[1\] = 3",
        ),
        (
            lambda: _direct([0, 2, 9], [0, 2, 1]),
            r"CSRPattern: rowptr\[-1\] = 9 but col has 3 entries",
        ),
        (lambda: _direct([0, 2], [0, 2]), r"CSRPattern: rowptr has 2 entries, expected 3"),
        (lambda: _direct([0, 2, 3], [0.0, 2.0, 1.0]), r"CSRPattern: col must be an int64 tensor"),
        (
            lambda: _direct([0, 2, 3], [0, 2, 1], 2.5),
            r"CSRPattern: num_cols must be a non-negative",
        ),
        (
            lambda: CSRPattern.from_csr([1, 2, 3], [0, 1], 3),
            r"from_csr: rowptr\[0\] = 1, must be 0",
        ),
        (lambda: CSRPattern.from_csr([0, 1], [[0]], 3), r"from_csr: col must be 1-D"),
        (lambda: CSRPattern.from_coo([0, 1], [0.5, 1], 2, 3), r"from_coo: cols must hold integers"),
    ],
)
def test_pattern_indices_checked_at_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_direct_pattern_that_is_valid_still_works():
    p = _direct([0, 2, 3], [0, 2, 1])
    y = ops.weighted_spmm(p, torch.ones(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    assert y.tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
