"""pytest-benchmark: cosine_attention forward and forward + backward against the composition and PyG.

Cases and peers: bench/ops/cosine_attention.py. Graph and sizes: bench/conftest.py.
"""

from bench.ops import cosine_attention

OP = cosine_attention  # the op module whose cases bench/conftest.py parametrises


def test_cosine_attention(case, run_case):
    run_case(case)
