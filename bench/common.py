"""Shared benchmark plumbing: timing, the machine's description, results JSON, plots.

Every benchmark times a case and its peer(s) side by side in one run; a case is a dict with
``name``, ``peer`` (the name it is compared against, or None), timing statistics in ms and,
where a bytes model is stated, ``bytes`` and ``gbps``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHARED_DATA = Path(os.environ.get("FASTGCN_SHARED_DATA", ROOT.parent / "shared" / "data"))


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(fn, device="cpu", repeat: int = 7, warmup: int = 2, min_time_s: float = 0.0) -> dict:
    """Median/min/max wall time of ``fn()`` in ms, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "repeats": len(times)}


def case(name: str, timing: dict, peer: str | None = None, bytes_moved: int | None = None,
         **extra) -> dict:
    out = {"name": name, "peer": peer, **timing, **extra}
    if bytes_moved is not None:
        out["bytes"] = int(bytes_moved)
        out["gbps"] = bytes_moved / (timing["median_ms"] * 1e-3) / 1e9
    return out


def add_ratios(cases: list[dict]) -> list[dict]:
    """``speedup_vs_peer`` = peer median / case median, for every case naming a peer in the list."""
    by_name = {c["name"]: c for c in cases}
    for c in cases:
        peer = by_name.get(c.get("peer") or "")
        if peer is not None:
            c["speedup_vs_peer"] = peer["median_ms"] / c["median_ms"]
    return cases


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_device(device="cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{_cpu_model()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def environment(device="cpu") -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("triton", "numpy", "scipy", "cupy"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    import fastgcn_denoise
    from fastgcn_denoise import ops
    return {
        "device": describe_device(device),
        "device_type": torch.device(device).type,
        "commit": commit + ("-dirty" if dirty else ""),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fastgcn_denoise": fastgcn_denoise.__version__,
        "versions": versions,
        "backends": ops.availability(device),
    }


def write_json(name: str, payload: dict, out_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir or RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def print_table(cases: list[dict], title: str = "") -> None:
    if title:
        print(f"\n== {title}")
    print(f"{'case':48s} {'median ms':>10s} {'min ms':>9s} {'vs peer':>8s} {'GB/s':>7s}")
    for c in cases:
        ratio = f"{c['speedup_vs_peer']:.2f}x" if "speedup_vs_peer" in c else ""
        gbps = f"{c['gbps']:.1f}" if "gbps" in c else ""
        print(f"{c['name']:48s} {c['median_ms']:10.2f} {c['min_ms']:9.2f} {ratio:>8s} {gbps:>7s}")


def plot(cases: list[dict], path: Path, title: str) -> Path | None:
    """Horizontal bar chart of median times (log scale); None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(cases) + 1.5))
    names = [c["name"] for c in cases][::-1]
    values = [c["median_ms"] for c in cases][::-1]
    colors = ["tab:blue" if c.get("peer") else "tab:gray" for c in cases][::-1]
    ax.barh(names, values, color=colors)
    ax.set_xscale("log")
    ax.set_xlabel("median time (ms, log scale); blue = ours, grey = peers")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gowalla_train(device="cpu"):
    """The Gowalla training graph from ../shared/data, or None with a reason printed."""
    path = SHARED_DATA / "gowalla" / "train.txt"
    if not path.exists():
        print(f"skipping Gowalla: {path} not found (set FASTGCN_SHARED_DATA)")
        return None
    from fastgcn_denoise.data import load_lightgcn
    return load_lightgcn(path.parent).train_graph().to(device)
