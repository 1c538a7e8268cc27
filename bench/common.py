"""Shared benchmark plumbing: timing, cases, the machine's description, graphs, JSON, plots.

Every benchmark module lists ``Bench`` items (ours and their peers, built on the same inputs) and
times them side by side with ``time_benches``. A timed case is a dict with ``name``, ``group``,
``peer`` (the case it is compared against, None for a peer itself), ``median_ms``/``min_ms``/
``max_ms``, ``speedup_vs_peer`` (peer median / our median) and, where the module states a bytes
model, ``bytes`` and ``gbps``. A case that cannot run here has ``skipped`` (the reason) instead of
timings: a missing peer is reported, never dropped.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fastgcn_denoise import BipartiteGraph, ops

from . import MALLOC_TOP_PAD

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHARED_DATA = Path(os.environ.get("FASTGCN_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Graphs up to this many interactions come from the package's generator; larger ones from
# ``power_law_graph`` (make_synthetic needs about a second per million interactions).
GENERATOR_MAX_INTERACTIONS = 5_000_000


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed_call(fn, device) -> float:
    """Wall time of one ``fn()`` in ms, the device synchronised after it."""
    t0 = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - t0) * 1e3


def _stats(times: list[float]) -> dict:
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeats": len(times),
    }


def measure(fn, device="cpu", repeat: int = 7, warmup: int = 2, min_time_s: float = 0.0) -> dict:
    """Median/min/max wall time of ``fn()`` in ms, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time_s:
        times.append(_timed_call(fn, device))
    return _stats(times)


@dataclass
class Bench:
    """One callable to time. With a ``peer`` it is one of ours, compared against that case (and
    ``other_peers``, each getting a ratio too); ``skipped`` says why it cannot run here."""

    name: str
    group: str  # what is compared: the cases of a group run the same computation
    fn: Callable[[], object] | None = None
    peer: str | None = None
    other_peers: tuple[str, ...] = ()
    bytes_moved: int | None = None
    slow: bool = False  # seconds per call: fewer repeats
    skipped: str | None = None
    info: dict = field(default_factory=dict)

    def repeats(self, quick: bool) -> tuple[int, int]:
        """(timed calls, warm-up calls)."""
        if self.slow:
            return (2, 1) if quick else (3, 1)
        return (3, 1) if quick else (7, 2)


def time_benches(
    benches: list[Bench], device, quick: bool, interleave: bool = False, repeat: int | None = None
) -> list[dict]:
    """Time every bench; a backend that turns out to be unavailable becomes a skip.

    ``repeat``: timed calls per bench (one warm-up call), instead of each bench's ``repeats``.

    By default each bench's calls run in a row. With ``interleave`` the benches take turns, one
    call each per round, so a case and its peer see the same machine state (on a shared CPU the
    speed drifts by tens of percent over a minute; a ratio of two runs made a minute apart
    measures that drift too).
    """
    cases, runnable = [], {}
    for b in benches:
        c = {"name": b.name, "group": b.group, "peer": b.peer, **b.info}
        if b.other_peers:
            c["other_peers"] = list(b.other_peers)
        skipped = b.skipped
        if skipped is None:
            repeats, warmup = b.repeats(quick) if repeat is None else (repeat, 1)
            try:
                if interleave:
                    for _ in range(warmup):
                        b.fn()
                    sync(device)
                    runnable[len(cases)] = (b, repeats, [])
                else:
                    c.update(measure(b.fn, device, repeats, warmup))
            except ops.BackendUnavailable as exc:
                skipped = str(exc)
        if skipped is not None:
            c["skipped"] = skipped
        cases.append(c)
    for round_ in range(max((r for _, r, _ in runnable.values()), default=0)):
        for b, repeat, times in runnable.values():
            if round_ < repeat:
                times.append(_timed_call(b.fn, device))
    for i, (_, _, times) in runnable.items():
        cases[i].update(_stats(times))
    for b, c in zip(benches, cases):
        if "median_ms" in c and b.bytes_moved is not None:
            c["bytes"] = int(b.bytes_moved)
            c["gbps"] = b.bytes_moved / (c["median_ms"] * 1e-3) / 1e9
    return add_ratios(cases)


def add_ratios(cases: list[dict]) -> list[dict]:
    """``speedup_vs_peer`` = peer median / case median; ``speedup_vs`` {peer: ratio} over the
    peer and ``other_peers`` that were timed."""
    timed = {c["name"]: c for c in cases if "median_ms" in c}
    for c in cases:
        if "median_ms" not in c or c.get("peer") is None:
            continue
        ratios = {
            p: timed[p]["median_ms"] / c["median_ms"]
            for p in (c["peer"], *c.get("other_peers", ()))
            if p in timed
        }
        if c["peer"] in ratios:
            c["speedup_vs_peer"] = ratios[c["peer"]]
        if c.get("other_peers"):
            c["speedup_vs"] = ratios
    return cases


def fused_backends(device) -> list[str]:
    """Our backends that run on ``device`` (not ``reference``, the ground truth, and not triton on
    CPU tensors, which is the interpreter: a test aid, not something to time)."""
    device = torch.device(device)
    avail = ops.availability(device)
    names = [
        b
        for b, why in avail.items()
        if why is None and b != "reference" and not (b == "triton" and device.type == "cpu")
    ]
    if not names:
        raise ops.BackendUnavailable(
            "no fused backend runs here: "
            + "; ".join(f"{b}: {why}" for b, why in avail.items() if b != "reference")
        )
    return names


def cupy_or_reason(device):
    """(cupy module, None) when cupy peers can run on ``device``, else (None, the reason)."""
    if torch.device(device).type != "cuda":
        return None, "cupy peers run on CUDA devices only"
    try:
        import cupy
        import cupyx.scipy.sparse  # noqa: F401
        import cupyx.scipy.sparse.linalg  # noqa: F401
    except ImportError as exc:
        return None, f"cupy not importable ({exc})"
    return cupy, None


def copy_bench(device, nbytes: int = 512 * 2**20, name: str = "copy") -> Bench:
    """A tensor copy of ``nbytes`` on ``device``; ``bytes_moved`` counts the read and the write."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    return Bench(name, name, lambda: dst.copy_(src), bytes_moved=2 * nbytes)


def copy_bandwidth(device, nbytes: int = 512 * 2**20) -> float:
    """Measured device copy bandwidth in GB/s (bytes read + bytes written)."""
    copy = copy_bench(device, nbytes)
    t = measure(copy.fn, device, repeat=9)
    return copy.bytes_moved / (t["median_ms"] * 1e-3) / 1e9


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_device(device="cpu", threads: bool = True) -> str:
    """The GPU's name, or the CPU model with its cores (and torch's current thread count)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if not threads:
        return f"{_cpu_model()} ({os.cpu_count()} cores)"
    return f"{_cpu_model()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def package_info() -> dict:
    """The fastgcn_denoise being measured: version, where it was imported from, and whether its
    compiled extension loads."""
    import fastgcn_denoise
    from fastgcn_denoise.ops._backend import _load_extension

    ext, why = _load_extension()
    return {
        "version": fastgcn_denoise.__version__,
        "path": str(Path(fastgcn_denoise.__file__).resolve().parent),
        "extension": ext is not None,
        **({} if ext is not None else {"extension_error": why}),
    }


def subject_missing(device) -> str | None:
    """Why the benchmarks cannot measure this build on ``device`` (None: they can): the backend
    they time there (cpu: the compiled extension; cuda: the triton kernels) cannot run."""
    device = torch.device(device)
    need = "cpu" if device.type == "cpu" else "triton"
    why = ops.availability(device)[need]
    if why is None:
        return None
    pkg = package_info()
    return (
        f"the {need} backend, which the benchmarks measure on {device.type}, cannot run: "
        f"{why}. fastgcn_denoise was imported from {pkg['path']}: install the package "
        "(pip install --no-build-isolation .) or build its extension in place (python "
        "setup.py build_ext --inplace), then run python -m bench from the repository root"
    )


def environment(device="cpu") -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("triton", "numpy", "scipy", "cupy"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    pkg = package_info()
    return {
        "device": describe_device(device),
        "device_type": torch.device(device).type,
        "commit": commit + ("-dirty" if dirty else ""),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fastgcn_denoise": pkg["version"],
        "package": pkg,
        "versions": versions,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "malloc_top_pad": MALLOC_TOP_PAD,  # bytes (bench/__init__.py), or None
        # The machine's load when the run started (1, 5, 15 min): a shared machine shows here.
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "backends": ops.availability(device),
    }


def power_law_graph(num_users: int, num_items: int, num_interactions: int, seed: int = 0):
    """Random bipartite graph: lognormal user activity, Zipf(0.9) item popularity (shuffled ids).

    Duplicate draws are merged, so it has somewhat fewer than ``num_interactions`` edges.
    """
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, num_users)
    counts = np.maximum(1, np.rint(activity * (num_interactions / activity.sum()))).astype(np.int64)
    users = np.repeat(np.arange(num_users, dtype=np.int64), counts)
    cdf = np.cumsum(1.0 / np.arange(1, num_items + 1) ** 0.9)
    ranks = np.searchsorted(cdf, rng.random(users.shape[0]) * cdf[-1], side="right")
    items = rng.permutation(num_items)[np.minimum(ranks, num_items - 1)]
    return BipartiteGraph(users, items, num_users, num_items)


def synthetic_graph(num_interactions: int, seed: int = 0):
    """(graph, how it was made) with about ``num_interactions`` training interactions.

    Gowalla's shape: ~29 training interactions per user, 1.4 items per user. Up to
    ``GENERATOR_MAX_INTERACTIONS`` the train split of ``make_synthetic`` (30 preferences per user,
    80% train, 20% planted noise), above it ``power_law_graph``.
    """
    users = max(40, round(num_interactions / 29))
    items = max(60, round(1.4 * users))
    if num_interactions <= GENERATOR_MAX_INTERACTIONS:
        from fastgcn_denoise.data import make_synthetic

        data = make_synthetic(num_users=users, num_items=items, seed=seed)
        return data.train_graph(), f"make_synthetic(num_users={users}, num_items={items}) train"
    return (
        power_law_graph(users, items, num_interactions, seed),
        f"power_law_graph({users}, {items}, {num_interactions})",
    )


def build_graph(spec: str, device) -> tuple[BipartiteGraph | None, dict]:
    """(graph on ``device``, its description) for ``gowalla`` or ``synth-<interactions>`` (e.g.
    ``synth-1e6``); the graph is None, with a ``skipped`` reason, when the data is not there."""
    t0 = time.perf_counter()
    if spec == "gowalla":
        path = SHARED_DATA / "gowalla"
        if not (path / "train.txt").exists():
            return None, {
                "name": spec,
                "skipped": f"{path}/train.txt not found (set FASTGCN_SHARED_DATA)",
            }
        from fastgcn_denoise.data import load_lightgcn

        graph, source = load_lightgcn(path).train_graph(), f"{path}/train.txt"
    elif spec.startswith("synth-"):
        graph, source = synthetic_graph(int(float(spec[len("synth-") :])))
    else:
        raise ValueError(f"unknown graph {spec!r}: use gowalla or synth-<interactions> (synth-1e6)")
    graph = graph.to(device)
    return graph, {
        "name": spec,
        "source": source,
        "users": graph.num_users,
        "items": graph.num_items,
        "interactions": graph.num_edges,
        "build_s": round(time.perf_counter() - t0, 2),
    }


def write_json(name: str, payload: dict, out_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir or RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def short_peer(peer: str, name: str) -> str:
    """``peer`` without the words it shares at the end with ``name`` (" fwd d=64" and the like)."""
    a, b = peer.split(), name.split()
    while len(a) > 1 and b and a[-1] == b[-1]:
        a, b = a[:-1], b[:-1]
    return " ".join(a)


PLOT_DPI = 110


def speedup_figure(cases: list[dict], title: str):
    """The figure ``plot`` saves (None without matplotlib or without a case with a ratio).

    One bar per case of ours, top to bottom in the cases' order. The figure is as wide as its
    longest label needs (measured after a draw) plus the plot area, so no label is clipped.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    ours = [c for c in cases if "speedup_vs_peer" in c][::-1]
    if not ours:
        return None
    several = len({c.get("threads") for c in ours}) > 1
    labels = [
        f"{c['graph']} | "
        + (f"{c['threads']} thr | " if several else "")
        + f"{c['name']} vs {short_peer(c['peer'], c['name'])}"
        for c in ours
    ]
    values = [c["speedup_vs_peer"] for c in ours]
    height = 0.26 * len(ours) + 1.5
    # Laid out at the dpi it is saved at: text measured at another dpi is hinted differently,
    # which is how the longest labels used to run off the left edge of the saved PNG.
    fig, ax = plt.subplots(figsize=(10, height), dpi=PLOT_DPI)
    ax.barh(range(len(ours)), values, color=["tab:blue" if v >= 1 else "tab:red" for v in values])
    ax.set_yticks(range(len(ours)), labels)
    ax.set_ylim(-0.6, len(ours) - 0.4)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("speedup over the peer (peer median / ours, log scale)")
    ax.set_title(title, fontsize=10)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    widest = max(t.get_window_extent(renderer).width for t in ax.get_yticklabels()) / fig.dpi
    title_width = ax.title.get_window_extent(renderer).width / fig.dpi
    fig.set_size_inches(max(widest + 6.0, title_width + 1.0), height)
    fig.tight_layout()
    return fig


def plot(cases: list[dict], path: Path, title: str) -> Path | None:
    """Bar chart of our cases' speedups over their peers (log scale); None without matplotlib."""
    fig = speedup_figure(cases, title)
    if fig is None:
        return None
    fig.savefig(path, dpi=PLOT_DPI)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
