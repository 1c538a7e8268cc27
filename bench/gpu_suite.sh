#!/usr/bin/env bash
# One command for a bare GPU machine (no network; torch, triton, cupy, pytest and pytest-benchmark
# preinstalled): install the package with its CUDA kernels, run the tests on CUDA, then run the
# benchmark suite on CUDA (the cupy peers, cuSPARSE SpMM and cupyx svds, run when cupy imports).
# Every step runs under `timeout` so the whole stays under 10 minutes; a step that fails or times
# out is recorded and the next one still runs (exit status 1 if any did).
#
#   bash bench/gpu_suite.sh OUTDIR
#
# Writes into OUTDIR: install.log, tests.log, bench.log, dgr_bench.log; bench_cuda.json and
# bench_lec_dgr_step_cuda.json with their PNGs (each JSON is rewritten after every op, so a run
# cut short keeps what it measured); steps.txt (each
# step's exit status and seconds, 124 = timed out); nvidia-smi.txt.
# Environment: PYTHON (default python), INSTALL_TIMEOUT (default 240 s), TEST_TIMEOUT (150),
# BENCH_TIMEOUT (180), DGR_BENCH_TIMEOUT (60), BENCH_ARGS (more `python -m bench` flags, e.g.
# "--graphs synth-5e7").
set -uo pipefail

out=${1:?usage: bash bench/gpu_suite.sh OUTDIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
status=0

step() {  # step NAME LIMIT_S LOG COMMAND...
    local name=$1 limit=$2 log=$3 t0=$SECONDS rc
    shift 3
    echo "== $name (at most ${limit} s) -> $log"
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - t0))" | tee -a "$out/steps.txt"
    tail -n 5 "$log"
    [ "$rc" -eq 0 ] || status=1
}

: >"$out/steps.txt"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
step install "${INSTALL_TIMEOUT:-240}" "$out/install.log" \
    env FORCE_CUDA=1 MAX_JOBS=16 "$py" -m pip install --no-build-isolation --no-deps -e .
step tests "${TEST_TIMEOUT:-150}" "$out/tests.log" \
    bash -c 'cd tests && exec "$0" -m pytest -q -p no:cacheprovider .' "$py"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
step bench "${BENCH_TIMEOUT:-180}" "$out/bench.log" \
    "$py" -u -m bench --device cuda --out "$out" ${BENCH_ARGS:-}
# DGR (issue 12): LEC neighbour lists (cuSPARSE product + Triton segmented top-k) and the step
# costs of GMP / DGR / SimGCL / XSimGCL on Gowalla -> bench_lec_dgr_step_cuda.json. The paper's
# Gowalla training protocol is a separate call: bash bench/dgr_gowalla_gpu.sh OUTDIR.
step dgr_bench "${DGR_BENCH_TIMEOUT:-60}" "$out/dgr_bench.log" \
    "$py" -u -m bench --device cuda --ops lec dgr_step --graphs gowalla --dims 64 --out "$out"
exit $status
