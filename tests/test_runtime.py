"""The command line's OpenMP default (issue 10 item 16): OMP_WAIT_POLICY=PASSIVE unless the user
set it, in effect before torch loads OpenMP (GNU OpenMP reports what it started with under
OMP_DISPLAY_ENV=VERBOSE; an unset policy also prints as 'PASSIVE', so the spin count tells)."""

import os
import subprocess
import sys

import pytest

from fastgcn_denoise import _runtime

ENTRY_POINTS = {
    "python -m fastgcn_denoise": [sys.executable, "-m", "fastgcn_denoise", "info"],
    # What the fastgcn-denoise console script runs.
    "fastgcn-denoise": [
        sys.executable,
        "-c",
        "import sys; from fastgcn_denoise.cli import main; sys.exit(main(['info']))",
    ],
}


def test_configure_fills_only_unset_variables():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert _runtime.configure(env) == {} and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"OMP_WAIT_POLICY": ""}
    assert _runtime.configure(env) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_importing_the_cli_does_not_load_torch():
    code = "import sys, fastgcn_denoise.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("user_value", [None, "ACTIVE"])
def test_openmp_starts_with_the_policy(entry, user_value):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.pop("GOMP_SPINCOUNT", None)
    env["OMP_DISPLAY_ENV"] = "VERBOSE"  # OpenMP prints the settings it started with, on stderr
    if user_value:
        env["OMP_WAIT_POLICY"] = user_value
    run = subprocess.run(ENTRY_POINTS[entry], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    if "GOMP_SPINCOUNT = " not in run.stderr:
        pytest.skip("the OpenMP runtime is not GNU OpenMP (no GOMP_SPINCOUNT in OMP_DISPLAY_ENV)")
    if user_value:
        assert f"OMP_WAIT_POLICY = '{user_value}'" in run.stderr
        assert "GOMP_SPINCOUNT = '0'" not in run.stderr
    else:  # passive: threads sleep at once instead of spinning 300,000 rounds
        assert "GOMP_SPINCOUNT = '0'" in run.stderr
