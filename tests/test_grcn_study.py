"""The GRCN study's issue-23 rows (bench/studies/grcn_experiments.py): the shape
bench/reproduce.py reads, mean/std over seeds, the targets' status, one folder per ablation.

``bench`` is not installed: it is imported from the checkout (appended to sys.path, after
site-packages, so fastgcn_denoise stays the package under test).
"""

import statistics
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.studies.grcn_experiments import (  # noqa: E402
    ABLATIONS,
    _slug,
    reproduction_rows,
)

REQUIRED = (
    "method",
    "data",
    "metric",
    "ours",
    "ours_std",
    "seeds",
    "epochs",
    "baseline",
    "baseline_value",
    "paper",
    "command",
)


def fake_run(model, seed, test, pop=0.064):
    return {
        "model": model,
        "seed": seed,
        "best_epoch": 10 + seed,
        "epochs_run": 20 + seed,
        "test": {"recall@20": test},
        "baselines": {"most_popular": {"test": {"recall@20": pop}}},
    }


@pytest.mark.parametrize(
    "grcn, status",
    [((0.097, 0.099), "met"), ((0.090, 0.092), "missed"), ((0.050, 0.052), "missed")],
)
def test_reproduction_rows(grcn, status):
    lightgcn = (0.095, 0.096)
    runs = [fake_run("lightgcn", s, v) for s, v in enumerate(lightgcn)]
    runs += [fake_run("grcn", s, v) for s, v in enumerate(grcn)]
    rows = {r["method"]: r for r in reproduction_rows(runs, [0, 1], 0.0964)}
    assert set(rows) == {"grcn", "lightgcn", "most-popular"}
    for row in rows.values():
        assert all(k in row for k in REQUIRED), sorted(set(REQUIRED) - set(row))
        assert row["data"] == "tiktok" and row["metric"] == "recall@20"
        assert "reproduce --seeds 0 1 --resume" in row["command"]
    g = rows["grcn"]
    assert g["ours"] == pytest.approx(statistics.fmean(grcn))
    assert g["ours_std"] == pytest.approx(statistics.stdev(grcn))
    assert (g["seeds"], g["epochs"], g["selected_epochs"]) == (2, 21, [10, 11])
    assert g["lightgcn"] == pytest.approx(statistics.fmean(lightgcn))
    assert (g["baseline"], g["baseline_value"], g["status"]) == ("most-popular", 0.064, status)
    assert rows["most-popular"]["ours"] == 0.064 and rows["lightgcn"]["status"] == "met"


def test_no_rows_until_both_models_ran():
    assert reproduction_rows([fake_run("lightgcn", 0, 0.09)], [0], 0.0964) == []


def test_each_ablation_has_its_own_run_folder():
    slugs = [_slug(v) for v in ABLATIONS]
    assert len(set(slugs)) == len(slugs) and "default" in slugs
