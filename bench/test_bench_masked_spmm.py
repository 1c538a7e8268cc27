"""pytest-benchmark: masked_spmm forward, forward + backward and dual pass, per mode group.

Cases and peers: bench/bench_masked_spmm.py. Graph and sizes: bench/conftest.py.
"""
from bench import bench_masked_spmm

OP = bench_masked_spmm


def test_masked_spmm(case, run_case):
    run_case(case)
