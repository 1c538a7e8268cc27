"""pytest-benchmark: arm_grad (ARM, DisARM) against plain PyTorch with stored uniforms.

Cases and peers: bench/bench_arm_grad.py. Graph and sizes: bench/conftest.py.
"""
from bench import bench_arm_grad

OP = bench_arm_grad


def test_arm_grad(case, run_case):
    run_case(case)
