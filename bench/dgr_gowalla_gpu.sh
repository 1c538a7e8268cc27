#!/usr/bin/env bash
# The DGR paper's Gowalla protocol on a lent GPU (Table 1: LightGCN 0.1832 -> LightGCN+DGR 0.1880
# Recall@20; SimGCL 0.1821 -> 0.1860): d = 64, 3 layers, Adam 1e-3, batch 2048, up to EPOCHS
# epochs, selected on a validation split of train (10%; the paper selects on test), tested once.
# Each run stops at its own time limit; what it reached is in its log.jsonl (the learning curve,
# with row_diff / MAD at every evaluation) and, when it ends before the limit, metrics.json; the
# trainer checkpoints every epoch, so a later call continues a run with RESUME=1. Run after
# bench/gpu_suite.sh has installed the package (or with PYTHON pointing at an environment with it).
#
#   bash bench/dgr_gowalla_gpu.sh OUTDIR
#
# Environment: PYTHON (default python), EPOCHS (default 1000), RUN_TIMEOUT (seconds per run,
# default 140), MODELS (default "lightgcn lightgcn+dgr simgcl simgcl+dgr"), RESUME (1: continue).
set -uo pipefail

out=${1:?usage: bash bench/dgr_gowalla_gpu.sh OUTDIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
status=0
for spec in ${MODELS:-lightgcn lightgcn+dgr simgcl simgcl+dgr}; do
    model=${spec%+dgr}
    flags=()
    [ "$spec" != "$model" ] && flags=(--dgr)
    [ "${RESUME:-0}" = 1 ] && flags+=(--resume)
    echo "== $spec (at most ${RUN_TIMEOUT:-140} s)"
    timeout --kill-after=10 "${RUN_TIMEOUT:-140}" "$py" -u -m fastgcn_denoise train --model "$model" \
        "${flags[@]}" --device cuda --data ../shared/data/gowalla --epochs "${EPOCHS:-1000}" \
        --eval-every 10 --out "$out/$spec" >"$out/$spec.log" 2>&1
    rc=$?
    echo "$spec rc=$rc" | tee -a "$out/steps.txt"
    tail -n 3 "$out/$spec.log"
    [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || status=1
done
exit $status
