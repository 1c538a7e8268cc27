"""pytest-benchmark: the fused log-sum-exp against the PyTorch composition.

Cases and peers: bench/ops/dot_logsumexp.py. Graph and sizes: bench/conftest.py.
"""

from bench.ops import dot_logsumexp

OP = dot_logsumexp  # the op module whose cases bench/conftest.py parametrises


def test_dot_logsumexp(case, run_case):
    run_case(case)
