"""pytest-benchmark: truncated_svd against scipy/cupy svds and torch.svd_lowrank.

Cases and peers: bench/ops/truncated_svd.py. Graph and sizes: bench/conftest.py.
"""

from bench.ops import truncated_svd

OP = truncated_svd  # the op module whose cases bench/conftest.py parametrises


def test_truncated_svd(case, run_case):
    run_case(case)
