"""One microbenchmark per op against its peer, on the same inputs.

Each module lists its cases as ``Bench`` items (bench/common.py) in ``benches(device, graph, dims,
quick)``, or times them itself in ``run(...)``; the suite (bench/suite.py, ``python -m bench``)
registers them by op name, and ``test_<op>.py`` times the same cases with pytest-benchmark
(``pytest bench/ --benchmark-only``). ``l0sign`` and ``lightgnn_inference`` are model-level and
run only on their own (``python -m bench.ops.<name>``).
"""
