"""pytest-benchmark: the fused log-sum-exp against the PyTorch composition.

Cases and peers: bench/bench_dot_logsumexp.py. Graph and sizes: bench/conftest.py.
"""
from bench import bench_dot_logsumexp

OP = bench_dot_logsumexp


def test_dot_logsumexp(case, run_case):
    run_case(case)
