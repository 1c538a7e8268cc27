"""ops.spgemm and ops.power_sum on every backend present, against dense float64 products."""

import numpy as np
import pytest
import torch
from conftest import DEVICE, backend_params, random_graph

from fastgcn_denoise import ops
from fastgcn_denoise.ops import CSRMatrix

BACKEND = backend_params()


def random_csr(rows, cols, density, seed, dtype=torch.float64):
    """A random CSR with an empty row and an empty column."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((rows, cols)) < density) * rng.integers(1, 4, (rows, cols))
    dense[rows // 2, :] = 0
    dense[:, -1] = 0
    r, c = np.nonzero(dense)
    rowptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=rows), out=rowptr[1:])
    t = lambda a, dt=torch.int64: torch.as_tensor(a, dtype=dt, device=DEVICE)  # noqa: E731
    return CSRMatrix(t(rowptr), t(c), t(dense[r, c], dtype), rows, cols)


def check_sorted_csr(m: CSRMatrix):
    for r in range(m.num_rows):
        cols = m.col[m.rowptr[r] : m.rowptr[r + 1]]
        assert (cols.diff() > 0).all(), f"row {r} is not sorted / has duplicates"


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(9, 7, 11), (1, 1, 1), (40, 25, 40)])
def test_spgemm_matches_dense(backend, dtype, shape):
    r, k, c = shape
    a, b = random_csr(r, k, 0.3, 1, dtype), random_csr(k, c, 0.3, 2, dtype)
    out = ops.spgemm(a, b, backend=backend)
    check_sorted_csr(out)
    truth = a.to_dense().double() @ b.to_dense().double()
    torch.testing.assert_close(out.to_dense().double(), truth)
    assert out.val.dtype == dtype and (out.num_rows, out.num_cols) == (r, c)
    # Every structural nonzero of the product, and only those.
    struct = (a.to_dense() != 0).double() @ (b.to_dense() != 0).double()
    assert out.nnz == int((struct > 0).sum())


@pytest.mark.parametrize("backend", BACKEND)
def test_spgemm_plus_identity(backend):
    a, b = random_csr(12, 8, 0.4, 3), random_csr(8, 12, 0.4, 4)
    out = ops.spgemm(a, b, plus_identity=True, backend=backend)
    check_sorted_csr(out)
    torch.testing.assert_close(
        out.to_dense(),
        a.to_dense() @ b.to_dense() + torch.eye(12, device=DEVICE, dtype=torch.float64),
    )


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_power_sum_counts_paths(backend, order):
    g = random_graph(13, 9, 0.25, seed=5)
    c = ops.power_sum(g, order, backend=backend)
    users, items = g.edges()
    n = g.num_users + g.num_items
    adj = torch.zeros(n, n, dtype=torch.float64, device=DEVICE)
    adj[users, g.num_users + items] = 1
    adj[g.num_users + items, users] = 1
    truth = sum(torch.linalg.matrix_power(adj, k) for k in range(order + 1))
    check_sorted_csr(c)
    torch.testing.assert_close(c.to_dense(), truth)
    if order == 2:  # 2-hop entries: co-interaction counts between users and between items
        assert c.to_dense()[:13, :13].count_nonzero() > 13
    pattern = c.pattern()
    assert pattern.nnz == c.nnz and pattern.num_rows == n


def test_errors():
    a = random_csr(3, 4, 0.5, 6)
    with pytest.raises(ValueError, match="A is 3 x 4 but B is 3 x 4"):
        ops.spgemm(a, a)
    with pytest.raises(ValueError, match="plus_identity needs a square product"):
        ops.spgemm(a, random_csr(4, 5, 0.5, 7), plus_identity=True)
    with pytest.raises(ValueError, match="values must share one float dtype"):
        ops.spgemm(a, random_csr(4, 3, 0.5, 8, torch.float32))
    with pytest.raises(ValueError, match="order must be an integer >= 0"):
        ops.power_sum(random_graph(3, 3, 0.5), -1)


def _matrix(rowptr, col, num_rows=2, num_cols=3):
    t = torch.as_tensor
    return CSRMatrix(
        t(rowptr), t(col), torch.ones(len(col), dtype=torch.float64), num_rows, num_cols
    )


@pytest.mark.parametrize(
    "rowptr, col, message",
    [
        # The crashes: a bad column or a decreasing rowptr went straight to _C.spgemm
        # (SIGSEGV, "double free or corruption").
        ([0, 1, 2], [0, 3], r"CSRMatrix: col\[1\] = 3 is outside \[0, 3\)"),
        ([0, 1, 2], [-2, 0], r"CSRMatrix: col\[0\] = -2 is outside \[0, 3\)"),
        ([0, 2, 1], [0, 1], r"CSRMatrix: rowptr\[2\] = 1 is below rowptr\[1\] = 2"),
        ([0, 1, 5], [0, 1], r"CSRMatrix: rowptr\[-1\] = 5 but col has 2 entries"),
        ([1, 1, 2], [0, 1], r"CSRMatrix: rowptr\[0\] = 1, must be 0"),
        ([0, 2], [0, 1], r"CSRMatrix: rowptr has 2 entries, expected num_rows \+ 1 = 3"),
    ],
)
def test_csr_matrix_indices_checked_at_construction(rowptr, col, message):
    with pytest.raises(ValueError, match=message):
        _matrix(rowptr, col)


def test_csr_matrix_refuses_other_index_dtypes():
    with pytest.raises(ValueError, match="CSRMatrix: col must be an int64 tensor, got torch.int32"):
        CSRMatrix(torch.tensor([0, 1]), torch.tensor([0], dtype=torch.int32), torch.ones(1), 1, 1)
    with pytest.raises(ValueError, match="CSRMatrix: val must be a tensor of col's shape"):
        CSRMatrix(torch.tensor([0, 1]), torch.tensor([0]), torch.ones(2), 1, 1)
