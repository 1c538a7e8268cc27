"""Microbenchmarks: every op against its peer, side by side (``python -m bench``, see __main__.py).

OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, set here before torch loads, unless
already set): on a loaded machine active spinning made MKL's LAPACK calls 100x slower (a
1000 x 1000 eigh: 16 s instead of 0.16 s), which would measure the neighbours, not the code.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
