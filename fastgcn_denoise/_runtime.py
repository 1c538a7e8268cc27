"""Process-wide defaults of the command line, applied before torch (and its OpenMP) loads.

OpenMP reads its settings once, when the runtime library is loaded (with torch), so they are set
in the environment here, first thing in ``cli.main`` and ``python -m fastgcn_denoise``; the
package's ``__init__`` does not import torch, so nothing has loaded it by then. A value the user
set in the environment always wins: only unset variables get a default. Library use (``import
fastgcn_denoise`` in a script) changes nothing.

``OMP_WAIT_POLICY=PASSIVE``: an idle OpenMP thread sleeps at once instead of spinning first
(GNU OpenMP's default spins up to 300,000 rounds). With the default, when another process holds a
core, our threads spin on the cores that process needs, and training slowed 3-4x (issue 10
item 16); ``bench/studies/wait_policy.py`` measures both policies at 1 and 2 threads, on a quiet machine
and beside a busy process (``bench/results/wait_policy_shared_cpu.json``, summarised in the README).
"""

from __future__ import annotations

import os

DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def configure(environ=os.environ) -> dict:
    """Set every unset (or empty) variable of ``DEFAULTS`` in ``environ``; returns those set."""
    applied = {}
    for name, value in DEFAULTS.items():
        if not environ.get(name):
            environ[name] = applied[name] = value
    return applied
