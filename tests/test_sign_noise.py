"""ops.sign_noise (SimGCL's Philox noise) on every backend present, against its formula."""

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICE, backend_params

from fastgcn_denoise import ops
from fastgcn_denoise.ops import reference

BACKEND = backend_params(("reference", "cpu", "triton"))


def formula(clean, eps, seed, offsets, prop, nodes):
    n, d = clean.shape
    node = torch.arange(n, device=DEVICE) if nodes is None else nodes
    out = []
    for v, offset in enumerate(offsets):
        # column c: word c % 4 of Philox counter offset + node ceil(d / 4) + c // 4
        counter = offset + node[:, None] * ((d + 3) // 4) + torch.arange(d, device=DEVICE) // 4
        word = torch.arange(d, device=DEVICE) % 4
        u = reference.philox_uniform4(seed, counter).gather(2, word.expand(n, d)[..., None])[..., 0]
        base = torch.zeros_like(clean) if prop is None else prop[v]
        out.append(base + eps * torch.sign(clean + base) * F.normalize(u.to(clean.dtype), dim=1))
    return torch.stack(out)


@pytest.mark.parametrize("backend", BACKEND)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [5, 64, 70])  # under, at and past whole Philox blocks of 32
@pytest.mark.parametrize("with_prop", [False, True])
def test_matches_the_formula(backend, dtype, d, with_prop):
    gen = torch.Generator().manual_seed(d)
    n, offsets, seed = 9, [3, 10_000 + 7], 2**63 + 12345  # a key with the top bit set
    clean = torch.randn(n, d, generator=gen, dtype=torch.float64).to(DEVICE, dtype)
    clean[0, :2] = 0  # sign(0) = 0: no noise there
    prop = torch.randn(2, n, d, generator=gen, dtype=torch.float64).to(DEVICE, dtype)
    prop = prop if with_prop else None
    got = ops.sign_noise(clean, 0.3, seed, offsets, prop=prop, backend=backend)
    want = formula(clean, 0.3, seed, offsets, prop, None)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else {}
    torch.testing.assert_close(got, want, **tol)
    assert not got.requires_grad


@pytest.mark.parametrize("backend", BACKEND)
def test_rows_draw_what_the_whole_layer_draws(backend):
    # A row's uniforms depend on its node id only: the contrast's rows alone equal the full
    # layer's rows (the last layer of SimGCL's deviations).
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(20, 6, generator=gen).to(DEVICE)
    prop = torch.randn(2, 20, 6, generator=gen).to(DEVICE)
    nodes = torch.tensor([19, 3, 3, 0, 7], device=DEVICE)
    full = ops.sign_noise(clean, 0.1, 99, [0, 1000], prop=prop, backend=backend)
    rows = ops.sign_noise(
        clean[nodes], 0.1, 99, [0, 1000], prop=prop[:, nodes], nodes=nodes, backend=backend
    )
    torch.testing.assert_close(rows, full[:, nodes], rtol=0, atol=0)
    norms = (full - prop).norm(dim=2)
    torch.testing.assert_close(norms, torch.full_like(norms, 0.1))


def test_bad_inputs_are_refused():
    clean = torch.zeros(4, 3, device=DEVICE)
    with pytest.raises(ValueError, match=r"prop is \(4, 3\) torch.float32; \[2, 4, 3\]"):
        ops.sign_noise(clean, 0.1, 0, [0, 1], prop=torch.zeros(4, 3, device=DEVICE))
    with pytest.raises(ValueError, match=r"nodes has shape \(3,\), \(4,\) expected"):
        ops.sign_noise(clean, 0.1, 0, [0], nodes=torch.zeros(3, dtype=torch.long, device=DEVICE))
