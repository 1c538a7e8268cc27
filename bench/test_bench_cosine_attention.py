"""pytest-benchmark: cosine_attention forward and forward + backward against the composition and PyG.

Cases and peers: bench/bench_cosine_attention.py. Graph and sizes: bench/conftest.py.
"""
from bench import bench_cosine_attention

OP = bench_cosine_attention


def test_cosine_attention(case, run_case):
    run_case(case)
