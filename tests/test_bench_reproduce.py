"""bench/reproduce.py, the reproduction table of issue 23: its collector on fake run folders and
result files (no training)."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if not (ROOT / "bench" / "reproduce.py").is_file():
    pytest.skip(f"no bench/reproduce.py under {ROOT}", allow_module_level=True)

SHAPE = {
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
}


@pytest.fixture
def reproduce(monkeypatch):
    monkeypatch.setattr(sys, "path", [*sys.path, str(ROOT)])
    from bench import reproduce

    return reproduce


def finished(folder: Path, recall: float, epochs: int = 40, popular: float = 0.02):
    folder.mkdir(parents=True)
    metrics = {
        "test": {"recall@20": recall},
        "epochs_run": epochs,
        "baselines": {"most_popular": {"test": {"recall@20": popular}}},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))


def started(folder: Path, epoch: int):
    folder.mkdir(parents=True)
    lines = [
        json.dumps(
            {"epoch": e, "loss": 1.0, **({"valid": {"recall@20": e / 100}} if e == 2 else {})}
        )
        for e in range(1, epoch + 1)
    ]
    (folder / "log.jsonl").write_text("\n".join(lines) + "\n")


def by_method(rows, data="yelp_lightgnn"):
    return {r["method"]: r for r in rows if r["data"] == data}


@pytest.mark.parametrize(
    ("dgr", "status"),
    [((0.113, 0.1346), "met"), ((0.11, 0.12), "missed")],  # +3.0 % / -4.3 % over 0.1 / 0.13
)
def test_yelp_rows_from_run_folders(tmp_path, reproduce, dgr, status):
    runs, results = tmp_path / "runs", tmp_path / "results"
    results.mkdir()
    finished(runs / "lightgcn" / "seed0", 0.10, epochs=120, popular=0.02)
    finished(runs / "lightgcn" / "seed1", 0.13, epochs=90, popular=0.04)
    finished(runs / "lightgcn" / "seed2", 0.50)  # a seed the DGR row lacks: not in its bar
    finished(runs / "lightgcn+dgr" / "seed0", dgr[0])
    finished(runs / "lightgcn+dgr" / "seed1", dgr[1], epochs=75)
    started(runs / "simgcl" / "seed0", 3)
    rows = by_method(reproduce.collect(runs, results))

    light = rows["lightgcn"]
    assert light["ours"] == pytest.approx((0.10 + 0.13 + 0.50) / 3)
    assert light["seeds"] == 3 and light["epochs"] == 120 and light["status"] == "reported"
    assert rows["most-popular"]["ours"] == pytest.approx((0.02 + 0.04 + 0.02) / 3)
    d = rows["lightgcn+dgr"]
    assert d["ours"] == pytest.approx(sum(dgr) / 2)
    assert d["ours_std"] == pytest.approx(abs(dgr[0] - dgr[1]) / 2**0.5)
    assert d["baseline_value"] == pytest.approx(0.115)  # seeds 0 and 1 only
    assert d["seeds"] == 2 and d["epochs"] == 75 and d["status"] == status
    assert "--model lightgcn --dgr" in d["command"] and "--seed $s" in d["command"]
    assert (
        rows["simgcl"]["ours"] is None
        and rows["simgcl"]["status"] == "running (epoch 3, best valid 0.0200)"
    )
    for name in ("xsimgcl", "s-lightgcn", "simgcl+dgr", "lightgnn-student"):
        assert rows[name]["ours"] is None and rows[name]["status"] == "not run", name


def test_other_studies_rows_are_taken_and_missing_ones_kept(tmp_path, reproduce):
    results = tmp_path / "results"
    results.mkdir()
    l0 = {
        **dict.fromkeys(SHAPE),
        "method": "l0-sign",
        "data": "dblp",
        "metric": "auc",
        "ours": 0.985,
        "ours_std": 0.001,
        "seeds": 5,
        "epochs": 50,
        "baseline": "naive-bayes",
        "baseline_value": 0.978,
        "paper": 0.9836,
        "command": "python -m x",
    }
    (results / "reproduction_l0sign.json").write_text(json.dumps({"rows": [l0]}))
    rows = reproduce.collect(tmp_path / "none", results)

    got = by_method(rows, "dblp")
    assert got["l0-sign"]["ours"] == 0.985 and got["l0-sign"]["status"] == "met"
    assert got["sign"]["status"] == "not run" and got["sign"]["metric"] == "auc"
    assert by_method(rows, "tiktok")["grcn"]["status"] == "not run"
    assert all(SHAPE <= set(r) for r in rows)  # every row, run or not, has the issue's fields

    # above the paper but below one of its baselines: missed (issue 23: never below either)
    for lr, status in ((0.986, "missed"), (0.984, "met")):
        baselines = {"naive-bayes": 0.978, "logistic-regression": lr}
        (results / "reproduction_l0sign.json").write_text(
            json.dumps({"rows": [{**l0, "baselines": baselines}]})
        )
        got = by_method(reproduce.collect(tmp_path / "none", results), "dblp")["l0-sign"]
        assert got["status"] == status
        assert got["target"] == "paper and logistic-regression and naive-bayes"

    del l0["baseline_value"]
    (results / "reproduction_l0sign.json").write_text(json.dumps({"rows": [l0]}))
    with pytest.raises(
        ValueError, match=r"reproduction_l0sign.json: rows\[0\] has no baseline_value"
    ):
        reproduce.collect(tmp_path / "none", results)


def test_main_writes_the_issue_shape(tmp_path, reproduce, capsys, monkeypatch):
    runs = tmp_path / "runs"
    finished(runs / "lightgcn" / "seed0", 0.08)
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")  # no other study's files
    (tmp_path / "results").mkdir()
    assert reproduce.main(["--runs", str(runs), "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "reproduction.json").read_text())
    assert set(doc) == {"environment", "rows"} and doc["environment"]["commit"]
    assert {r["metric"] for r in doc["rows"]} == {"recall@20", "auc"}
    out = capsys.readouterr().out
    assert "not run" in out and "0.0800" in out


def test_run_trains_each_seed_once_resuming_a_started_one(tmp_path, reproduce, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduce.subprocess, "run", lambda argv, **kw: calls.append(argv))
    runs = tmp_path / "runs"
    finished(runs / "lightgcn+dgr" / "seed0", 0.08)  # done: skipped
    (runs / "lightgcn+dgr" / "seed1").mkdir(parents=True)
    (runs / "lightgcn+dgr" / "seed1" / "checkpoint.pt").write_bytes(b"")  # started: resumed
    reproduce.run_row("lightgcn+dgr", runs, device="cuda")
    assert [a[a.index("--seed") + 1] for a in calls] == ["1", "2"]
    assert all(a[a.index("--device") + 1] == "cuda" for a in calls)
    first = " ".join(calls[0])
    assert "-m fastgcn_denoise train" in first and "--model lightgcn --dgr" in first
    assert f"--out {runs}/lightgcn+dgr/seed1" in first and first.endswith("--resume")
    assert "--resume" not in calls[1]
    with pytest.raises(SystemExit, match="--run nope: no row with a command"):
        reproduce.run_row("nope", runs)
