"""pytest-benchmark: masked_spmm forward, forward + backward and dual pass, per mode group.

Cases and peers: bench/ops/masked_spmm.py. Graph and sizes: bench/conftest.py.
"""

from bench.ops import masked_spmm

OP = masked_spmm  # the op module whose cases bench/conftest.py parametrises


def test_masked_spmm(case, run_case):
    run_case(case)
