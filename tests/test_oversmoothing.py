"""Row-diff and MAD against brute-force pair loops."""

import torch

from fastgcn_denoise.tasks.oversmoothing import mad, row_diff, smoothness_metrics


def brute_row_diff(x):
    n = x.shape[0]
    return sum(float((x[i] - x[j]).norm()) for i in range(n) for j in range(n)) / n**2


def brute_mad(x):
    rows = [r for r in x if r.norm() > 0]
    n = len(rows)
    total = sum(
        1 - float(torch.nn.functional.cosine_similarity(rows[i], rows[j], dim=0))
        for i in range(n)
        for j in range(n)
        if i != j
    )
    return total / (n * (n - 1))


def test_exact_values():
    torch.manual_seed(0)
    x = torch.randn(23, 5, dtype=torch.float64)
    x[4] = 0.0  # a zero row: counted by row_diff, left out of MAD
    got = row_diff(x, sample=100)
    assert got["row_diff_se"] == 0.0 and got["row_diff_rows"] == 23
    assert abs(got["row_diff"] - brute_row_diff(x)) < 1e-12
    assert abs(mad(x) - brute_mad(x)) < 1e-12
    both = smoothness_metrics(x[:10], x[10:], sample=100)
    assert abs(both["row_diff"] - got["row_diff"]) < 1e-12 and abs(both["mad"] - mad(x)) < 1e-12


def test_sampled_row_diff_is_close_and_collapse_is_zero():
    torch.manual_seed(1)
    x = torch.randn(3000, 8, dtype=torch.float64) * torch.rand(3000, 1, dtype=torch.float64)
    exact = row_diff(x, sample=3000)["row_diff"]
    est = row_diff(x, sample=600, seed=3)
    assert est["row_diff_rows"] == 600 and est["row_diff_se"] > 0
    assert abs(est["row_diff"] - exact) < 4 * est["row_diff_se"]
    same = torch.ones(50, 4)  # fully over-smoothed: every row equal
    assert row_diff(same)["row_diff"] == 0.0 and abs(mad(same)) < 1e-12
