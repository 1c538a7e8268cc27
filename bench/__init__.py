"""Microbenchmarks: every op against its peer, side by side (``python -m bench``, see __main__.py).

Run them on a quiet machine, with OpenMP's default wait policy: it is what training runs with, and
it keeps threads spinning briefly between the many short parallel regions of a step or an SVD.
``OMP_WAIT_POLICY=PASSIVE`` made the Krylov SVD on the small synthetic graph 3x slower on the
project's 2-core CPU. On a loaded machine, though, active spinning made MKL's LAPACK calls 100x
slower (a 1000 x 1000 eigh: 16 s instead of 0.16 s); set PASSIVE there. Each JSON records the
policy it ran under (``omp_wait_policy``).
"""
