"""pytest-benchmark form of the suite: ``pytest bench/ --benchmark-only``.

Each bench/ops/test_<op>.py times the cases of its op module's ``benches`` (ours and the peers,
built on the same inputs), one benchmark per case, grouped by op, graph and what is computed, so
each case of ours is shown next to its peers. The project's tests (``cd tests && pytest .``) never
collect these files. Environment:
  FASTGCN_BENCH_GRAPH   gowalla or synth-<interactions> (default synth-2e4: seconds on a CPU)
  FASTGCN_BENCH_DIMS    embedding widths and SVD ranks, space-separated (default 64)
  FASTGCN_BENCH_DEVICE  cpu or cuda (default cuda when available)
  FASTGCN_BENCH_ROUNDS  timed rounds per case (default 5; the slow ones, the SVDs, 3)
"""

from __future__ import annotations

import functools
import os

import pytest
import torch

from bench.common import build_graph, sync
from fastgcn_denoise.ops import BackendUnavailable

DEVICE = torch.device(
    os.environ.get("FASTGCN_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
)
GRAPH = os.environ.get("FASTGCN_BENCH_GRAPH", "synth-2e4")
DIMS = [int(d) for d in os.environ.get("FASTGCN_BENCH_DIMS", "64").split()]
ROUNDS = int(os.environ.get("FASTGCN_BENCH_ROUNDS", "5"))


@functools.lru_cache(maxsize=None)
def _graph():
    return build_graph(GRAPH, DEVICE)


def _op_name(module) -> str:
    return module.OP.__name__.rsplit(".", 1)[-1]


def pytest_generate_tests(metafunc):
    """Parametrize ``case`` with the test module's ``OP.benches`` on the selected graph."""
    if "case" not in metafunc.fixturenames:
        return
    graph, info = _graph()
    try:
        if graph is None:
            raise BackendUnavailable(f"graph {GRAPH}: {info['skipped']}")
        benches = metafunc.module.OP.benches(DEVICE, graph, DIMS, quick=False)
    except BackendUnavailable as exc:
        metafunc.parametrize("case", [pytest.param(None, marks=pytest.mark.skip(reason=str(exc)))])
        return
    metafunc.parametrize("case", benches, ids=[b.name for b in benches])


@pytest.fixture
def run_case(benchmark, request):
    """Time one ``Bench`` with the ``benchmark`` fixture (synchronising the device per round)."""

    def run(case):
        if case.skipped:
            pytest.skip(case.skipped)
        benchmark.group = f"{_op_name(request.module)} {GRAPH} {case.group}"
        benchmark.extra_info.update(peer=case.peer, bytes=case.bytes_moved, **case.info)
        try:
            benchmark.pedantic(
                lambda: (case.fn(), sync(DEVICE)),
                warmup_rounds=1,
                rounds=3 if case.slow else ROUNDS,
            )
        except BackendUnavailable as exc:
            pytest.skip(str(exc))
        if case.bytes_moved and benchmark.stats:
            benchmark.extra_info["gbps"] = case.bytes_moved / benchmark.stats.stats.median / 1e9

    return run
