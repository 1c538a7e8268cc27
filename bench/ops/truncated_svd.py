"""Top-k SVD of the interaction matrix R (k = each --dims width): ours against its peers at
matched accuracy.

Cases, each with ``rel_error``, the maximum relative error of its top-k singular values:
  ours[b] cold       ``ops.truncated_svd`` (block Krylov) with its defaults, random start
  ours[b] warm       weights perturbed (w = 1 + 0.01 noise), warm-started from the cold run's V
                     (what one training step does); its peer is the cold run (target: 4x faster)
  scipy svds         ``scipy.sparse.linalg.svds`` (ARPACK, float64, values only); CPU only
  cupy svds          ``cupyx.scipy.sparse.linalg.svds`` (float32, values only); CUDA with cupy
  torch.svd_lowrank  on a sparse COO R, q = k + 16, niter doubled from 1 until its error is
                     within 2x ours (every try listed in ``sweep``; stops once a try takes over
                     a minute, 5 s with --quick, or at niter 32: ``matched_accuracy`` says which)
Ours is compared against the exact solver of the device (scipy on CPU, cupy on CUDA, else
svd_lowrank) and, in ``speedup_vs``, against every peer timed.

Reference values: scipy svds in float64 up to 2e6 interactions; above, torch.svd_lowrank in
float64 with q = 2k and niter = 32 (ARPACK on the host would take minutes there).
No bytes model: the orthonormalisation and the small eigenproblems are compute-bound.

Run: python -m bench --ops truncated_svd [--device cpu|cuda] [--graphs gowalla] [--dims 128]
"""

from __future__ import annotations

import time

import numpy as np
import torch

from fastgcn_denoise import ops

from ..common import Bench, cupy_or_reason, fused_backends, sync

SCIPY_REFERENCE_MAX_INTERACTIONS = 2_000_000
LOWRANK_NITERS = (1, 2, 4, 8, 16, 32)


def descending(s) -> np.ndarray:
    s = s.detach().cpu().numpy() if isinstance(s, torch.Tensor) else s
    return np.sort(np.asarray(s, dtype=np.float64))[::-1]


def rel_error(s, ref: np.ndarray) -> float:
    return float(np.max(np.abs(descending(s)[: len(ref)] - ref) / ref))


def scipy_matrix(graph, w: torch.Tensor):
    import scipy.sparse as sp

    return sp.csr_matrix(
        (w.cpu().numpy(), graph.col_item.cpu().numpy(), graph.rowptr_u.cpu().numpy()),
        shape=(graph.num_users, graph.num_items),
    )


def sparse_coo(graph, w: torch.Tensor) -> torch.Tensor:
    return torch.sparse_coo_tensor(
        torch.stack(graph.edges()), w, (graph.num_users, graph.num_items)
    ).coalesce()


def reference_values(graph, k: int, w: torch.Tensor) -> tuple[np.ndarray, str]:
    """The top-k singular values of R_w, descending, and how they were computed."""
    if graph.num_edges <= SCIPY_REFERENCE_MAX_INTERACTIONS:
        from scipy.sparse.linalg import svds

        s = svds(scipy_matrix(graph, w.double()), k=k, return_singular_vectors=False)
        return descending(s), "scipy svds float64"
    with torch.random.fork_rng(devices=[w.device] if w.device.type == "cuda" else []):
        torch.manual_seed(0)
        _, s, _ = torch.svd_lowrank(sparse_coo(graph, w.double()), q=2 * k, niter=32)
    return descending(s)[:k], "torch.svd_lowrank float64 q=2k niter=32"


def lowrank_sweep(coo, k: int, q: int, ref, target: float, limit_s: float):
    """(niter, sweep): niter doubled until svd_lowrank's error is within 2x ``target``."""
    sweep = []
    for niter in LOWRANK_NITERS:
        with torch.random.fork_rng(devices=[coo.device] if coo.device.type == "cuda" else []):
            torch.manual_seed(0)
            t0 = time.perf_counter()
            _, s, _ = torch.svd_lowrank(coo, q=q, niter=niter)
            sync(coo.device)
        seconds = time.perf_counter() - t0
        sweep.append({"niter": niter, "rel_error": rel_error(s[:k], ref), "seconds": seconds})
        if sweep[-1]["rel_error"] <= 2 * target or seconds > limit_s:
            break
    return niter, sweep


def _exact_peers(graph, k: int, device, ref) -> list[Bench]:
    """scipy svds (CPU) and cupy svds (CUDA), or skips saying why not; group and names by k."""
    tag = f"k={k}"
    if torch.device(device).type == "cpu":
        from scipy.sparse.linalg import svds

        mat = scipy_matrix(graph, torch.ones(graph.num_edges, dtype=torch.float64))
        fn = lambda: svds(mat, k=k, return_singular_vectors=False)  # noqa: E731
        scipy = Bench(
            f"scipy svds {tag}", tag, fn, slow=True, info={"rel_error": rel_error(fn(), ref)}
        )
    else:
        scipy = Bench(f"scipy svds {tag}", tag, skipped="scipy runs on the host CPU only")
    cupy, why = cupy_or_reason(device)
    if cupy is None:
        return [scipy, Bench(f"cupy svds {tag}", tag, skipped=why)]
    import cupyx.scipy.sparse as csp
    import cupyx.scipy.sparse.linalg as csla

    mat = csp.csr_matrix(
        (
            cupy.ones(graph.num_edges, dtype=cupy.float32),
            cupy.from_dlpack(graph.col_item.int()),
            cupy.from_dlpack(graph.rowptr_u.int()),
        ),
        shape=(graph.num_users, graph.num_items),
    )
    fn = lambda: csla.svds(mat, k=k, return_singular_vectors=False)  # noqa: E731
    return [
        scipy,
        Bench(
            f"cupy svds {tag}",
            tag,
            fn,
            slow=True,
            info={"rel_error": rel_error(cupy.asnumpy(fn()), ref)},
        ),
    ]


def benches(device, graph, dims, quick: bool) -> list[Bench]:
    device = torch.device(device)
    backends = fused_backends(device)
    smaller = min(graph.num_users, graph.num_items)
    ones = torch.ones(graph.num_edges, device=device)
    noise = torch.randn(graph.num_edges, generator=torch.Generator().manual_seed(0))
    w_pert = (1 + 0.01 * noise).to(device)
    coo = sparse_coo(graph, ones)
    out = []
    for k in sorted({min(d, smaller - 1) for d in dims}):  # svds needs k < min(U, I)
        tag = f"k={k}"
        ref, how = reference_values(graph, k, ones)
        ref_pert, _ = reference_values(graph, k, w_pert)
        peers = _exact_peers(graph, k, device, ref)
        results = {}  # backend -> (cold error, warm error, cold V), or why it cannot run
        for b in backends:
            try:
                _, s, v = ops.truncated_svd(graph, k, backend=b)
            except ops.BackendUnavailable as exc:
                results[b] = str(exc)
                continue
            _, s_warm, _ = ops.truncated_svd(graph, k, w_pert, init=v, backend=b)
            results[b] = (rel_error(s, ref), rel_error(s_warm, ref_pert), v)
        target = min((r[0] for r in results.values() if not isinstance(r, str)), default=1e-3)
        q = min(k + 16, smaller)
        niter, sweep = lowrank_sweep(coo, k, q, ref, target, 5.0 if quick else 60.0)
        lowrank = Bench(
            f"torch.svd_lowrank {tag}",
            tag,
            lambda q=q, niter=niter: torch.svd_lowrank(coo, q=q, niter=niter),
            slow=True,
            info={
                "rel_error": sweep[-1]["rel_error"],
                "niter": niter,
                "q": q,
                "matched_accuracy": sweep[-1]["rel_error"] <= 2 * target,
                "sweep": sweep,
            },
        )
        timed = [p.name for p in peers if p.skipped is None] + [lowrank.name]
        for b, r in results.items():
            cold = f"ours[{b}] cold {tag}"
            if isinstance(r, str):
                out.append(Bench(cold, tag, peer=timed[0], skipped=r))
                continue
            err_cold, err_warm, v = r
            out.append(
                Bench(
                    cold,
                    tag,
                    lambda b=b, k=k: ops.truncated_svd(graph, k, backend=b),
                    peer=timed[0],
                    other_peers=tuple(timed[1:]),
                    slow=True,
                    info={"rel_error": err_cold, "reference": how},
                )
            )
            out.append(
                Bench(
                    f"ours[{b}] warm {tag}",
                    tag,
                    lambda b=b, k=k, v=v: ops.truncated_svd(graph, k, w_pert, init=v, backend=b),
                    peer=cold,
                    slow=True,
                    info={"rel_error": err_warm, "reference": how},
                )
            )
        out += peers + [lowrank]
    return out
