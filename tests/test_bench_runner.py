"""End to end: ``python -m bench --quick`` on a tiny graph writes the suite's JSON, and every case
of ours in it was timed next to its peer.

The suite lives in bench/ at the repository root, outside the installed package: the root is
appended to sys.path (after site-packages, so fastgcn_denoise stays the package under test).
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if not (ROOT / "bench" / "suite.py").is_file():
    pytest.skip(
        f"no benchmark suite at {ROOT / 'bench'} (tests run outside the repository)",
        allow_module_level=True,
    )


def test_quick_run_writes_paired_cases(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "path", [*sys.path, str(ROOT)])
    from bench.suite import DEFAULT_OPS, main

    assert main(["--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench_cpu.json").read_text())
    for key in (
        "device",
        "commit",
        "date",
        "versions",
        "backends",
        "copy_bandwidth_gbps",
        "graphs",
        "cases",
    ):
        assert key in data, key
    assert data["complete"] and data["copy_bandwidth_gbps"] > 0
    cases = data["cases"]
    assert {c["op"] for c in cases} == set(DEFAULT_OPS)  # the model-level ones run when named
    assert [c for c in cases if c.get("error")] == []
    assert all(c["skipped"] for c in cases if "skipped" in c)  # a skip always says why
    names = {(c["op"], c["graph"], c["name"]) for c in cases}
    ours = [c for c in cases if c["peer"] is not None and "skipped" not in c]
    assert {c["op"] for c in ours} == set(DEFAULT_OPS)
    peer_skipped = {(c["op"], c["graph"], c["name"]) for c in cases if "skipped" in c}
    for c in ours:
        assert (c["op"], c["graph"], c["peer"]) in names, c["name"]
        if (c["op"], c["graph"], c["peer"]) in peer_skipped:  # e.g. PyG not installed
            assert "speedup_vs_peer" not in c, c["name"]
            continue
        assert math.isfinite(c["speedup_vs_peer"]) and c["speedup_vs_peer"] > 0, c["name"]
        assert 0 < c["min_ms"] <= c["median_ms"] <= c["max_ms"]
        if "gbps" in c:
            assert c["fraction_of_copy_bandwidth"] > 0
    out = capsys.readouterr().out
    assert "| op | graph | threads | case |" in out and "wrote" in out


def test_quick_run_never_writes_the_committed_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "path", [*sys.path, str(ROOT)])
    import bench.suite as runner
    from bench.common import RESULTS

    before = {p.name: p.stat().st_mtime_ns for p in RESULTS.iterdir()} if RESULTS.is_dir() else {}
    assert runner.main(["--quick", "--ops", "eval", "--out", str(RESULTS)]) == 2
    assert "not written to bench/results" in capsys.readouterr().err
    monkeypatch.setattr(runner, "QUICK_OUT", tmp_path / "quick")
    assert runner.main(["--quick", "--ops", "eval", "--device", "cpu"]) == 0
    assert (tmp_path / "quick" / "bench_eval_cpu.json").is_file()
    after = {p.name: p.stat().st_mtime_ns for p in RESULTS.iterdir()} if RESULTS.is_dir() else {}
    assert after == before


def test_every_case_at_each_thread_count(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [*sys.path, str(ROOT)])
    import torch

    from bench.suite import main

    threads = torch.get_num_threads()
    assert main(["--quick", "--ops", "eval", "--threads", "1", "2", "--out", str(tmp_path)]) == 0
    assert torch.get_num_threads() == threads  # restored
    data = json.loads((tmp_path / "bench_eval_cpu.json").read_text())
    assert data["threads"] == [1, 2] and set(data["copy_bandwidth_gbps_by_threads"]) == {"1", "2"}
    ours = [c for c in data["cases"] if c["peer"] is not None]
    assert {c["threads"] for c in ours} == {1, 2}
    assert all(c["speedup_vs_peer"] > 0 for c in ours)
    assert data["package"]["extension"] and data["loadavg"] is not None


def test_a_subject_that_cannot_run_fails_loudly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "path", [*sys.path, str(ROOT)])
    import bench.suite as runner
    from bench.common import Bench
    from fastgcn_denoise import ops

    class Unrunnable:  # ours cannot run here; only the peer is timed
        @staticmethod
        def benches(device, graph, dims, quick):
            return [
                Bench("ours", "g", peer="peer", skipped="no kernel here"),
                Bench("peer", "g", fn=lambda: None),
            ]

    monkeypatch.setitem(runner.OPS, "eval", Unrunnable)
    assert runner.main(["--quick", "--ops", "eval", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "none of its own cases ran: no kernel here" in err
    # The backend the suite measures is missing (a source tree without its extension): no run.
    real = ops.availability
    monkeypatch.setattr(
        ops,
        "availability",
        lambda device="cpu": {
            **real(device),
            "cpu": "compiled extension fastgcn_denoise._C not importable",
        },
    )
    assert runner.main(["--quick", "--ops", "eval", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "the cpu backend, which the benchmarks measure on cpu, cannot run" in err
    assert "fastgcn_denoise was imported from" in err and not (tmp_path / "x").exists()


def test_run_from_the_root_measures_the_installed_package(tmp_path):
    # A checkout whose source tree has no compiled extension, beside an installed package that
    # has one: `python -m bench` from the checkout must measure the installed one.
    import fastgcn_denoise
    import fastgcn_denoise.kernels
    from fastgcn_denoise.ops._backend import _load_extension

    if _load_extension()[0] is None:
        pytest.skip("needs the compiled extension (fastgcn_denoise._C)")
    pkg = Path(fastgcn_denoise.__file__).parent
    skip = shutil.ignore_patterns("__pycache__", "results")
    repo, site = tmp_path / "repo", tmp_path / "site"
    shutil.copytree(ROOT / "bench", repo / "bench", ignore=skip)
    shutil.copytree(
        pkg, repo / "fastgcn_denoise", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    shutil.copytree(pkg, site / "fastgcn_denoise", ignore=skip)
    shutil.copytree(
        Path(fastgcn_denoise.kernels.__file__).parent,
        site / "fastgcn_denoise" / "kernels",
        ignore=skip,
        dirs_exist_ok=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--ops",
            "eval",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    data = json.loads((tmp_path / "out" / "bench_eval_cpu.json").read_text())
    assert data["package"]["path"] == str((site / "fastgcn_denoise").resolve())
    assert data["package"]["extension"]


def test_plot_labels_are_never_clipped(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [*sys.path, str(ROOT)])
    pytest.importorskip("matplotlib")
    import numpy as np
    from PIL import Image

    from bench.common import plot

    # The sgcn_step suite's labels: the longest ran off the left edge of the saved PNG.
    cases = [
        {
            "op": "sgcn_step",
            "graph": g,
            "name": f"S-LightGCN step{a} d={d}",
            "peer": f"LightGCN step d={d}",
            "speedup_vs_peer": 0.5 + 0.01 * d,
        }
        for g in ("synth-1e5", "gowalla", "synth-1e6")
        for d in (32, 64, 128)
        for a in ("", " amortised")
    ]
    path = plot(cases, tmp_path / "p.png", "bench_sgcn_step_cpu: AMD EPYC (2 cores)")
    ink = np.asarray(Image.open(path).convert("L")) < 200
    cols, rows = np.flatnonzero(ink.any(axis=0)), np.flatnonzero(ink.any(axis=1))
    margin = 5  # pixels of white around everything drawn
    assert cols[0] >= margin and cols[-1] < ink.shape[1] - margin, (cols[0], cols[-1])
    assert rows[0] >= margin and rows[-1] < ink.shape[0] - margin


def test_bench_has_no_import_cycles(monkeypatch):
    # The runner registers the op modules; nothing imports back from it or from a __main__.
    monkeypatch.setattr(sys, "path", [*sys.path, str(ROOT)])
    grimp = pytest.importorskip("grimp")
    from test_architecture import strongly_connected

    graph = grimp.build_graph("bench", cache_dir=None)
    assert {"bench.suite", "bench.ops.masked_spmm", "bench.denoise.cli"} <= graph.modules
    assert strongly_connected(graph) == []
    for entry in ("bench.__main__", "bench.denoise.__main__"):
        assert graph.find_modules_that_directly_import(entry) == set(), entry


def test_bench_holds_the_suite_its_harnesses_helpers_and_studies():
    top = {
        p.name
        for p in (ROOT / "bench").iterdir()
        if p.name != "__pycache__" and not p.name.startswith(".")
    }  # caches of tools
    assert top <= {
        "__init__.py",
        "__main__.py",
        "suite.py",
        "speed.py",
        "denoise",
        "denoise_scoreboard.py",
        "reproduce.py",
        "distributed.py",
        "common.py",
        "conftest.py",
        "gpu_suite.sh",
        "gpu_prediction.md",
        "ops",
        "studies",
        "results",
    }, sorted(top)
    # Every study names the question it answered and the result file that records the answer.
    studies = sorted((ROOT / "bench" / "studies").glob("[!_]*.*"))
    assert studies
    for path in studies:
        text = path.read_text()
        study = re.search(r"Study: .+?Answer:\s+(.+?\.)(?:\s|$)", text, re.S)
        assert study, f"{path}: no 'Study: ... Answer: ...' line in its docstring"
        answers = re.findall(r"[\w/]+\.json", study.group(1))
        assert answers, f"{path}: its Study line names no result file"
        for name in answers:
            assert (ROOT / "bench" / "results" / Path(name).name).is_file(), f"{path}: {name}"
