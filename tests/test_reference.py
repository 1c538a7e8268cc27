"""The reference backend's Philox: known-answer values and bit-equality with Triton's tl.rand."""

import pytest
import torch

from fastgcn_denoise.ops import reference


@pytest.mark.parametrize(
    "counter, key, expected",
    [
        # Known-answer vectors of Philox4x32-10 (Salmon et al., SC'11 / Random123).
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox_known_answers(counter, key, expected):
    words = reference.philox4x32(*[torch.tensor([c]) for c in counter], *key)
    assert tuple(int(w) for w in words) == expected


def test_uniform_golden_values():
    # tl.rand(0, [0, 1, 2]) as printed by Triton 3.9 (interpreter), frozen here.
    u = reference.philox_uniform(0, torch.arange(3))
    assert u.dtype == torch.float32
    assert u.tolist() == [0.7980929017066956, 0.055517591536045074, 0.03889884054660797]


def test_uniform_range_and_moments():
    u = reference.edge_uniforms(7, 2**33 + 5, 200_000)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert abs(float(u.double().mean()) - 0.5) < 5 * (1 / 12 / 200_000) ** 0.5
    assert abs(float(u.double().var()) - 1 / 12) < 2e-3


def test_matches_triton_rand_bit_for_bit():
    triton = pytest.importorskip("triton", reason="triton not installed")
    import triton.language as tl

    if not torch.cuda.is_available() and __import__("os").environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU and TRITON_INTERPRET is not 1")
    device = "cuda" if torch.cuda.is_available() else "cpu"

    @triton.jit
    def rand_kernel(out_ptr, seed, offset, n, BLOCK: tl.constexpr):
        idx = tl.arange(0, BLOCK)
        tl.store(out_ptr + idx, tl.rand(seed, idx.to(tl.int64) + offset), mask=idx < n)

    for seed, offset in [(0, 0), (12345, 2**32 - 5), (2**40 + 7, 3 * 2**33 + 11)]:
        out = torch.empty(64, device=device)
        rand_kernel[(1,)](out, seed, offset, 64, BLOCK=64)
        assert torch.equal(out.cpu(), reference.philox_uniform(seed, torch.arange(64) + offset))
