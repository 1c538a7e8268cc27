#!/usr/bin/env bash
# Study: the training runs behind bench/studies/dgr_report.py's question (does DGR improve its
# backbones on the Yelp split?). Answer: bench/results/dgr_yelp_cpu.json.
# DGR quality on the LightGNN Yelp split (../shared/data/yelp_lightgnn: 42,712 users, 26,822
# items, 182,357 train / 13,025 valid / 65,128 test), the CPU schedule of issue 12: every run the
# same budget and rule -- d = 64, 3 layers, Adam 1e-3, batch 2048, at most EPOCHS epochs, valid
# Recall@20 every 5 epochs, early stop after 5 evaluations without a better one, the selected
# epoch tested once. One run at a time (nice 10, OMP_NUM_THREADS=1: on the shared 2-core machine
# two OpenMP threads stall on each other), each under RUN_TIMEOUT; a cut run resumes with
# RESUME=1. Then the table and curves: python -m bench.studies.dgr_report OUT/* --out ...
#
#   bash bench/studies/dgr_yelp_cpu.sh OUTDIR [RUN ...]
#
# RUN names (default: all, in this order): lightgcn, lightgcn+dgr, simgcl, simgcl+dgr, xsimgcl,
# xsimgcl+dgr, lightgcn+gmp (GMP only), lightgcn+lec (LEC only).
# Environment: PYTHON (default python), EPOCHS (100), RUN_TIMEOUT (seconds, 10800), RESUME.
set -uo pipefail

out=${1:?usage: bash bench/studies/dgr_yelp_cpu.sh OUTDIR [RUN ...]}
shift
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/../.."
py=${PYTHON:-python}
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(lightgcn lightgcn+dgr simgcl simgcl+dgr xsimgcl xsimgcl+dgr
                               lightgcn+gmp lightgcn+lec)
status=0
for run in "${runs[@]}"; do
    # The DGR settings this study ran with (the defaults until issue 23 changed them).
    paper=(--dgr-self-loops --dgr-z degree_sum --lec-pos-weight 1e-2 --lec-neg-weight 5e-6)
    case $run in
        *+gmp) flags=(--dgr --no-dgr-lec "${paper[@]}") ;;
        *+lec) flags=(--dgr --no-dgr-gmp "${paper[@]}") ;;
        *+dgr) flags=(--dgr "${paper[@]}") ;;
        *) flags=() ;;
    esac
    [ "${RESUME:-0}" = 1 ] && flags+=(--resume)
    echo "== $run $(date -u +%H:%M:%S)"
    OMP_NUM_THREADS=1 timeout --kill-after=30 "${RUN_TIMEOUT:-10800}" nice -n 10 \
        "$py" -u -m fastgcn_denoise train --model "${run%%+*}" "${flags[@]}" \
        --data ../shared/data/yelp_lightgnn --epochs "${EPOCHS:-100}" --eval-every 5 \
        --patience 5 --out "$out/$run" >"$out/$run.log" 2>&1
    rc=$?
    echo "$run rc=$rc $(date -u +%H:%M:%S)" | tee -a "$out/steps.txt"
    [ "$rc" -eq 0 ] || status=1
done
exit $status
