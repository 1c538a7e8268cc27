"""The detection-bounds study (bench/studies/detection_bounds.py): on generated data the
likelihood-ratio ceiling is above the known-items bound, which is above chance, for each noise
type; a data set without exactly one planted type is refused.

``bench`` is not installed: it is imported from the checkout (appended to sys.path, after
site-packages, so fastgcn_denoise stays the package under test).
"""

import sys
from pathlib import Path

import pytest

from fastgcn_denoise.data import make_synthetic

sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.studies.detection_bounds import bounds  # noqa: E402


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
def test_ceiling_above_known_items_above_chance(kind):
    data = make_synthetic(num_users=400, num_items=300, dim=8, noise_ratio=0.2, noise_mix=kind)
    b = bounds(data)
    assert b["noise"] == kind and 0.1 < b["noise_share"] < 0.25
    # the bound that must learn the users' tastes cannot beat the one that knows them
    assert 0.6 < b["known_items"] <= b["ceiling"] + 1e-9 <= 1.0


def test_needs_one_planted_noise_type():
    clean = make_synthetic(num_users=100, num_items=80, dim=4, noise_ratio=0.0)
    with pytest.raises(ValueError, match="one planted noise type"):
        bounds(clean)
