"""ops.dot_logsumexp on every backend present, against a dense float64 log-sum-exp."""

import pytest
import torch
from conftest import DEVICE, backend_params

from fastgcn_denoise import ops
from fastgcn_denoise.ops.dot_logsumexp import pack_mask

BACKEND = backend_params()


def rand(shape, dtype, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=gen, dtype=torch.float64)).to(DEVICE, dtype)


def random_mask(rows, cols, keep, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(rows, cols, generator=gen) < keep).to(DEVICE)


def dense_truth(q, k, tau, qm=None, km=None, slack=0):
    s = (q.double() @ k.double().T) / tau
    if qm is not None:
        overlap = qm.double() @ km.double().T
        need = torch.maximum(qm.sum(1, keepdim=True), km.sum(1)[None, :]).double() - slack
        s = s.masked_fill(overlap < need, float("-inf"))
    return torch.logsumexp(s, dim=1)


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,N,d", [(7, 45, 5), (1, 1, 1), (33, 130, 64), (130, 600, 17)])
def test_matches_dense(backend, dtype, B, N, d):
    q, k = rand((B, d), dtype, 1), rand((N, d), dtype, 2)
    lse = ops.dot_logsumexp(q, k, 0.3, backend=backend)
    assert lse.dtype == dtype and lse.shape == (B,)
    torch.testing.assert_close(lse.double(), dense_truth(q, k, 0.3), **tol(dtype))


@pytest.mark.parametrize("backend", BACKEND)
def test_stable_where_the_naive_sum_overflows(backend):
    # Scores up to ~2000 / 0.1: exp overflows float32 (and float64) without the max subtraction.
    q, k = rand((9, 8), torch.float32, 3, scale=15.0), rand((70, 8), torch.float32, 4, scale=15.0)
    assert not torch.isfinite(torch.exp(q.double() @ k.double().T / 0.1).sum(1)).all()
    lse = ops.dot_logsumexp(q, k, 0.1, backend=backend)
    assert torch.isfinite(lse).all()
    torch.testing.assert_close(lse.double(), dense_truth(q, k, 0.1), rtol=2e-6, atol=1e-3)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("width,slack", [(8, 0), (40, 3), (64, 1)])
def test_positive_sets(backend, dtype, width, slack):
    B, N = 11, 77
    q, k = rand((B, width), dtype, 5), rand((N, width), dtype, 6)
    km = random_mask(N, width, 0.7, 7)
    qm = km[:B].clone()  # the queries are among the keys: every set holds at least itself
    qm[3] = False  # an all-zero mask matches keys with at most `slack` kept entries
    lse = ops.dot_logsumexp(q, k, 0.5, query_mask=qm, key_mask=km, slack=slack, backend=backend)
    truth = dense_truth(q, k, 0.5, qm, km, slack)
    finite = torch.isfinite(truth)
    assert torch.equal(torch.isfinite(lse), finite)
    torch.testing.assert_close(lse[finite].double(), truth[finite], **tol(dtype))


@pytest.mark.parametrize("backend", BACKEND)
def test_empty_positive_set_gives_minus_inf_and_no_gradient(backend):
    q = rand((3, 4), torch.float64, 8).requires_grad_()
    k = rand((5, 4), torch.float64, 9).requires_grad_()
    qm = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], device=DEVICE).bool()
    km = torch.tensor([[1, 0, 0, 0]] * 5, device=DEVICE).bool()
    # slack 1: row 0 needs an overlap of 3 (none), rows 1 and 2 match every key.
    lse = ops.dot_logsumexp(q, k, 1.0, query_mask=qm, key_mask=km, slack=1, backend=backend)
    assert lse[0] == float("-inf") and torch.isfinite(lse[1:]).all()
    lse[1:].sum().backward()
    assert q.grad[0].abs().sum() == 0 and torch.isfinite(q.grad).all() and k.grad.abs().sum() > 0


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("masked", [False, True])
def test_gradcheck(backend, masked):
    q = rand((6, 5), torch.float64, 10).requires_grad_()
    k = rand((9, 5), torch.float64, 11).requires_grad_()
    kw = {}
    if masked:
        km = random_mask(9, 5, 0.6, 12)
        kw = dict(query_mask=km[:6], key_mask=km, slack=1)
    assert torch.autograd.gradcheck(
        lambda q, k: ops.dot_logsumexp(q, k, 0.7, backend=backend, **kw), (q, k)
    )


@pytest.mark.parametrize("backend", BACKEND)
def test_gradients_match_autograd_of_the_dense_form(backend):
    q = rand((40, 16), torch.float32, 13).requires_grad_()
    k = rand((300, 16), torch.float32, 14).requires_grad_()
    w = rand((40,), torch.float32, 15)
    (ops.dot_logsumexp(q, k, 0.2, backend=backend) * w).sum().backward()
    q2, k2 = q.detach().double().requires_grad_(), k.detach().double().requires_grad_()
    (dense_truth(q2, k2, 0.2) * w.double()).sum().backward()
    torch.testing.assert_close(q.grad.double(), q2.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(k.grad.double(), k2.grad, rtol=1e-4, atol=1e-5)


def test_pack_mask_bits():
    m = random_mask(4, 70, 0.5, 16)
    packed = pack_mask(m)
    assert packed.dtype == torch.int32 and packed.shape == (4, 3)
    for r in range(4):
        for c in range(70):
            word = int(packed[r, c // 32]) & 0xFFFFFFFF
            assert bool((word >> (c % 32)) & 1) == bool(m[r, c])


def test_errors():
    q, k = torch.ones(2, 3, device=DEVICE), torch.ones(4, 3, device=DEVICE)
    with pytest.raises(ValueError, match="must share d and dtype"):
        ops.dot_logsumexp(q, torch.ones(4, 2, device=DEVICE))
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        ops.dot_logsumexp(q, k, 0.0)
    with pytest.raises(ValueError, match="give both query_mask and key_mask"):
        ops.dot_logsumexp(q, k, query_mask=torch.ones(2, 3, device=DEVICE))
    with pytest.raises(ValueError, match=r"key_mask must have shape \[4, m\]"):
        ops.dot_logsumexp(
            q,
            k,
            query_mask=torch.ones(2, 3, device=DEVICE),
            key_mask=torch.ones(3, 3, device=DEVICE),
        )
    with pytest.raises(ValueError, match="slack must be an integer >= 0"):
        ops.dot_logsumexp(
            q,
            k,
            query_mask=torch.ones(2, 3, device=DEVICE),
            key_mask=torch.ones(4, 3, device=DEVICE),
            slack=-1,
        )
    if DEVICE.type == "cpu":
        with pytest.raises(ValueError, match=r"keys has non-finite values \(first at \(1, 2\)\)"):
            bad = k.clone()
            bad[1, 2] = float("nan")
            ops.dot_logsumexp(q, bad)


@pytest.mark.parametrize("backend", BACKEND)
def test_no_keys_gives_minus_inf(backend):
    q = rand((3, 4), torch.float32, 17)
    lse = ops.dot_logsumexp(q, torch.zeros(0, 4, device=DEVICE), 1.0, backend=backend)
    assert (lse == float("-inf")).all()


@pytest.mark.skipif(
    ops.availability("cpu")["cpu"] is not None, reason="the cpu backend is not built"
)
@pytest.mark.parametrize("masked", [False, True])
def test_cpu_threads_agree(masked):
    # Several OpenMP threads (worker threads start with grad mode on; inputs require grad), tiles
    # split across them, per-thread dq partial sums: the same results as one thread.
    q = rand((300, 24), torch.float64, 18).cpu().requires_grad_()
    k = rand((1100, 24), torch.float64, 19).cpu().requires_grad_()
    kw = dict(query_mask=(q > 0).detach(), key_mask=(k > 0).detach(), slack=8) if masked else {}
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            q.grad = k.grad = None
            lse = ops.dot_logsumexp(q, k, 0.5, backend="cpu", **kw)
            lse.sum().backward()
            results.append((lse.detach(), q.grad.clone(), k.grad.clone()))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        results[0][0],
        dense_truth(q, k, 0.5, *((kw["query_mask"], kw["key_mask"], 8) if masked else ())),
        rtol=1e-10,
        atol=1e-10,
    )
