"""pytest-benchmark: the closure SpGEMM against scipy and torch.sparse.

Cases and peers: bench/ops/spgemm.py. Graph and sizes: bench/conftest.py.
"""

from bench.ops import spgemm

OP = spgemm  # the op module whose cases bench/conftest.py parametrises


def test_spgemm(case, run_case):
    run_case(case)
