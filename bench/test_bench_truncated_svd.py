"""pytest-benchmark: truncated_svd against scipy/cupy svds and torch.svd_lowrank.

Cases and peers: bench/bench_truncated_svd.py. Graph and sizes: bench/conftest.py.
"""
from bench import bench_truncated_svd

OP = bench_truncated_svd


def test_truncated_svd(case, run_case):
    run_case(case)
