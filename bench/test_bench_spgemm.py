"""pytest-benchmark: the closure SpGEMM against scipy and torch.sparse.

Cases and peers: bench/bench_spgemm.py. Graph and sizes: bench/conftest.py.
"""
from bench import bench_spgemm

OP = bench_spgemm


def test_spgemm(case, run_case):
    run_case(case)
