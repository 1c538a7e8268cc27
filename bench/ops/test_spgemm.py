"""pytest-benchmark: the closure SpGEMM against scipy and torch.sparse.

Cases and peers: bench/ops/spgemm.py. Graph and sizes: bench/conftest.py.
"""


def test_spgemm(case, run_case):
    run_case(case)
