"""Ahead-of-time compile check of every Triton kernel for Hopper (sm_90) and Ampere (sm_80).

Runs on a CPU-only machine (CI): Triton's wheel carries ptxas, and ``triton.compile`` with a
``GPUTarget`` needs no GPU or driver. Three parts:

  record     the launches the kernels get, as JSON lines (one line per distinct specialisation:
             tensor dtypes and 16-byte alignment, scalar widths, constexprs, num_warps/stages).
             Two sources: the unit tests (this module is also a pytest plugin, ``-p aot_compile``
             with ``AOT_RECORD=FILE``: it records every interpreted launch of ``make test``) and
             ``production_launches()``, the launchers called at production sizes (d = 64 / 128,
             eval k up to 128, L0-SIGN defaults; plus the supported extremes d = 256, k = 256) on
             tiny inputs under the interpreter. Production records are tagged ``prod``.
  compile    each specialisation through the JIT's own binder (so signature, constexprs and
             specialisation attributes are a real launch's) for each target; ptxas's report gives
             registers and spills, the kernel's metadata its shared memory. Integer arguments are
             compiled as generic values (neither 1 nor a multiple of 16: the most general code).
             Results are cached by (kernel source hash, specialisation, target, Triton version),
             so an unchanged kernel is not compiled twice, and compiles run in parallel.
  check      record + compile under this Triton and under each ``--side`` folder (another Triton
             installed with ``pip install --target DIR``, run in a subprocess with PYTHONPATH=DIR),
             writes ``bench/results/triton_compile.json`` and fails (exit 1) on any compile error,
             any spill in a production specialisation (d <= 128, k <= 128) on sm_90 under its own
             Triton (an older Triton's are reported) and any
             launch asking for more shared memory than its target has.

    python tools/aot_compile.py check --records build/aot/tests.jsonl --side .venv/triton36 \\
        --jobs 2 --json bench/results/triton_compile.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import importlib
import inspect
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

ARCHS = (90, 80)
# Opt-in shared memory per block (bytes): what a launch may ask for on each target.
SMEM_MAX = {80: 166912, 86: 101376, 89: 101376, 90: 232448}
# Targets on which a production specialisation must not spill under CI's Triton (the H100
# machines; sm_80's and older Tritons' spills are reported, not failed).
SPILL_ARCHS = (90,)
_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg")
_PTXAS = {
    "regs": r"Used (\d+) registers",
    "spill_store": r"(\d+) bytes spill stores",
    "spill_load": r"(\d+) bytes spill loads",
}


# --------------------------------------------------------------------------- recording
_SEEN: dict[str, dict] = {}
_TAG: dict[str, object] = {"prod": False, "case": None}


def _encode(value) -> dict:
    """An argument as JSON: what of it decides the compiled code."""
    import torch
    import triton.language as tl

    if isinstance(value, tl.constexpr):
        value = value.value
    if value is None:
        return {"none": True}
    if isinstance(value, tl.dtype):
        return {"tl_dtype": value.name}
    if isinstance(value, torch.Tensor):
        return {
            "tensor": str(value.dtype).removeprefix("torch."),
            "align16": value.data_ptr() % 16 == 0,
        }
    for kind in (bool, int, float, str):  # bool before int: True is an int
        if isinstance(value, kind):
            return {kind.__name__: value}
    raise TypeError(f"aot_compile: cannot record a {type(value).__name__} argument")


def _int_width(v: int) -> str:
    return "i32" if -(2**31) <= v < 2**31 else "i64" if -(2**63) <= v < 2**63 else "u64"


def spec_key(rec: dict) -> str:
    """What decides the binary: constexprs, dtypes, alignment, int widths, launch options."""
    parts = []
    for p in rec["params"]:
        v = p["value"]
        if not p["constexpr"] and "int" in v:
            v = _int_width(v["int"])
        elif not p["constexpr"] and "float" in v:
            v = "fp32"
        parts.append(v)
    return json.dumps(
        [rec["module"], rec["kernel"], parts, sorted(rec["options"].items())], sort_keys=True
    )


def _shipped(module: str) -> bool:
    """Whether a kernel is the package's (a test's own helper kernel, e.g. the Philox check in
    tests/test_reference.py, is neither installed nor compiled for a GPU)."""
    return module.startswith("fastgcn_denoise.")


def _record(fn, args, kwargs):
    if not _shipped(fn.__module__):
        return
    sig = inspect.signature(fn)
    bound = sig.bind_partial(*args, **{k: v for k, v in kwargs.items() if k in sig.parameters})
    bound.apply_defaults()
    rec = {
        "module": fn.__module__,
        "kernel": fn.__qualname__,
        "params": [
            {
                "name": n,
                "constexpr": "constexpr" in str(p.annotation),
                "value": _encode(bound.arguments.get(n)),
            }
            for n, p in sig.parameters.items()
        ],
        "options": {k: kwargs[k] for k in _OPTIONS if k in kwargs},
        "prod": bool(_TAG["prod"]),
        "cases": [_TAG["case"]] if _TAG["case"] else [],
    }
    old = _SEEN.setdefault(spec_key(rec), rec)
    if old is not rec:
        old["prod"] |= rec["prod"]
        old["cases"] = sorted(set(old["cases"]) | set(rec["cases"]))


def install_recorder():
    """Record every launch the Triton interpreter (TRITON_INTERPRET=1) runs."""
    from triton.runtime.interpreter import InterpretedFunction

    run = InterpretedFunction.run
    if getattr(run, "aot_recording", False):
        return

    def recording_run(self, *args, grid, warmup, **kwargs):
        _record(self.fn, args, kwargs)
        return run(self, *args, grid=grid, warmup=warmup, **kwargs)

    recording_run.aot_recording = True
    InterpretedFunction.run = recording_run


def merge_records(path: str, records) -> dict[str, dict]:
    """Merge ``records`` into the JSON-lines file ``path`` (created if missing); the union."""
    merged = {spec_key(r): r for r in read_records([path])} if os.path.exists(path) else {}
    for rec in records:
        old = merged.setdefault(spec_key(rec), rec)
        if old is not rec:
            old["prod"] = old.get("prod", False) or rec.get("prod", False)
            old["cases"] = sorted(set(old.get("cases", [])) | set(rec.get("cases", [])))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in merged.values())
    return merged


def read_records(paths) -> list[dict]:
    recs = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    if _shipped(rec["module"]):
                        recs.setdefault(spec_key(rec), rec)
    return list(recs.values())


def pytest_configure(config):
    """pytest plugin (``-p aot_compile``): records the tests' launches when AOT_RECORD is set."""
    if os.environ.get("AOT_RECORD"):
        install_recorder()


def pytest_unconfigure(config):
    if os.environ.get("AOT_RECORD") and _SEEN:
        merge_records(os.environ["AOT_RECORD"], _SEEN.values())


@contextlib.contextmanager
def _case(name: str, prod: bool):
    _TAG.update(prod=prod, case=name)
    try:
        yield
    finally:
        _TAG.update(prod=False, case=None)


SMOKE = (
    "masked_spmm ones float32 d64",
    "masked_spmm hard_concrete float32 d64",
    "masked_spmm_dual float32",
    "gate/arm_grad",
    "segment_topk",
    "sddmm d64",
    "cosine_attention dk64 dv64",
    "dot_logsumexp float32 d64",
    "dot_logsumexp masked d64",
    "all_pairs hard_concrete",
    "masked_topk float32 k20",
)


def production_cases(device: str = "cpu", backend: str = "triton"):
    """[(name, prod, run)]: each launcher at production sizes on tiny inputs; ``run()`` returns
    the outputs and the gradients of the inputs (the same draws for every backend).

    ``prod`` marks what must not spill: d <= 128, eval k <= 128, float32/bfloat16/float16.
    d = 256 (dot_logsumexp's MAX_D) and k = 256 (masked_topk's MAX_K) are supported, not
    production: they must compile and fit shared memory, and may spill.
    """
    import numpy as np
    import torch

    from fastgcn_denoise import BipartiteGraph, ops
    from fastgcn_denoise.kernels.topk import masked_topk

    be, seed, off = backend, 0x1234_5678_9ABC, 3 << 40
    us, its = np.nonzero(np.random.default_rng(0).random((9, 7)) < 0.4)
    g = BipartiteGraph(us, its, 9, 7).to(device)
    halfs = (torch.float32, torch.bfloat16, torch.float16)
    leaves = []

    def rand(*shape, dtype=torch.float32):
        leaves.append(torch.randn(*shape).to(dtype).to(device).requires_grad_())
        return leaves[-1]

    def on(t):
        return t.to(device)

    def name(dtype):
        return str(dtype).removeprefix("torch.")

    def spmm(dtype, d, mode, self_loop):
        xu, xi = rand(g.num_users, d, dtype=dtype), rand(g.num_items, d, dtype=dtype)
        phi = rand(g.num_edges)
        yu, yi = ops.masked_spmm(
            g,
            xu,
            xi,
            None if mode == "ones" else phi,
            mode,
            seed,
            off,
            self_loop=self_loop,
            backend=be,
        )
        (yu.float().square().sum() + yi.float().sum()).backward()
        return [yu, yi]

    def dual(dtype):
        xu, xi = rand(g.num_users, 64, dtype=dtype), rand(g.num_items, 64, dtype=dtype)
        outs = ops.masked_spmm_dual(g, xu, xi, rand(g.num_edges), seed, off, backend=be)
        sum(y.float().sum() for pair in outs for y in pair).backward()
        return [y for pair in outs for y in pair]

    def gate_arm():
        phi = rand(3, g.num_edges)
        z = ops.gate(phi, "hard_concrete", seed, off, backend=be)
        z.sum().backward()
        return [z] + [
            ops.arm_grad(phi.detach(), seed, off, 1.0, 0.5, est, backend=be)
            for est in ("arm", "disarm")
        ]

    def sddmm(d):
        out = ops.sddmm(g, rand(g.num_users, d), rand(g.num_items, d), backend=be)
        out.sum().backward()
        return [out]

    def segment_topk():
        rowptr, vals = on(torch.tensor([0, 5, 5, 40, 300])), on(torch.randn(300))
        return [
            t
            for k in (10, 30)
            for largest in (True, False)
            for t in ops.segment_topk(rowptr, vals, k, largest, backend=be)
        ]

    def cosine(dk, dv):
        ku, ki = rand(g.num_users, dk), rand(g.num_items, dk)
        vu, vi = rand(g.num_users, dv), rand(g.num_items, dv)
        yu, yi, au, ai = ops.cosine_attention(g, ku, ki, vu, vi, 1.0, backend=be)
        (yu.sum() + yi.square().sum() + au.sum() + ai.square().sum()).backward()
        y1 = ops.cosine_attention(g, ku, ki, None, vi, 1.0, backend=be)[0]
        y1.sum().backward()
        return [yu, yi, au, ai, y1]

    def lse(d, masked, dtype=torch.float32):
        q, k = rand(40, d, dtype=dtype), rand(70, d, dtype=dtype)
        kw = (
            {
                "query_mask": on(torch.rand(40, 40) < 0.3),
                "key_mask": on(torch.rand(70, 40) < 0.3),
                "slack": 1,
            }
            if masked
            else {}
        )
        out = ops.dot_logsumexp(q, k, 0.2, backend=be, **kw)
        out.float().sum().backward()
        return [out]

    def all_pairs(kind):
        nf, d, b, hid = 20, 8, 8, 32  # the L0-SIGN config defaults: dim, edge_dim, hidden
        ptr, nodes = on(torch.tensor([0, 5, 5, 17, 30])), on(torch.randint(0, nf, (30,)))
        h = [rand(hid, d), rand(hid), rand(d, hid), rand(d)]
        gate = (
            {}
            if kind == "none"
            else {
                "edge_emb": rand(nf, b),
                "gate_weights": [rand(hid, b), rand(hid), rand(1, hid), rand(1)],
            }
        )
        out = ops.all_pairs_interaction(
            ptr, nodes, rand(nf, d), h, kind=kind, seed=seed, offset=off, backend=be, **gate
        )
        (out.pooled.sum() + out.l0.sum() + out.l2.sum()).backward()
        return [out.pooled, out.l0, out.l2, out.kept]

    def topk(dtype, d, k):
        ue, ie = on(torch.randn(40, d).to(dtype)), on(torch.randn(300, d).to(dtype))
        col = on(torch.randint(0, 300, (80,)).sort().values)
        users, rowptr = on(torch.arange(20)), on(torch.arange(0, 82, 2))
        if be == "reference":  # the top scores with each user's two exclusions masked
            s = (ue[users] @ ie.T).float()
            s[torch.arange(20, device=device).repeat_interleave(2), col[:40]] = float("-inf")
            return [s.sort(dim=1, descending=True).values[:, :k]]
        return [masked_topk(ue, ie, users, rowptr, col, k)[1]]

    cases = [
        (f"masked_spmm {mode} {name(dt)} d{d}", True, spmm, (dt, d, mode, loop))
        for dt in halfs
        for d in (64, 128)
        for mode, loop in (("ones", False), ("hard_concrete", True), ("expect", False))
    ]
    cases += [(f"masked_spmm_dual {name(dt)}", True, dual, (dt,)) for dt in halfs]
    cases += [("gate/arm_grad", True, gate_arm, ()), ("segment_topk", True, segment_topk, ())]
    cases += [(f"sddmm d{d}", True, sddmm, (d,)) for d in (64, 128)]
    cases += [
        (f"cosine_attention dk{a} dv{b}", True, cosine, (a, b))
        for a, b in ((64, 64), (64, 128), (128, 64), (64, 16))
    ]
    cases += [
        (f"dot_logsumexp {name(dt)} d{d}", d <= 128, lse, (d, False, dt))
        for dt in (torch.float32,)
        for d in (64, 128, 256)
    ]
    cases += [("dot_logsumexp masked d64", True, lse, (64, True))]
    cases += [
        (f"all_pairs {k}", True, all_pairs, (k,))
        for k in ("hard_concrete", "hard_concrete_mean", "none")
    ]
    cases += [
        (f"masked_topk {name(dt)} k{k}", k <= 128, topk, (dt, 64, k))
        for dt in (torch.float32, torch.bfloat16)
        for k in (10, 20, 50, 100, 256)
    ]

    def runner(fn, args):
        def run():
            torch.manual_seed(0)
            leaves.clear()
            outs = fn(*args)
            return [t.detach() for t in outs] + [x.grad for x in leaves if x.grad is not None]

        return run

    return [(name, prod, runner(fn, args)) for name, prod, fn, args in cases]


def production_launches(only: str = "") -> tuple[list[dict], list[str]]:
    """(records, failures): every production case run under the interpreter, recorded."""
    os.environ["TRITON_INTERPRET"] = "1"
    install_recorder()
    failures = []
    for name, prod, run in production_cases():
        if only in name:
            with _case(name, prod):
                try:
                    run()
                except Exception as exc:  # noqa: BLE001  (reported, and a failed check)
                    failures.append(f"{name}: {type(exc).__name__}: {exc}")
    return list(_SEEN.values()), failures


def smoke(device: str, names=SMOKE, list_only: bool = False) -> int:
    """One call of every op (``names``: the SMOKE cases) with the Triton backend on ``device``
    against the reference; on a GPU it also fills Triton's cache for the tests that follow.
    Prints one line per case; returns the number that failed."""
    import torch

    if device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"
    cases = {name: run for name, _, run in production_cases(device, "triton")}
    refs = {name: run for name, _, run in production_cases(device, "reference")}
    unknown = [n for n in names if n not in cases]
    if unknown:
        print(f"aot_compile smoke: unknown cases {unknown}", file=sys.stderr)
        return len(unknown)
    if list_only:
        print("\n".join(names))
        return 0
    failed = 0
    for name in names:
        t0 = time.time()
        try:
            got, want = cases[name](), refs[name]()
            assert len(got) == len(want), f"{len(got)} outputs, the reference {len(want)}"
            for i, (a, b) in enumerate(zip(got, want)):
                half = a.dtype in (torch.float16, torch.bfloat16)
                torch.testing.assert_close(
                    a.to(b.dtype),
                    b,
                    rtol=2e-2 if half else 1e-4,
                    atol=2e-2 if half else 1e-4,
                    equal_nan=True,
                    msg=lambda m, i=i: f"output {i}: {m}",
                )
            verdict = "ok"
        except Exception as exc:  # noqa: BLE001  (reported per case)
            failed += 1
            verdict = f"FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        print(f"smoke {name}: {verdict} ({time.time() - t0:.1f} s)", flush=True)
    return failed


# --------------------------------------------------------------------------- compiling
class _Ptr:
    """A stand-in tensor for the binder: a dtype and a 16-byte aligned (or not) address."""

    def __init__(self, dtype, aligned: bool):
        self.dtype, self._addr = dtype, 0 if aligned else 8

    def data_ptr(self) -> int:
        return self._addr


def _kernel(rec):
    return getattr(importlib.import_module(rec["module"]), rec["kernel"])


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (ptxas): a busy machine's wall time
    says little about CI's."""
    import resource

    return time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime


def compile_one(rec: dict, arch: int) -> dict:
    """Compile one specialisation for sm_<arch>: registers, spill bytes, shared bytes, CPU
    seconds."""
    import torch
    import triton
    import triton.language as tl
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    fn = _kernel(rec)
    args, kwargs = [], dict(rec["options"])
    for p in rec["params"]:
        ((kind, val),) = ((k, v) for k, v in p["value"].items() if k != "align16")
        if kind == "tl_dtype":
            val = tl.dtype(val)
        elif kind == "tensor":
            val = _Ptr(getattr(torch, val), p["value"]["align16"])
        elif kind == "int" and not p["constexpr"]:  # generic: no value specialisation
            val = 17 if _int_width(val) == "i32" else 2**33 + 1
        elif kind == "none":
            val = None
        (kwargs.__setitem__(p["name"], val) if p["constexpr"] else args.append(val))
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    # The launch options JITFunction.run adds (the set differs between Triton versions).
    known = backend.parse_options({}).__dict__
    kwargs.update({k: v for k, v in (("debug", False), ("instrumentation_mode", "")) if k in known})
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, spec, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, spec, options)
    knobs.nvidia.dump_ptxas_log = True
    log, t0 = io.StringIO(), _cpu_seconds()
    with contextlib.redirect_stdout(log):
        k = triton.compile(
            ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__
        )
    out = {
        "seconds": round(_cpu_seconds() - t0, 2),
        "shared": k.metadata.shared,
        "num_warps": k.metadata.num_warps,
    }
    for name, pat in _PTXAS.items():
        m = re.search(pat, log.getvalue())
        out[name] = int(m.group(1)) if m else 0
    return out


def _job(job):
    key, rec, arch = job
    try:
        return key, {"ok": True, **compile_one(rec, arch)}
    except Exception as exc:  # noqa: BLE001  (a compile error is a result)
        lines = str(exc).strip().splitlines() or [""]
        return key, {"ok": False, "error": f"{type(exc).__name__}: {' | '.join(lines[:4])[:400]}"}


def _source_hash(rec, hashes: dict) -> str:
    """The kernel's source and its jitted callees (Triton's own cache key of the function)."""
    name = (rec["module"], rec["kernel"])
    if name not in hashes:
        hashes[name] = _kernel(rec).cache_key
    return hashes[name]


def _save(path: str, cache: dict):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(cache, f)
    os.replace(path + ".tmp", path)


def compile_all(
    recs: list[dict], archs, jobs: int, cache_path: str | None, test_archs=(90,)
) -> list[dict]:
    """One result per (record, arch): the record's identity plus compile_one's fields or error.

    Production records compile for every target in ``archs``; test-only ones (float64, odd tile
    overrides: what the interpreter reaches, not what a GPU runs) for those also in
    ``test_archs``: their compile errors are what they can show, and those come from the
    target-independent passes; it halves the CI time.
    """
    import triton

    os.environ.pop("TRITON_INTERPRET", None)
    version = triton.__version__
    cache = {}
    if cache_path and os.path.exists(cache_path):
        with open(cache_path) as f:
            cache = json.load(f)
    hashes, todo, keys = {}, {}, []
    for rec in recs:
        for arch in (a for a in archs if rec.get("prod") or a in test_archs):
            key = hashlib.sha256(
                json.dumps([_source_hash(rec, hashes), spec_key(rec), arch, version]).encode()
            ).hexdigest()
            keys.append((rec, arch, key))
            if key not in cache:
                todo[key] = (key, rec, arch)
    print(
        f"aot_compile: triton {version}: {len(recs)} specialisations x {len(archs)} targets, "
        f"{len(todo)} to compile ({jobs} processes)",
        file=sys.stderr,
    )
    # A throw-away Triton cache: each compile really runs ptxas (its report is the result).
    with tempfile.TemporaryDirectory(prefix="aot_triton_") as tmp:
        os.environ["TRITON_CACHE_DIR"] = tmp
        with contextlib.ExitStack() as stack:
            if jobs > 1 and len(todo) > 1:
                from concurrent.futures import ProcessPoolExecutor

                pool = stack.enter_context(ProcessPoolExecutor(jobs))
                done = pool.map(_job, todo.values(), chunksize=1)
            else:
                done = map(_job, todo.values())
            for n, (key, res) in enumerate(done, 1):
                cache[key] = res
                if cache_path and (n % 20 == 0 or n == len(todo)):  # a killed run keeps these
                    _save(cache_path, cache)
                    print(f"aot_compile: {n}/{len(todo)} compiled", file=sys.stderr)
    return [
        {
            "kernel": f"{rec['module'].rsplit('.', 1)[-1]}:{rec['kernel']}",
            "arch": arch,
            "triton": version,
            "prod": rec.get("prod", False),
            "spec": spec_label(rec),
            **cache[key],
        }
        for rec, arch, key in keys
    ]


def spec_label(rec: dict) -> str:
    """A short human label: non-index dtypes, constexprs, wide ints, options."""
    vals = [p["value"] for p in rec["params"]]
    dts = sorted({v["tensor"] for v in vals if "tensor" in v} - {"int64", "int32"})
    parts = [
        f"{p['name']}={next(iter(p['value'].values()))}" for p in rec["params"] if p["constexpr"]
    ]
    wide = [
        p["name"]
        for p in rec["params"]
        if not p["constexpr"] and "int" in p["value"] and _int_width(p["value"]["int"]) != "i32"
    ]
    opts = [f"{k}={v}" for k, v in sorted(rec["options"].items())]
    return " ".join(["/".join(dts)] + parts + [f"{w}:i64" for w in wide] + opts)


# --------------------------------------------------------------------------- the check
def problems(results: list[dict]) -> list[str]:
    """What fails the check: compile errors, production spills on sm_90 (under every Triton
    checked; sm_80's are reported in the rows), shared memory over the target's."""
    out = []
    for r in results:
        where = f"{r['kernel']} sm_{r['arch']} triton {r['triton']} [{r['spec']}]"
        if not r["ok"]:
            out.append(f"compile error: {where}: {r['error']}")
        elif r["prod"] and r["arch"] in SPILL_ARCHS and r["spill_store"] + r["spill_load"]:
            out.append(
                f"spill: {where}: {r['spill_store']} B stored / {r['spill_load']} B loaded"
                f" ({r['regs']} registers)"
            )
        elif r["shared"] > SMEM_MAX[r["arch"]]:
            out.append(f"shared memory: {where}: {r['shared']} B > {SMEM_MAX[r['arch']]} B")
    return out


def summary_rows(results: list[dict]) -> list[dict]:
    """One row per (kernel, arch, triton): the shape of bench/results/triton_compile.json."""
    groups = collections.defaultdict(list)
    for r in results:
        groups[(r["kernel"], r["arch"], r["triton"])].append(r)
    rows = []
    for (kernel, arch, version), rs in sorted(groups.items()):
        ok = [r for r in rs if r["ok"]]
        prod = [r for r in ok if r["prod"]]
        rows.append(
            {
                "kernel": kernel,
                "arch": arch,
                "triton": version,
                "variants": len(rs),
                "compiled": len(ok),
                "max_regs": max((r["regs"] for r in ok), default=None),
                "max_spill_bytes": max((r["spill_store"] for r in ok), default=None),
                "max_prod_spill_bytes": max((r["spill_store"] for r in prod), default=0),
                "max_shared_bytes": max((r["shared"] for r in ok), default=None),
                "compile_seconds": round(sum(r.get("seconds", 0) for r in ok), 1),
            }
        )
    return rows


def _compile_main(a) -> int:
    recs = [r for r in read_records(a.records) if a.only in f"{r['module']}:{r['kernel']}"]
    results = compile_all(recs, a.arch or ARCHS, a.jobs, a.cache, a.test_arch or (90,))
    with open(a.results, "w") as f:
        json.dump(results, f)
    return 0


def _check_main(a) -> int:
    t0 = time.time()
    os.makedirs(a.workdir, exist_ok=True)
    prod_path = os.path.join(a.workdir, "production.jsonl")
    if os.path.exists(prod_path):
        os.remove(prod_path)
    # Recording imports the kernels under the interpreter; compiling needs them real: two
    # processes.
    rc = subprocess.run(
        [sys.executable, __file__, "record", "--out", prod_path], check=False
    ).returncode
    if rc:
        print(f"aot_compile: recording the production launches failed (exit {rc})", file=sys.stderr)
        return 1
    records = [prod_path] + [p for p in a.records if os.path.exists(p)]
    missing = [p for p in a.records if not os.path.exists(p)]
    if missing:
        print(
            f"aot_compile: no test records at {', '.join(missing)} (run `make test` first); "
            "production launches only",
            file=sys.stderr,
        )
    results = []
    for side in [None] + a.side:
        out = os.path.join(a.workdir, f"results_{len(results)}.json")
        env = dict(os.environ)
        env.pop("TRITON_INTERPRET", None)
        if side:
            # No empty entry: it would put the working directory, the source tree, before the
            # installed package whose compiled parts this checks.
            rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(side), *rest])
        cmd = [
            sys.executable,
            __file__,
            "compile",
            *records,
            "--results",
            out,
            "--jobs",
            str(a.jobs),
            "--cache",
            os.path.join(a.workdir, "cache.json"),
        ]
        for arch in a.arch or ARCHS:
            cmd += ["--arch", str(arch)]
        for arch in a.test_arch or ():
            cmd += ["--test-arch", str(arch)]
        rc = subprocess.run(cmd, env=env, check=False).returncode
        if rc:
            print(
                f"aot_compile: compiling with {side or 'this environment'}'s Triton failed to "
                f"run (exit {rc})",
                file=sys.stderr,
            )
            return 1
        with open(out) as f:
            results += json.load(f)
    import torch
    import triton

    report = {
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "triton": sorted({r["triton"] for r in results}),
            "ci_triton": triton.__version__,
            "machine": platform.machine(),
            "int_arguments": "generic (neither 1 nor a multiple of 16)",
            "seconds": round(time.time() - t0, 1),
        },
        "rows": summary_rows(results),
        "problems": problems(results),
    }
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    print("| kernel | sm | triton | ok/variants | regs max | spill B max (prod) | shared B max |")
    print("|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        print(
            f"| {r['kernel']} | {r['arch']} | {r['triton']} | {r['compiled']}/{r['variants']} "
            f"| {r['max_regs']} | {r['max_spill_bytes']} ({r['max_prod_spill_bytes']}) "
            f"| {r['max_shared_bytes']} |"
        )
    for p in report["problems"]:
        print(f"aot_compile: {p}", file=sys.stderr)
    print(
        f"aot_compile: {len(results)} compiles, {len(report['problems'])} problems, "
        f"{report['environment']['seconds']} s",
        file=sys.stderr,
    )
    return 1 if report["problems"] else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="record the production launches (interpreter)")
    rec.add_argument("--out", required=True, help="JSON-lines file (merged into)")
    rec.add_argument("--only", default="", help="keep the cases whose name has this")
    smk = sub.add_parser("smoke", help="one call of every op against the reference")
    smk.add_argument("--device", default="cuda")
    smk.add_argument("--list", action="store_true", help="resolve the cases, run nothing")
    for name in ("compile", "check"):
        p = sub.add_parser(name)
        p.add_argument("--arch", type=int, action="append", help="sm x 10 (default 90 and 80)")
        p.add_argument("--jobs", type=int, default=2)
        p.add_argument(
            "--test-arch",
            type=int,
            action="append",
            help="targets of the test-only records (default 90)",
        )
    comp, check = sub.choices["compile"], sub.choices["check"]
    comp.add_argument("records", nargs="+")
    comp.add_argument("--results", required=True, help="JSON list of every compile's result")
    comp.add_argument("--cache", help="JSON results cache (by source hash and specialisation)")
    comp.add_argument("--only", default="", help="keep kernels whose 'module:name' has this")
    check.add_argument("--records", nargs="*", default=[], help="test launches (AOT_RECORD)")
    check.add_argument(
        "--side",
        action="append",
        default=[],
        help="a folder holding another Triton (pip install --target DIR)",
    )
    check.add_argument("--workdir", default="build/aot")
    check.add_argument("--json", help="the report (bench/results/triton_compile.json)")
    a = ap.parse_args(argv)
    if a.cmd == "record":
        recs, failures = production_launches(a.only)
        merge_records(a.out, recs)
        for f in failures:
            print(f"aot_compile: production launch failed: {f}", file=sys.stderr)
        print(f"aot_compile: {len(recs)} production specialisations -> {a.out}", file=sys.stderr)
        return 1 if failures else 0
    if a.cmd == "smoke":
        return 1 if smoke(a.device, list_only=a.list) else 0
    return _compile_main(a) if a.cmd == "compile" else _check_main(a)


if __name__ == "__main__":
    sys.exit(main())
