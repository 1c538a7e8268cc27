"""pytest-benchmark: full-ranking top-k evaluation against a plain torch.topk loop.

Cases and peers: bench/ops/eval.py. Graph and sizes: bench/conftest.py.
"""

from bench.ops import eval as evaluation

OP = evaluation  # the op module whose cases bench/conftest.py parametrises


def test_eval(case, run_case):
    run_case(case)
