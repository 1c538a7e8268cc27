"""pytest-benchmark: masked_spmm forward, forward + backward and dual pass, per mode group.

Cases and peers: bench/ops/masked_spmm.py. Graph and sizes: bench/conftest.py.
"""


def test_masked_spmm(case, run_case):
    run_case(case)
