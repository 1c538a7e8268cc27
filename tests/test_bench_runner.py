"""End to end: ``python -m bench --quick`` on a tiny graph writes the suite's JSON, and every case
of ours in it was timed next to its peer.

The suite lives in bench/ at the repository root, outside the installed package: the root is
appended to sys.path (after site-packages, so fastgcn_denoise stays the package under test).
"""
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if not (ROOT / "bench" / "__main__.py").is_file():
    pytest.skip(f"no benchmark suite at {ROOT / 'bench'} (tests run outside the repository)",
                allow_module_level=True)


def test_quick_run_writes_paired_cases(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "path", [*sys.path, str(ROOT)])
    from bench.__main__ import OPS, main

    assert main(["--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench_cpu.json").read_text())
    for key in ("device", "commit", "date", "versions", "backends", "copy_bandwidth_gbps",
                "graphs", "cases"):
        assert key in data, key
    assert data["complete"] and data["copy_bandwidth_gbps"] > 0
    cases = data["cases"]
    assert {c["op"] for c in cases} == set(OPS)
    assert [c for c in cases if c.get("error")] == []
    assert all(c["skipped"] for c in cases if "skipped" in c)  # a skip always says why
    names = {(c["op"], c["graph"], c["name"]) for c in cases}
    ours = [c for c in cases if c["peer"] is not None and "skipped" not in c]
    assert {c["op"] for c in ours} == set(OPS)
    for c in ours:
        assert (c["op"], c["graph"], c["peer"]) in names, c["name"]
        assert math.isfinite(c["speedup_vs_peer"]) and c["speedup_vs_peer"] > 0, c["name"]
        assert 0 < c["min_ms"] <= c["median_ms"] <= c["max_ms"]
        if "gbps" in c:
            assert c["fraction_of_copy_bandwidth"] > 0
    out = capsys.readouterr().out
    assert "| op | graph | case |" in out and "wrote" in out
