"""The fused log-sum-exp (``ops.dot_logsumexp``) against the PyTorch composition it replaces.

Inputs: B queries against all N keys, d wide, float32, tau = 0.1 (LightGNN's InfoNCE), unit-norm
rows (the InfoNCE case). Cases, timed in turns (``time_benches(interleave=True)``):
  composition fwd        s = q @ k.T / tau; m = s.max(1); m + log(exp(s - m).sum(1)) (the peer)
  torch.logsumexp fwd    torch.logsumexp(q @ k.T / tau, 1) (one fused reduction, same matmul)
  naive fwd              log(exp(q @ k.T / tau).sum(1)): the official code, no max subtraction
  ours[cpu] fwd          dot_logsumexp: a GEMM per L2 tile, online max and sum, no [B, N] matrix
  ... fwd+bwd            the same and the gradient of sum(g * lse) for q and k (autograd for
                         the composition, the fused recomputing backward for ours)
  ... masked fwd         with LightGNN's positive sets (Eq. 10, slack 2, 33% of 64 entries
                         kept): the composition adds the official code's mask matmul m_q @ m_k.T
                         and the threshold comparisons
Each case records ``work_bytes``: the largest temporaries it allocates (the composition's [B, N]
float32 matrices; ours: one tile per thread, and for backward a [B, d] partial dq per thread);
``--memory-only`` measures instead the growth of the peak resident set during one call of each
case, in a fresh process (MKL's own GEMM buffers included).

Run: python -m bench.ops.dot_logsumexp [--threads 2] [--batch 4096] [--keys 69534] [--dims 64]
     (default keys: users + items of the Yelp split, 42,712 + 26,822); in the suite:
     python -m bench --ops dot_logsumexp (N = users + items of each graph)
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import torch

from fastgcn_denoise import ops

from ..common import Bench, environment, fused_backends, time_benches, write_json

TAU = 0.1
SLACK = 2
KEEP = 0.33
YELP_NODES = 42_712 + 26_822
_TILE_ROWS, _TILE_KEYS = 128, 512  # csrc/cpu/dot_logsumexp.cpp kRows, kKeys


def inputs(batch: int, keys: int, dim: int, device, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(batch, dim, generator=gen), dim=1).to(device)
    k = torch.nn.functional.normalize(torch.randn(keys, dim, generator=gen), dim=1).to(device)
    g = torch.rand(batch, generator=gen).to(device)
    km = (torch.rand(keys, dim, generator=gen) < KEEP).to(device)
    return q, k, g, km[:batch].clone(), km


def composition(q, k, tau, valid=None):
    s = (q @ k.T) / tau
    if valid is not None:
        s = s.masked_fill(~valid, float("-inf"))
    m = s.max(1, keepdim=True).values
    return m.squeeze(1) + torch.log(torch.exp(s - m).sum(1))


def official_pairs(qm, km, slack):
    """The official code's positive sets: a float matmul of the masks and two comparisons."""
    qf, kf = qm.float(), km.float()
    overlap = qf @ kf.T
    return (overlap >= qf.sum(1, keepdim=True) - slack) & (overlap >= kf.sum(1)[None, :] - slack)


PEERS = {
    "composition": lambda q, k, qm, km: composition(q, k, TAU),
    "torch.logsumexp": lambda q, k, qm, km: torch.logsumexp((q @ k.T) / TAU, 1),
    "naive": lambda q, k, qm, km: torch.log(torch.exp((q @ k.T) / TAU).sum(1)),
    "composition masked": lambda q, k, qm, km: composition(
        q, k, TAU, official_pairs(qm, km, SLACK)
    ),
}


def _ours(backend, masked):
    def run(q, k, qm, km):
        kw = dict(query_mask=qm, key_mask=km, slack=SLACK) if masked else {}
        return ops.dot_logsumexp(q, k, TAU, backend=backend, **kw)

    return run


def _fwd(fn, q, k, qm, km):
    def run():
        with torch.no_grad():
            fn(q, k, qm, km)

    return run


def _fwd_bwd(fn, q, k, g, qm, km):
    qg, kg = q.clone().requires_grad_(), k.clone().requires_grad_()

    def run():
        qg.grad = kg.grad = None
        (fn(qg, kg, qm, km) * g).sum().backward()

    return run


def work_bytes(name: str, batch: int, keys: int, dim: int, threads: int) -> int:
    """The largest temporaries of a case (float32), from what each implementation allocates."""
    bn, tile = 4 * batch * keys, 4 * _TILE_ROWS * _TILE_KEYS * threads
    if name.startswith("ours"):
        return tile + (4 * batch * dim * threads if "bwd" in name else 0)
    if "masked" in name:  # scores, masked scores, exp; the float overlap and two bool masks
        return 3 * bn + bn + 3 * batch * keys
    if "bwd" in name:  # saved scores, s - m, exp, and the softmax gradient
        return 4 * bn
    return 2 * bn if name.startswith("torch.logsumexp") else 3 * bn


def bench_list(device, batch: int, keys: int, dims) -> list[Bench]:
    """The cases of the module docstring for each width in ``dims``."""
    out = []
    backends = fused_backends(device)
    for d in dims:
        q, k, g, qm, km = inputs(batch, keys, d, device)
        tag = f"B={batch} N={keys} d={d}"
        for kind in ("fwd", "fwd+bwd", "masked fwd"):
            masked = kind.startswith("masked")
            peer = f"composition {kind} {tag}"
            peer_fn = PEERS["composition masked" if masked else "composition"]
            make = (
                (lambda fn: _fwd_bwd(fn, q, k, g, qm, km))
                if kind == "fwd+bwd"
                else (lambda fn: _fwd(fn, q, k, qm, km))
            )
            info = {"kind": kind, "batch": batch, "keys": keys, "dim": d, "tau": TAU}
            out.append(Bench(peer, f"{kind} {tag}", make(peer_fn), slow=True, info=info))
            others = []
            if kind == "fwd":
                for name in ("torch.logsumexp", "naive"):
                    others.append(f"{name} fwd {tag}")
                    out.append(
                        Bench(others[-1], f"{kind} {tag}", make(PEERS[name]), slow=True, info=info)
                    )
            for b in backends:
                out.append(
                    Bench(
                        f"ours[{b}] {kind} {tag}",
                        f"{kind} {tag}",
                        make(_ours(b, masked)),
                        peer=peer,
                        other_peers=tuple(others),
                        slow=True,
                        info=info,
                    )
                )
    return out


def benches(device, graph, dims, quick: bool) -> list[Bench]:
    """pytest-benchmark hook (bench/ops/test_dot_logsumexp.py): 256 queries, N = users + items."""
    return bench_list(device, 256, graph.num_users + graph.num_items, dims)


def cases_for(device, batch: int, keys: int, dims, quick: bool, threads: int) -> list[dict]:
    """``bench_list`` timed in turns, each case with its ``work_bytes``."""
    cases = time_benches(bench_list(device, batch, keys, dims), device, quick, interleave=True)
    for c in cases:
        c["work_bytes"] = work_bytes(c["name"], batch, keys, c["dim"], threads)
    return cases


SUITE_DIM = 64
SUITE_MAX_BYTES = 6 * 2**30  # the composition's [B, N] temporaries allowed in the suite


def run(device, graph, dims, quick: bool) -> list[dict]:
    """Suite entry (``python -m bench --ops dot_logsumexp``): B = 4096 (256 with --quick) queries
    against N = users + items of the graph, at d = 64 only (the op's headline width; the suite's
    --dims would multiply minutes-long cases); graphs whose composition needs more than
    ``SUITE_MAX_BYTES`` of [B, N] temporaries are skipped."""
    batch, keys = (256 if quick else 4096), graph.num_users + graph.num_items
    need = work_bytes("composition fwd+bwd", batch, keys, SUITE_DIM, 1)
    if need > SUITE_MAX_BYTES:
        return [
            {
                "name": f"dot_logsumexp B={batch} N={keys}",
                "peer": None,
                "skipped": f"the composition peer needs {need / 2**30:.1f} GiB of [B, N] "
                f"temporaries (suite limit {SUITE_MAX_BYTES / 2**30:.0f} GiB)",
            }
        ]
    return cases_for(device, batch, keys, [SUITE_DIM], quick, torch.get_num_threads())


_RSS_CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
from bench.ops.dot_logsumexp import inputs, PEERS, _ours, _fwd, _fwd_bwd

def peak():  # VmHWM: this image's resident high-water mark (ru_maxrss would carry the parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

torch.set_num_threads({threads})
q, k, g, qm, km = inputs({batch}, {keys}, {dim}, "cpu")
fn = _ours("cpu", {masked}) if {ours} else PEERS[{peer!r}]
call = _fwd_bwd(fn, q, k, g, qm, km) if {bwd} else _fwd(fn, q, k, qm, km)
base = peak()
call()
print(peak() - base)
"""


def peak_rss_growth(kind: str, ours: bool, batch, keys, dim, threads) -> int:
    """Bytes the peak resident set grows by during one call, in a fresh process."""
    from ..common import ROOT

    masked = kind.startswith("masked")
    code = _RSS_CHILD.format(
        root=str(ROOT),
        threads=threads,
        batch=batch,
        keys=keys,
        dim=dim,
        masked=masked,
        ours=ours,
        bwd=kind == "fwd+bwd",
        peer="composition masked" if masked else "composition",
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.ops.dot_logsumexp", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads (CPU)")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--keys", type=int, default=YELP_NODES)
    ap.add_argument("--dims", type=int, nargs="+", default=[64])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    ap.add_argument(
        "--memory-only",
        action="store_true",
        help="only the peak memory growth of one call per case, each in a fresh "
        "process (CPU): bench_dot_logsumexp_memory_cpu_t<threads>.json",
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    env = environment(device)
    env["shared_machine"] = "2-core machine shared with other sessions; ratios timed in turns"
    if args.memory_only:
        return memory_report(env, args, threads)
    cases = cases_for(device, args.batch, args.keys, args.dims, args.quick, threads)
    name = f"bench_dot_logsumexp_{device.type}_t{threads}"
    path = write_json(
        name,
        {**env, "suite": "python -m bench.ops.dot_logsumexp", "threads": threads, "cases": cases},
        args.out,
    )
    for c in cases:
        if "median_ms" in c:
            extra = f"  {c['speedup_vs_peer']:.2f}x vs peer" if "speedup_vs_peer" in c else ""
            print(
                f"{c['name']:55s} {c['median_ms']:9.1f} ms  work {c['work_bytes'] / 2**20:8.1f} "
                f"MiB{extra}"
            )
        else:
            print(f"{c['name']:55s} skipped: {c['skipped']}")
    print(f"wrote {path}")
    return 0


def memory_report(env: dict, args, threads: int) -> int:
    rows = []
    for d in args.dims:
        for kind in ("fwd", "fwd+bwd", "masked fwd"):
            for ours in (False, True):
                name = (
                    f"{'ours[cpu]' if ours else 'composition'} {kind} B={args.batch} "
                    f"N={args.keys} d={d}"
                )
                grown = peak_rss_growth(kind, ours, args.batch, args.keys, d, threads)
                rows.append(
                    {
                        "name": name,
                        "kind": kind,
                        "dim": d,
                        "peak_rss_growth_bytes": grown,
                        "work_bytes": work_bytes(name, args.batch, args.keys, d, threads),
                    }
                )
                print(
                    f"{name:55s} peak RSS +{grown / 2**20:8.1f} MiB  (temporaries "
                    f"{rows[-1]['work_bytes'] / 2**20:8.1f} MiB)"
                )
    path = write_json(
        f"bench_dot_logsumexp_memory_cpu_t{threads}",
        {
            **env,
            "suite": "python -m bench.ops.dot_logsumexp --memory-only",
            "threads": threads,
            "batch": args.batch,
            "keys": args.keys,
            "what": "growth of the peak resident set during one call (fwd, or fwd + "
            "backward), in a fresh process after the inputs exist",
            "cases": rows,
        },
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
