"""How smooth a model's final embeddings are: DGR's row-diff and the mean average distance.

    row_diff(E)  = 1/n² Σ_{i,j} ‖e_i − e_j‖₂          (DGR paper Eq. 14, after Zhao & Akoglu's
                                                     PairNorm; lower = more over-smoothed)
    mad(E)       = mean over pairs i ≠ j of 1 − cos(e_i, e_j)   (Chen et al. AAAI'20, over all
                                                     pairs; 0 when every row points one way)

on the n = U + I rows of the readout (users and items together, as the paper's E). ``mad`` is
exact in O(n d): Σ_{i≠j} cos = ‖Σ_i ê_i‖² − Σ_i ‖ê_i‖² with ê the unit rows (zero rows are left
out). ``row_diff`` has no such closed form: it is exact for n ≤ ``sample`` (pairwise distances
in chunks), otherwise estimated from ``sample`` rows drawn without replacement (seeded): the
mean distance over their distinct pairs times (n − 1)/n, which is unbiased for the n² mean;
its (first-order, approximate) standard error is reported with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_SAMPLE = 4096
_CHUNK = 1024


def _mean_pair_distance(x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(mean of ‖x_i − x_j‖ over pairs i ≠ j, each row's mean distance to the others [n])."""
    n = x.shape[0]
    row_sums = torch.empty(n, dtype=torch.float64, device=x.device)
    for s in range(0, n, _CHUNK):
        row_sums[s : s + _CHUNK] = torch.cdist(x[s : s + _CHUNK], x).sum(1)
    per_row = row_sums / (n - 1)
    return float(per_row.mean()), per_row


@torch.no_grad()
def row_diff(emb: torch.Tensor, sample: int = DEFAULT_SAMPLE, seed: int = 0) -> dict:
    """{"row_diff", "row_diff_se", "row_diff_rows"}: Eq. 14 of [n, d] ``emb`` (module docstring);
    se is 0 when exact, ``rows`` the number of rows it was computed on."""
    x = emb.detach().double()
    n = x.shape[0]
    if n < 2:
        return {"row_diff": 0.0, "row_diff_se": 0.0, "row_diff_rows": n}
    exact = n <= sample
    if not exact:
        gen = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(n, generator=gen)[:sample].to(x.device)]
    mean, per_row = _mean_pair_distance(x)
    scale = (n - 1) / n  # the n² mean counts the n zero self-distances
    m = x.shape[0]
    # A pair mean is a U-statistic of order 2: first-order standard error 2 σ_row / √m, with the
    # finite-population correction of drawing m of n rows without replacement.
    se = 0.0 if exact else 2 * float(per_row.std()) / m**0.5 * (1 - m / n) ** 0.5
    return {"row_diff": mean * scale, "row_diff_se": se * scale, "row_diff_rows": m}


@torch.no_grad()
def mad(emb: torch.Tensor) -> float:
    """Mean cosine distance over all pairs of non-zero rows of ``emb`` [n, d] (exact)."""
    unit = F.normalize(emb.detach().double(), dim=1)
    unit = unit[unit.norm(dim=1) > 0]
    n = unit.shape[0]
    if n < 2:
        return 0.0
    total = unit.sum(0)
    mean_cos = (total @ total - n) / (n * (n - 1))
    return float(1.0 - mean_cos)


def smoothness_metrics(
    user_emb: torch.Tensor, item_emb: torch.Tensor, sample: int = DEFAULT_SAMPLE, seed: int = 0
) -> dict:
    """{"row_diff", "row_diff_se", "mad"} of the users' and items' final embeddings stacked
    ([U + I, d]); row_diff_se is 0 when row_diff is exact (U + I <= ``sample``)."""
    emb = torch.cat([user_emb, item_emb])
    rd = row_diff(emb, sample, seed)
    return {"row_diff": rd["row_diff"], "row_diff_se": rd["row_diff_se"], "mad": mad(emb)}


__all__ = ["row_diff", "mad", "smoothness_metrics", "DEFAULT_SAMPLE"]
