"""pytest-benchmark: full-ranking top-k evaluation against a plain torch.topk loop.

Cases and peers: bench/bench_eval.py. Graph and sizes: bench/conftest.py.
"""
from bench import bench_eval

OP = bench_eval


def test_eval(case, run_case):
    run_case(case)
