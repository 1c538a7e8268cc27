"""pytest-benchmark: arm_grad (ARM, DisARM) against plain PyTorch with stored uniforms.

Cases and peers: bench/ops/arm_grad.py. Graph and sizes: bench/conftest.py.
"""


def test_arm_grad(case, run_case):
    run_case(case)
