"""The benchmark suite of fastgcn_denoise.

  ops/          one microbenchmark per op against its peer (+ its pytest-benchmark test_<op>.py)
  suite.py      the suite runner, ``python -m bench``: the ops of ops/, side by side
  speed.py      the speed scoreboard, ``python -m bench.speed``: every path of a training step
                against its peer, in turns, at 1 and 2 threads
  denoise/      the noise benchmark, ``python -m bench.denoise``: every denoiser on known noise
  gpu_suite.sh  one call on a GPU machine: install, tests and the suite on CUDA
  common.py     shared plumbing (timing, cases, graphs, the machine, JSON, plots); conftest.py
                the pytest-benchmark fixtures
  studies/      one-off studies, each naming the question it answered and its result file
  results/      the current JSON (and plot) of each harness, op benchmark and study

They measure the *installed* fastgcn_denoise: ``python -m bench`` from the repository root puts
the root first on sys.path, where the source tree (without its compiled extension, unless built
in place) would shadow the installed package. Importing this package moves the root behind
site-packages; with an editable install, or none, the source tree is still what is found, and the
runner refuses to start when its compiled backend cannot run (``common.subject_missing``).

Run them on a quiet machine, with OpenMP's default wait policy: it is what training runs with, and
it keeps threads spinning briefly between the many short parallel regions of a step or an SVD.
``OMP_WAIT_POLICY=PASSIVE`` made the Krylov SVD on the small synthetic graph 3x slower on the
project's 2-core CPU. On a loaded machine, though, active spinning made MKL's LAPACK calls 100x
slower (a 1000 x 1000 eigh: 16 s instead of 0.16 s); set PASSIVE there. Each JSON records the
policy it ran under (``omp_wait_policy``) and the load average at the start (``loadavg``).

Importing this package also sets glibc's heap top pad, as the command line does
(``fastgcn_denoise._runtime.keep_heap``: a step's large temporaries are then not unmapped and
faulted in again each time); ours and the peer run in one process, so both sides have it. Each
JSON records it (``malloc_top_pad``: bytes, or null where it was not set).
"""

import os
import sys
from pathlib import Path


def _root_behind_site_packages() -> None:
    root = Path(__file__).resolve().parent.parent

    def is_root(entry: str) -> bool:
        try:
            return Path(entry or os.getcwd()).resolve() == root
        except OSError:
            return False

    moved = [entry for entry in sys.path if is_root(entry)]
    if moved:
        sys.path[:] = [entry for entry in sys.path if not is_root(entry)] + moved


_root_behind_site_packages()


from fastgcn_denoise import _runtime  # noqa: E402  (after the move; it imports no torch)

MALLOC_TOP_PAD = _runtime.HEAP_TOP_PAD if _runtime.keep_heap() else None
