"""Top-k singular triplets of the weighted interaction matrix R_w = R ⊙ w by block Krylov iteration.

Algorithm: the randomized block Krylov method of Musco & Musco ("Randomized block Krylov methods
for stronger and faster approximate singular value decomposition", NeurIPS 2015, Alg. 2). Let A
be R_w or R_w^T, whichever has fewer rows (n), so the basis is n x m with the smaller n:

1. start block  Q_0 = orth(A X_0), X_0 = [warm-start vectors, Gaussian] with b = k + oversample
   columns (Musco & Musco start from A times a Gaussian block);
2. Krylov step  Y = A A^T Q_j, orthonormalised against Q_0..Q_j (block Gram-Schmidt run twice,
   "twice is enough") -> Q_{j+1}; the basis spans [A X_0, (AA^T) A X_0, ..., (AA^T)^j A X_0];
3. Rayleigh-Ritz: with Q = [Q_0..Q_j], the top-k eigenvectors y of H = Q^T A A^T Q give the
   Ritz vectors U_k = Q y (Musco & Musco's Z = Q U_k); the thin SVD A^T U_k = V S W^T then gives
   U = U_k W, S, V (the same values as sqrt(eig H), but without squaring them).

H needs no extra work: column block j of H is Q^T Y, the projection step 2 computes anyway. That
makes the Ritz values available at every depth, so the iteration stops as soon as the top-k
values change by less than ``tol`` (relative) between depths, or after ``n_iter`` steps.
Each step costs two sparse products of width b (R_w and R_w^T, row-parallel, never densified),
one orthonormalisation of an n x b block and a small symmetric eigenproblem (float64).

Sparse products go through the propagation backend's ``spmm`` primitive with no renormalisation
(the C++ kernel when ``fastgcn_denoise._C`` is built, else the reference). Registered as
``fastgcn::truncated_svd`` (no gradient; ``_library``) unless a ``generator`` is passed.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _library as library
from ._backend import get_backend

# Defaults, chosen on the Gowalla training matrix (k = 128, bench/ops/truncated_svd.py): they stop at
# depth 6 with a max relative error of 4.5e-5 against scipy's svds (depth 5: 6.7e-4, 7: 2e-6).
# The error after stopping is well below tol because convergence is geometric (~15x per depth).
DEFAULT_OVERSAMPLE = 16  # b = k + 16: a few extra vectors speed convergence of the k-th value
DEFAULT_N_ITER = 12  # maximum Krylov depth (steps beyond the start block)
DEFAULT_TOL = 1e-3  # relative change of the top-k values between depths that stops early


class _Operator:
    """x -> A x and y -> A^T y for A = R_w (transpose=False) or R_w^T, via the backend's spmm."""

    def __init__(self, graph, w, transpose, backend):
        self.graph, self.w, self.transpose = graph, w[None], transpose
        self.be = get_backend(w.device, backend)

    def _users_from_items(self, x):  # R_w x: [I, d] -> [U, d]
        g = self.graph
        return self.be.spmm(g.rowptr_u, g.col_item, None, self.w, None, None, x.contiguous(), None)[
            0
        ]

    def _items_from_users(self, y):  # R_w^T y: [U, d] -> [I, d]
        g = self.graph
        return self.be.spmm(
            g.rowptr_i, g.col_user, g.perm, self.w, None, None, y.contiguous(), None
        )[0]

    def __call__(self, x):
        return self._items_from_users(x) if self.transpose else self._users_from_items(x)

    def t(self, y):
        return self._users_from_items(y) if self.transpose else self._items_from_users(y)


def _qr(y, generator):
    """(q, replaced): orthonormal columns spanning y's; ``replaced`` if dependent columns were swapped.

    Cholesky QR on unit-norm columns, all BLAS-3: with D = diag(y^T y)^1/2 and the Cholesky factor
    L L^T = D^-1 y^T y D^-1 (float64, b x b), q = y (D^-1 L^-T), one GEMM with a small matrix.
    (Applying the b x b inverse as a GEMM is ~3x faster here than a triangular solve on the tall
    block, and the condition test below keeps L well conditioned.) When the block is too
    ill-conditioned for it (Cholesky fails or its diagonal spans more than ~1/(8 sqrt(eps))),
    Householder QR instead, and columns that are numerically dependent (the Krylov space became
    invariant, e.g. a rank-deficient R) are replaced by random vectors so the basis keeps full rank.
    """
    eps = torch.finfo(y.dtype).eps
    gram = (y.mT @ y).double()
    scale = gram.diagonal().clamp_min(torch.finfo(torch.float64).tiny).rsqrt()
    chol, info = torch.linalg.cholesky_ex(gram * scale[:, None] * scale[None, :])
    diag = chol.diagonal()
    if int(info) == 0 and bool(diag.min() > 8 * eps**0.5 * diag.max()):
        eye = torch.eye(chol.shape[0], dtype=chol.dtype, device=chol.device)
        inv_lt = torch.linalg.solve_triangular(chol, eye, upper=False).mT
        return y @ (scale[:, None] * inv_lt).to(y.dtype), False
    q, r = torch.linalg.qr(y / y.norm(dim=0).clamp_min(torch.finfo(y.dtype).tiny))
    lost = r.diagonal().abs() <= eps**0.5
    if lost.any():
        q[:, lost] = torch.randn(
            q.shape[0], int(lost.sum()), dtype=q.dtype, device=q.device, generator=generator
        )
    return q, bool(lost.any())


def _orthonormalise(y, basis, generator, coef=None):
    """Orthonormal columns spanning the part of y orthogonal to ``basis`` (orthonormal, or None).

    Block classical Gram-Schmidt with one re-orthogonalisation pass ("twice is enough"), each pass
    followed by ``_qr``; a pass that had to insert random columns is followed by one more.
    ``coef`` = basis^T y when the caller has it already (saves the first projection's product).
    """
    for sweep in range(3):
        if basis is not None:
            y = y - basis @ (coef if sweep == 0 and coef is not None else basis.mT @ y)
        y, replaced = _qr(y, generator)
        if basis is None and not replaced or sweep >= 1 and not replaced:
            break
    return y


def _ritz_values(h, k):
    """Top-k singular values sqrt(eig(h)), descending (h symmetric PSD, float64)."""
    vals = torch.linalg.eigvalsh(h)
    return vals.flip(0)[:k].clamp_min(0).sqrt()


def _check_args(graph, k, edge_weight, n_iter, tol, init, oversample, dtype):
    n_min = min(graph.num_users, graph.num_items)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n_min:
        raise ValueError(f"k must be an int in [1, min(num_users, num_items) = {n_min}], got {k!r}")
    if edge_weight is not None:
        if not isinstance(edge_weight, torch.Tensor) or edge_weight.shape != (graph.num_edges,):
            shape = (
                tuple(edge_weight.shape)
                if isinstance(edge_weight, torch.Tensor)
                else type(edge_weight).__name__
            )
            raise ValueError(
                f"edge_weight must have shape [num_edges] = [{graph.num_edges}], got {shape}"
            )
        if edge_weight.device != graph.device:
            raise ValueError(
                f"edge_weight is on {edge_weight.device} but the graph is on {graph.device}"
            )
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"truncated_svd works in float32 or float64, got {dtype}")
    if n_iter is not None and (not isinstance(n_iter, int) or n_iter < 0):
        raise ValueError(f"n_iter must be a non-negative int, got {n_iter!r}")
    if tol is not None and not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if oversample is not None and (not isinstance(oversample, int) or oversample < 0):
        raise ValueError(f"oversample must be a non-negative int, got {oversample!r}")
    if init is not None:
        if (
            not isinstance(init, torch.Tensor)
            or init.dim() != 2
            or init.shape[0] != graph.num_items
        ):
            shape = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
            raise ValueError(
                f"init must be item-side vectors [num_items = {graph.num_items}, j], got {shape}"
            )
        if init.device != graph.device:
            raise ValueError(f"init is on {init.device} but the graph is on {graph.device}")


def truncated_svd(
    graph,
    k: int,
    edge_weight: torch.Tensor | None = None,
    n_iter: int | None = None,
    tol: float | None = None,
    init: torch.Tensor | None = None,
    oversample: int | None = None,
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
    backend: str | None = None,
):
    """Top-k singular values and vectors of R_w (R binary on the graph's pattern, w = edge_weight or 1).

    Args:
        graph: ``BipartiteGraph``.
        k: number of singular triplets, 1 <= k <= min(num_users, num_items).
        edge_weight [E]: per-edge values (edge-id order); None means the binary R.
        n_iter: maximum Krylov depth (default 12); 0 is a single block, i.e. one power step.
        tol: stop when the top-k values change by less than ``tol`` relative between depths
            (default 1e-3; 0 runs until they change by no more than rounding).
        init [I, j]: warm start, e.g. the V of the previous call (j <= k + oversample columns).
        oversample: extra block columns (default 16); the block is min(k + oversample, n) wide.
        dtype: float32 or float64 (default: edge_weight's dtype, else float32).
        generator: for the Gaussian start (default: seeded with 0, so results are reproducible;
            with one, the call runs outside the registered op, which torch.compile cannot trace).
        backend: force the sparse-product backend.

    Returns:
        (U [num_users, k], S [k] descending, V [num_items, k]), orthonormal columns, in ``dtype``.
    """
    if dtype is None:
        dtype = edge_weight.dtype if edge_weight is not None else torch.float32
    _check_args(graph, k, edge_weight, n_iter, tol, init, oversample, dtype)
    n_iter = DEFAULT_N_ITER if n_iter is None else n_iter
    tol = DEFAULT_TOL if tol is None else float(tol)
    oversample = DEFAULT_OVERSAMPLE if oversample is None else oversample
    edge_weight = None if edge_weight is None else edge_weight.detach()
    init = None if init is None else init.detach()
    if generator is not None:  # a schema cannot carry a Generator: run the implementation as is
        return _krylov_svd(
            graph, k, edge_weight, n_iter, tol, init, oversample, dtype, generator, backend
        )
    u, s, v = _op(
        *library.graph_args(graph), k, edge_weight, n_iter, tol, init, oversample, dtype, backend
    )
    return u, s, v


def _truncated_svd_op(
    rowptr_u: torch.Tensor,
    col_item: torch.Tensor,
    rowptr_i: torch.Tensor,
    col_user: torch.Tensor,
    perm: torch.Tensor,
    k: int,
    edge_weight: Optional[torch.Tensor],
    n_iter: int,
    tol: float,
    init: Optional[torch.Tensor],
    oversample: int,
    dtype: torch.dtype,
    backend: Optional[str],
) -> list[torch.Tensor]:
    """``fastgcn::truncated_svd``: [U, S, V], the Gaussian start drawn from a generator seeded 0."""
    if (
        edge_weight is not None
        and edge_weight.device.type == "cpu"
        and not torch.isfinite(edge_weight).all()
    ):
        bad = int((~torch.isfinite(edge_weight)).nonzero()[0])
        raise ValueError(f"edge_weight has non-finite values (first at edge {bad})")
    graph = library.graph_from(rowptr_u, col_item, rowptr_i, col_user, perm)
    generator = torch.Generator(rowptr_u.device).manual_seed(0)
    return list(
        _krylov_svd(graph, k, edge_weight, n_iter, tol, init, oversample, dtype, generator, backend)
    )


def _truncated_svd_fake(
    rowptr_u,
    col_item,
    rowptr_i,
    col_user,
    perm,
    k,
    edge_weight,
    n_iter,
    tol,
    init,
    oversample,
    dtype,
    backend,
):
    new = col_item.new_empty
    return [
        new(rowptr_u.shape[0] - 1, k, dtype=dtype),
        new(k, dtype=dtype),
        new(rowptr_i.shape[0] - 1, k, dtype=dtype),
    ]


_op = library.define("truncated_svd", _truncated_svd_op, _truncated_svd_fake)


def _krylov_svd(graph, k, edge_weight, n_iter, tol, init, oversample, dtype, generator, backend):
    """The algorithm of the module docstring on checked arguments (see ``truncated_svd``)."""
    device = graph.device
    w = (
        torch.ones(graph.num_edges, dtype=dtype, device=device)
        if edge_weight is None
        else edge_weight.to(dtype)
    )

    # Basis on the smaller side: A = R_w (users x items) or R_w^T.
    transpose = graph.num_users > graph.num_items
    op = _Operator(graph, w, transpose, backend)
    n, c = (graph.num_items, graph.num_users) if transpose else (graph.num_users, graph.num_items)
    b = min(k + oversample, n)

    x0 = torch.empty(c, b, dtype=dtype, device=device)
    j = 0
    if init is not None:
        # Warm start from item-side vectors: in column space when A = R_w, else mapped there by A^T.
        j = min(init.shape[1], b)
        start = init[:, :j].to(dtype)
        x0[:, :j] = op.t(start) if transpose else start
    x0[:, j:] = torch.randn(c, b - j, dtype=dtype, device=device, generator=generator)
    # The basis never exceeds n columns: the last block is cut short, and a full basis is exact.
    m_max = min(n, b * (n_iter + 1))
    basis = torch.empty(n, m_max, dtype=dtype, device=device)
    basis[:, :b] = _orthonormalise(op(x0), None, generator)
    h = torch.zeros(m_max, m_max, dtype=torch.float64, device=device)
    m, bj = b, b  # basis columns so far, width of the newest block
    prev = None
    for step in range(n_iter + 1):
        q = basis[:, :m]
        y = op(op.t(q[:, m - bj :]))  # A A^T Q_step
        coef = q.mT @ y  # H[:m, block step] = Q^T A A^T Q_step
        h[:m, m - bj : m] = coef.double()
        h[m - bj : m, :m] = coef.double().mT
        vals = _ritz_values(h[:m, :m], k)
        # H holds s^2 with rounding error ~eps s_1^2, i.e. ~eps s_1^2 / s_j on s_j: changes below
        # that are noise (and a value at zero is settled).
        noise = (
            torch.finfo(dtype).eps * vals[0] ** 2 / vals.clamp_min(torch.finfo(torch.float64).tiny)
        )
        converged = prev is not None and bool(((vals - prev).abs() <= tol * vals + noise).all())
        prev = vals
        if converged or step == n_iter or m == n:
            break
        bj = min(b, n - m)
        basis[:, m : m + bj] = _orthonormalise(y[:, :bj], q, generator, coef[:, :bj])
        m += bj

    # Ritz vectors of the top k, then their exact singular triplets within that k-dim subspace: the
    # thin SVD of A^T U_k (c x k) reads the values off without squaring them (H holds s^2, which
    # would put an error of sqrt(eps) s_1 on small values) and gives orthonormal V directly.
    _, evecs = torch.linalg.eigh(h[:m, :m])
    u_k = q @ evecs.flip(1)[:, :k].to(dtype)
    v, s, z = _thin_svd(op.t(u_k))
    u = u_k @ z
    return (v, s, u) if transpose else (u, s, v)


# Largest relative error on the smallest value that _thin_svd accepts from its Gram route.
_GRAM_REL_ERROR = 1e-5


def _thin_svd(b):
    """(v [c, k], s [k] descending, z [k, k]) with b = v diag(s) z^T, for a tall block b [c, k].

    Through the k x k Gram matrix: z, s^2 = eigh(b^T b) (float64), v = b z / s, two GEMMs instead
    of LAPACK's Householder bidiagonalisation of the tall block (3-4x slower here). Squaring puts
    an error of ~eps (s_1 / s_j)^2 on s_j (relative), so when that exceeds ``_GRAM_REL_ERROR`` on
    the smallest value (s_1 / s_k above ~9 in float32; Gowalla's top 128 span 4.5) it falls back to
    ``torch.linalg.svd``.
    """
    evals, z = torch.linalg.eigh((b.mT @ b).double())
    evals, z = evals.flip(0), z.flip(1)
    eps = torch.finfo(b.dtype).eps
    if bool(evals[-1] > 0) and bool(eps * evals[0] <= _GRAM_REL_ERROR * evals[-1]):
        s = evals.sqrt()
        return b @ (z / s).to(b.dtype), s.to(b.dtype), z.to(b.dtype)
    v, s, zt = torch.linalg.svd(b, full_matrices=False)
    return v, s, zt.mT


__all__ = ["truncated_svd"]
