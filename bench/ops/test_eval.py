"""pytest-benchmark: full-ranking top-k evaluation against a plain torch.topk loop.

Cases and peers: bench/ops/eval.py. Graph and sizes: bench/conftest.py.
"""


def test_eval(case, run_case):
    run_case(case)
