"""The noise benchmark (bench/denoise/): its scoring, the real-data subsample, and a quick run.

``bench`` is not installed: it is imported from the checkout (appended to sys.path, after
site-packages, so fastgcn_denoise stays the package under test).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.denoise.cli import main, parse_args  # noqa: E402
from bench.denoise.run import score_report  # noqa: E402
from bench.denoise.settings import subsample  # noqa: E402
from fastgcn_denoise import BipartiteGraph  # noqa: E402
from fastgcn_denoise.data import InteractionData  # noqa: E402
from fastgcn_denoise.denoisers.knn import item_knn_scores  # noqa: E402
from fastgcn_denoise.pipelines.denoise import roc_auc  # noqa: E402


def test_score_report():
    keep = np.array([[0.9, 0.2, 0.8, 0.1, 0.6, 0.4], [0.9, 0.6, 0.8, 0.1, 0.3, 0.4]])
    types = np.array([0, 1, 0, 2, 1, 0], dtype=np.int8)  # clean, popularity, uniform
    rep = score_report(keep, types, "popularity", threshold=0.5)
    mean = keep.mean(0)
    clean = types == 0
    for name, code in (("popularity", 1), ("uniform", 2)):
        sel = clean | (types == code)
        assert rep["auc"][name] == roc_auc(-mean[sel], (types == code)[sel])
    # dropped: <= 0.5 in both layers -> edges 3 (uniform) and 5 (clean)
    assert rep["dropped"] == 2 and rep["dropped_precision"] == 0.5
    assert rep["dropped_recall"] == pytest.approx(1 / 3)
    # the 3 lowest means (3 noisy pairs): edges 3, 1 (0.4), 5 (0.4, earlier than 4 at 0.45)
    assert rep["precision_at_noise_rate"] == pytest.approx(2 / 3)
    assert "auc" not in score_report(keep, None, "uniform", 0.5)


def test_item_knn_scores_leave_the_user_out():
    rng = np.random.default_rng(0)
    mask = rng.random((12, 9)) < 0.45
    users, items = np.nonzero(mask)
    g = BipartiteGraph(users, items, 12, 9)
    got = item_knn_scores(g).numpy()
    r = mask.astype(float)
    u_e, i_e = (t.numpy() for t in g.edges())
    for e in range(g.num_edges):
        u, i = u_e[e], i_e[e]
        others = [j for j in np.nonzero(mask[u])[0] if j != i]
        rest = np.delete(r, u, axis=0)  # the user itself is left out of the co-occurrences
        sims = [
            rest[:, i] @ rest[:, j] / np.sqrt(rest[:, i].sum() * rest[:, j].sum())
            if rest[:, i].sum() and rest[:, j].sum()
            else 0.0
            for j in others
        ]
        want = np.mean(sims) if others else 0.0
        assert got[e] == pytest.approx(want, abs=1e-9)


def test_subsample():
    rng = np.random.default_rng(1)
    u = rng.integers(0, 50, 600)
    i = rng.integers(0, 30, 600)
    keys = np.unique(u * 30 + i)
    u, i = keys // 30, keys % 30
    test = rng.random(u.shape[0]) < 0.2
    d = InteractionData("x", 50, 30, (u[~test], i[~test]), (u[test], i[test]))
    s = subsample(d, users=20, min_item=3, seed=0)
    assert s.num_users <= 20 and s.num_items <= 30
    assert np.bincount(s.train[1], minlength=s.num_items).min() >= 3
    assert np.bincount(s.train[0], minlength=s.num_users).min() >= 2
    assert s.train[0].max() < s.num_users and s.test[1].max() < s.num_items
    again = subsample(d, users=20, min_item=3, seed=0)
    assert np.array_equal(again.train[0], s.train[0]) and np.array_equal(again.test[1], s.test[1])


def test_quick_run(tmp_path, capsys):
    argv = [
        "--quick",
        "--types",
        "uniform",
        "--denoisers",
        "lightgcn",
        "oracle",
        "mask",
        "item-knn",
        "spectral",
        "--runs",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "out"),
        "--threads",
        "1",
        "--set",
        "mask_warmup=1",
    ]
    assert main(argv) == 0
    payload = json.loads((tmp_path / "out" / "denoise_synthetic_quick.json").read_text())
    rows = {r["denoiser"]: r for r in payload["rows"]}
    assert set(rows) == {
        "generator",
        "known items",
        "lightgcn",
        "oracle",
        "mask",
        "item-knn",
        "spectral",
    }
    assert rows["generator"]["auc"]["mean"] > 0.8  # the likelihood-ratio ceiling
    assert 0.6 < rows["known items"]["auc"]["mean"] < rows["generator"]["auc"]["mean"]
    for name in ("item-knn", "spectral"):
        assert rows[name]["auc"]["mean"] > 0.6 and rows[name]["recall@20"] is None
    assert rows["lightgcn"]["auc"] is None and rows["lightgcn"]["score_auc"]["mean"] > 0.5
    for name in ("lightgcn", "oracle", "mask"):
        assert 0 < rows[name]["recall@20"]["mean"] < 1
    mask = next(r for r in payload["runs"] if r["denoiser"] == "mask")
    assert 0.0 <= mask["auc"]["uniform"] <= 1.0 and abs(mask["keep_mean"] - 0.85) < 1e-3
    assert (tmp_path / "out" / "denoise_synthetic_quick.png").exists()
    assert "| uniform | 0.2 | mask |" in payload["table"]
    # a second run reuses the finished runs' records
    capsys.readouterr()
    assert main(argv) == 0
    again = json.loads((tmp_path / "out" / "denoise_synthetic_quick.json").read_text())
    assert again["rows"] == payload["rows"]
    assert "running again" not in capsys.readouterr().out
    # a record made for other data (another subsample, schedule) is not reused
    record = tmp_path / "runs" / "uniform-0.2-s0" / "lightgcn" / "record.json"
    assert record.exists(), sorted(p.name for p in (tmp_path / "runs").iterdir())
    stale = json.loads(record.read_text())
    record.write_text(json.dumps(dict(stale, run_key="another data set")))
    assert main(argv) == 0
    assert "cached for other data or epochs; running again" in capsys.readouterr().out
    assert json.loads(record.read_text())["run_key"] == stale["run_key"]


def test_bad_arguments():
    with pytest.raises(SystemExit):
        parse_args(["--data", "gowalla", "--types", "near_topic"])
    with pytest.raises(SystemExit):
        parse_args(["--set", "novalue"])
