"""``python -m bench.speed --quick`` on tiny graphs writes the scoreboard in the shape the issue
asks for: {"environment": {..., "loadavg"}, "rows": [{case, threads, ours_ms, peer, peer_ms,
ratio}]}, every case at every thread count, each ratio the peer's median over ours."""

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if not (ROOT / "bench" / "speed.py").is_file():
    pytest.skip(
        f"no {ROOT / 'bench' / 'speed.py'} (tests run outside the repository)",
        allow_module_level=True,
    )

KEYS = ("case", "threads", "ours_ms", "peer", "peer_ms", "ratio")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    sys.path.append(str(ROOT))
    from bench import speed

    out = tmp_path_factory.mktemp("speed")
    assert speed.main(["--quick", "--threads", "1", "2", "--out", str(out)]) == 0
    return speed, json.loads((out / "speed_scoreboard.json").read_text())


def test_the_scoreboard_has_the_issue_shape(board):
    speed, data = board
    assert set(data) == {"environment", "rows"}
    env = data["environment"]
    assert len(env["loadavg"]) == 3 and env["quick"] is True and env["threads"] == [1, 2]
    rows = data["rows"]
    assert {(r["case"], r["threads"]) for r in rows} == {
        (c, t) for c in speed.CASES for t in (1, 2)
    }
    for r in rows:
        assert all(k in r for k in KEYS), r
        if r["peer_ms"] is None:  # a peer that cannot run here says why
            assert r["ratio"] is None and r["skipped"], r
            continue
        assert r["ours_ms"] > 0 and r["peer_ms"] > 0
        assert math.isclose(r["ratio"], r["peer_ms"] / r["ours_ms"])


@pytest.mark.parametrize("case", ["mask_step", "gmp_overhead", "simgcl_step"])
def test_step_rows_compare_against_our_lightgcn_step(board, case):
    _, data = board
    assert {r["peer"] for r in data["rows"] if r["case"] == case} == {"lightgcn_step"}


def test_the_forward_layer_row_has_its_bandwidth_and_the_copy_bandwidth(board):
    _, data = board
    for r in (r for r in data["rows"] if r["case"] == "layer_fwd"):
        assert r["gbps"] > 0 and r["copy_bandwidth_gbps"] > 0
        assert math.isclose(r["fraction_of_copy_bandwidth"], r["gbps"] / r["copy_bandwidth_gbps"])
        assert r["met"] == (r["fraction_of_copy_bandwidth"] >= 0.6)


def test_the_epoch_row_is_scaled_from_the_steps_it_timed(board):
    _, data = board
    for r in (r for r in data["rows"] if r["case"] == "lightgcn_epoch"):
        assert r["unit"] == "epoch" and 0 < r["steps_timed"] <= r["steps_per_epoch"]


def test_quick_results_never_go_to_bench_results(board, capsys):
    speed, _ = board
    assert speed.main(["--quick", "--out", str(ROOT / "bench" / "results")]) == 2
    assert "never go to bench/results" in capsys.readouterr().err


def test_a_partial_run_keeps_the_other_rows(board, tmp_path):
    """--cases re-times its rows; the earlier file's other rows stay, dated by that run."""
    speed, data = board
    (tmp_path / "speed_scoreboard.json").write_text(json.dumps(data))
    assert (
        speed.main(["--quick", "--cases", "layer_fwd", "--threads", "1", "--out", str(tmp_path)])
        == 0
    )
    rows = json.loads((tmp_path / "speed_scoreboard.json").read_text())["rows"]
    assert sorted((r["case"], r["threads"]) for r in rows) == sorted(
        (r["case"], r["threads"]) for r in data["rows"]
    )
    for r in rows:
        fresh = (r["case"], r["threads"]) == ("layer_fwd", 1)
        assert ("measured" in r) != fresh, r
        if not fresh:
            assert r["measured"]["date"] == data["environment"]["date"]
