"""pytest-benchmark: arm_grad (ARM, DisARM) against plain PyTorch with stored uniforms.

Cases and peers: bench/ops/arm_grad.py. Graph and sizes: bench/conftest.py.
"""

from bench.ops import arm_grad

OP = arm_grad  # the op module whose cases bench/conftest.py parametrises


def test_arm_grad(case, run_case):
    run_case(case)
