"""ops.row_standardised_sddmm (the mask heads' score feature) on every backend present."""

import pytest
import torch
from conftest import DEVICE, backend_params, random_graph

from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.ops import row_standardised_sddmm
from fastgcn_denoise.ops.row_standardised_sddmm import reference

BACKEND = backend_params()


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 5, 64])
def test_matches_the_per_user_definition(backend, dtype, k):
    g = random_graph(17, 13, 0.35, seed=k)  # the last user has no edges
    gen = torch.Generator().manual_seed(k)
    a = torch.randn(17, k, generator=gen, dtype=torch.float64).to(DEVICE, dtype)
    b = torch.randn(13, k, generator=gen, dtype=torch.float64).to(DEVICE, dtype)
    out = row_standardised_sddmm(g, a, b, backend=backend)
    assert out.shape == (g.num_edges,) and out.dtype == dtype
    users, items = g.edges()
    raw = (a[users].double() * b[items].double()).sum(1)
    # float64: the reference's segment sums are differences of one prefix sum (~1e-10 absolute)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-8, rtol=1e-8)
    for u in range(g.num_users):
        mine = users == u
        if mine.sum() == 0:
            continue
        x = raw[mine]
        want = (x - x.mean()) / x.std(unbiased=False).clamp_min(1e-6)
        torch.testing.assert_close(out[mine].double(), want, **tol)
    torch.testing.assert_close(out, reference(g, a, b), **tol)


@pytest.mark.parametrize("backend", BACKEND)
def test_single_and_equal_scores_give_zero(backend):
    # user 0: one edge; user 1: two edges with equal scores (std 0 -> clamped, centred 0)
    g = BipartiteGraph([0, 1, 1], [0, 1, 2], 2, 3).to(DEVICE)
    a = torch.ones(2, 3, device=DEVICE)
    b = torch.ones(3, 3, device=DEVICE)
    assert torch.equal(
        row_standardised_sddmm(g, a, b, backend=backend), torch.zeros(3, device=DEVICE)
    )


def test_rejects_mismatched_inputs():
    g = random_graph(5, 4, 0.5)
    with pytest.raises(ValueError, match="num_users"):
        row_standardised_sddmm(
            g, torch.randn(4, 3, device=DEVICE), torch.randn(4, 3, device=DEVICE)
        )
    with pytest.raises(ValueError, match="share k"):
        row_standardised_sddmm(
            g,
            torch.randn(5, 3, device=DEVICE),
            torch.randn(4, 2, device=DEVICE),
            backend="reference",
        )
