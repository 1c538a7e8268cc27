#!/usr/bin/env bash
# One command for the GPU machines the project is lent: python3 3.12 with torch 2.11, Triton 3.6,
# nvcc 13.0 and pytest preinstalled, NO network (a missing wheel must travel with the tree: pip
# runs with --no-index and finds wheels in wheels/ if there is one), 15 minutes of GPU time.
#
#   bash bench/gpu_suite.sh OUTDIR              the run (~6 minutes, see the budget below)
#   bash bench/gpu_suite.sh OUTDIR --dry-run    every step that needs no GPU, on the CPU (CI:
#                                               tests/test_gpu_suite.py): files, names, imports
#
# Steps, in order of importance, each under `timeout`, each writing as it goes (a step cut short
# keeps what it wrote; steps.txt has every step's exit status and seconds, 124 = timed out):
#   install  FORCE_CUDA=1 build of the package with its CUDA kernels (an error if it cannot)
#   smoke    one call of every op with the Triton backend on CUDA against the reference
#            (tools/aot_compile.py smoke); fills Triton's cache with the production kernels
#   tests    the CUDA/Triton tests only, in parallel: PARALLEL pytest processes over the test
#            files of the GPU ops (-k "triton or cuda"), one log and one junit XML each
#   bench    python -m bench on Gowalla (data from FASTGCN_SHARED_DATA) and one synthetic
#            5e7-interaction graph, d = 64, the ops of BENCH_OPS (JSON rewritten after each op)
#   speed    python -m bench.speed on CUDA: the speed scoreboard's rows (mask, L0-SIGN, GMP,
#            SimGCL steps, the LightGCN epoch, the layer), 3 repeats, into OUT/bench
#
# Budget (seconds), from the compile counts of bench/results/triton_compile.json: the tests and
# the production launches reach 396 specialisations of 16 Triton kernels; compiling them ahead of
# time took 0.4 s of one CPU core each on average (masked_topk 2-10 s), and a GPU run JIT-compiles
# each once, for sm_90 only, into the shared TRITON_CACHE_DIR:
#   install  80   nvcc for 1 .cu file + 8 .cpp files with MAX_JOBS=16 (make cuda-check: ~1.5 min
#                 of one core per target)
#   smoke    60   11 cases, ~30 specialisations (~15 s of compiling) + the calls + CUDA start-up
#   tests   110   the other ~360 specialisations over PARALLEL=8 processes (~20 s of compiling
#                 each) + ~900 CUDA/Triton tests
#   bench   100   two graph builds (the 5e7 synthetic one ~20 s) + the timed cases
#   speed    90   Gowalla and synth-1e5 builds, the two L0-SIGN sets, ~20 timed pairs
#   total   440 s at most (7.3 minutes)
# Environment: PYTHON (python3), FASTGCN_SHARED_DATA (the data sets: gowalla/train.txt),
# PARALLEL (8), BENCH_OPS, per-step limits INSTALL_TIMEOUT SMOKE_TIMEOUT TEST_TIMEOUT
# BENCH_TIMEOUT SPEED_TIMEOUT. The bench modules it calls: python -m bench (ops by name),
# python -m bench.speed, tools/aot_compile.py.
set -uo pipefail

out=${1:?usage: bash bench/gpu_suite.sh OUTDIR [--dry-run]}
dry=0
[ "${2:-}" = "--dry-run" ] && dry=1
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
parallel=${PARALLEL:-8}
bench_ops=${BENCH_OPS:-masked_spmm sgcn_step eval arm_grad dot_logsumexp cosine_attention}
# The test files of the ops with a Triton or CUDA kernel (the rest have nothing to run on a GPU).
test_files=(test_masked_spmm.py test_weighted_spmm.py test_gates.py test_arm_grad.py
            test_segment_topk.py test_cosine_attention.py test_dot_logsumexp.py test_all_pairs.py
            test_eval.py test_sgcn.py test_l0sign.py test_cooccurrence.py test_nuclear_norm.py
            test_library.py test_backend_select.py test_distributed.py test_propagation_rows.py
            test_row_standardised_sddmm.py test_sign_noise.py test_simgcl.py test_rgcf.py
            test_reweight.py)
export FASTGCN_SHARED_DATA=${FASTGCN_SHARED_DATA:-$(pwd)/../shared/data}
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$out/triton_cache}  # shared by smoke and tests
status=0

step() {  # step NAME LIMIT_S COMMAND...: run it under timeout, log to OUT/NAME.log
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    echo "== $name (at most ${limit} s) -> $out/$name.log"
    if declare -F "$1" >/dev/null; then  # a function of this script: it applies the limit
        "$@" "$limit" >"$out/$name.log" 2>&1
    else
        timeout --kill-after=5 "$limit" "$@" >"$out/$name.log" 2>&1
    fi
    rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - t0))" | tee -a "$out/steps.txt"
    tail -n 5 "$out/$name.log"
    [ "$rc" -eq 0 ] || status=1
}

parallel_tests() {  # parallel_tests LIMIT_S: the test files dealt round-robin to $parallel
    local -a pids=() groups=()      # pytest processes, each under the limit
    local limit=$1 i rc=0 extra=()
    [ "$dry" -eq 1 ] && extra=(--collect-only)
    for i in "${!test_files[@]}"; do
        groups[i % parallel]+=" ${test_files[i]}"
    done
    for i in "${!groups[@]}"; do
        # shellcheck disable=SC2086  # a group is a list of file names
        (cd tests && exec timeout --kill-after=5 "$limit" "$py" -m pytest -q -p no:cacheprovider \
            -k "triton or cuda" \
            --junitxml="$out/tests_$i.xml" "${extra[@]}" ${groups[i]}) >"$out/tests_$i.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[i]}" || { rc=1; echo "tests group $i failed: $out/tests_$i.log"; }
        tail -n 1 "$out/tests_$i.log"
    done
    return $rc
}

: >"$out/steps.txt"
if [ "$dry" -eq 1 ]; then
    # What the GPU run would meet, checked without one: the build script parses, the smoke
    # cases and the bench ops resolve, the test files exist and collect, the data is named.
    step install "${INSTALL_TIMEOUT:-80}" "$py" -c "import ast; ast.parse(open('setup.py').read())"
    step smoke "${SMOKE_TIMEOUT:-60}" env TRITON_INTERPRET=1 "$py" tools/aot_compile.py smoke \
        --device cpu --list
    step tests "${TEST_TIMEOUT:-110}" parallel_tests
    # shellcheck disable=SC2086  # BENCH_OPS is a list of op names
    step bench "${BENCH_TIMEOUT:-100}" "$py" -m bench --device cpu --ops $bench_ops \
        --graphs gowalla synth-5e7 --dims 64 --help
    step speed "${SPEED_TIMEOUT:-90}" "$py" -m bench.speed --device cpu --help
    [ -f "$FASTGCN_SHARED_DATA/gowalla/train.txt" ] ||
        echo "note: no $FASTGCN_SHARED_DATA/gowalla/train.txt here (the GPU run needs it)"
    exit $status
fi

{ nvidia-smi; "$py" -c "import sys, torch, triton; print(sys.version); print('torch',
  torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"; } \
    >"$out/environment.txt" 2>&1
step install "${INSTALL_TIMEOUT:-80}" env FORCE_CUDA=1 MAX_JOBS=16 "$py" -m pip install \
    --no-build-isolation --no-deps --no-index --find-links wheels -e .
step smoke "${SMOKE_TIMEOUT:-60}" "$py" -u tools/aot_compile.py smoke --device cuda
step tests "${TEST_TIMEOUT:-110}" parallel_tests
# shellcheck disable=SC2086  # BENCH_OPS is a list of op names
step bench "${BENCH_TIMEOUT:-100}" "$py" -u -m bench --device cuda --ops $bench_ops \
    --graphs gowalla synth-5e7 --dims 64 --out "$out/bench"
step speed "${SPEED_TIMEOUT:-90}" "$py" -u -m bench.speed --device cuda --threads 1 --repeats 3 \
    --out "$out/bench"
exit $status
