"""The command line's process defaults. OpenMP (issue 10 item 16): OMP_WAIT_POLICY=PASSIVE unless
the user set it, in effect before torch loads OpenMP (GNU OpenMP reports what it started with under
OMP_DISPLAY_ENV=VERBOSE; an unset policy also prints as 'PASSIVE', so the spin count tells). The
heap (issue 24): glibc's top pad, so that a step's freed temporaries are not faulted in again."""

import os
import platform
import subprocess
import sys
from pathlib import Path

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


GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
PAD = {"malloc_top_pad": _runtime.HEAP_TOP_PAD} if GLIBC else {}


def test_configure_fills_only_unset_variables():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert _runtime.configure(env) == PAD and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"OMP_WAIT_POLICY": ""}
    assert _runtime.configure(env) == {"OMP_WAIT_POLICY": "PASSIVE", **PAD}
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_TOP_PAD_": "0"},
        {"MALLOC_TRIM_THRESHOLD_": "1"},
        {"GLIBC_TUNABLES": "glibc.malloc.top_pad=0"},
    ],
)
def test_a_malloc_setting_of_the_users_wins(env):
    assert _runtime.keep_heap(env) is False
    assert "malloc_top_pad" not in _runtime.configure({"OMP_WAIT_POLICY": "x", **env})


# Twelve rounds of a step's pattern: a 64 MiB tensor (16,384 pages), another from it, both freed;
# prints the minor page faults of each round. argv[1] == "pad": with the heap top pad first.
_FAULTS = """
import resource, sys
from fastgcn_denoise import _runtime
if sys.argv[1] == "pad":
    assert _runtime.keep_heap({})
import torch
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 << 20)
    y = x * 2
    del x, y
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


def _faults(mode: str) -> list[int]:
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return [int(x) for x in run.stdout.split()]


@pytest.mark.skipif(not GLIBC, reason="the heap top pad is a glibc setting (mallopt M_TOP_PAD)")
def test_the_heap_pad_stops_refaulting_freed_temporaries():
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    padded, plain = _faults("pad"), _faults("plain")
    # with the pad the tensors settle in the heap within a few rounds (4 here), then nothing is
    # faulted again; without it each round maps both anew
    assert max(padded[-3:]) <= 0.05 * pages, padded
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists() and "[always]" not in thp.read_text():  # 4 KiB pages: each round refaults
        assert min(plain[-3:]) >= pages, plain


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
