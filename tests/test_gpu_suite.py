"""bench/gpu_suite.sh --dry-run: every step that needs no GPU, on the CPU, so that a typo, a
missing file or an unknown op name fails here and not in a GPU window."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "bench" / "gpu_suite.sh"
if not SUITE.is_file():
    pytest.skip(f"no {SUITE} (tests run outside the repository)", allow_module_level=True)


def test_dry_run_passes_every_step(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHON=sys.executable, PARALLEL="2", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["bash", str(SUITE), str(tmp_path), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    steps = (tmp_path / "steps.txt").read_text().split("\n")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert [s.split()[0] for s in steps if s] == ["install", "smoke", "tests", "bench", "speed"]
    assert all(" rc=0 " in s for s in steps if s), steps
    # The smoke cases resolved, and each test group collected something.
    assert "dot_logsumexp float32 d64" in (tmp_path / "smoke.log").read_text()
    for log in sorted(tmp_path.glob("tests_*.log")):
        assert "collected" in log.read_text() or "tests collected" in log.read_text(), log
