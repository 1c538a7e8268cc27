#!/usr/bin/env bash
# Study: which part of DGR (GMP, LEC) and which setting helps LightGCN on the Yelp split, and why
# the paper's defaults lose to LightGCN there (issue 23)? Answer:
# bench/results/dgr_components_yelp_sub.json (+ .png).
#
# Every variant against plain LightGCN on one 12,000-user sample of the LightGNN Yelp split
# (../shared/data/yelp_lightgnn; users drawn by Python's random.Random(0), all their interactions
# kept, items renumbered: 19,168 items, 52,996 train interactions), seed 0, batch 1024, Adam 1e-3,
# at most EPOCHS epochs, valid Recall@20 every 5, early stop after 5 evaluations without a better
# one, the selected epoch tested once. A run cut short is finished with RESUME=1 EPOCHS=N (no
# further training past N: the best epoch so far is tested). Then the table and the curves:
#   python -m bench.studies.dgr_report OUT/* --out bench/results/dgr_components_yelp_sub
#
#   bash bench/studies/dgr_components.sh OUTDIR [RUN ...]
#
# RUN names (default: all): base (LightGCN), dgr_paper (the paper's settings: GMP with
# self-loops, alpha 0.1,1.1,0, Z = degree sum; LEC lambda1 1e-2, lambda2 5e-6), gmp_paper,
# gmp_official (no self-loops, Z = 2 x degree sum), gmp_a01 (official, alpha 0.1 every layer),
# lec_only (lambda1 1e-2), lec_small (lambda1 5e-4, lambda2 5e-7: the official Gowalla values),
# dgr_sparse (gmp_official with lec_small's LEC).
# Environment: PYTHON (default python), EPOCHS (80), RESUME.
set -uo pipefail

out=${1:?usage: bash bench/studies/dgr_components.sh OUTDIR [RUN ...]}
shift
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/../.."
py=${PYTHON:-python}
data=${FASTGCN_SHARED_DATA:-../shared/data}/yelp_lightgnn
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(base dgr_paper gmp_paper gmp_official gmp_a01 lec_only lec_small dgr_sparse)
if [ ! -f "$out/data/train.txt" ]; then
    "$py" - "$data" "$out/data" <<'EOF'
import random, sys
from pathlib import Path

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
def read(name):
    rows = (line.split() for line in (src / name).read_text().splitlines())
    return {int(r[0]): [int(x) for x in r[1:]] for r in rows if len(r) > 1}
train, valid, test = read("train.txt"), read("valid.txt"), read("test.txt")
users = sorted(random.Random(0).sample(sorted(train), 12000))
items = {i: k for k, i in enumerate(sorted({i for u in users for i in train[u]}))}
dst.mkdir(parents=True, exist_ok=True)
for name, part in (("train.txt", train), ("valid.txt", valid), ("test.txt", test)):
    with open(dst / name, "w") as f:
        for k, u in enumerate(users):
            kept = [items[i] for i in part.get(u, []) if i in items]
            if kept:
                f.write(" ".join(map(str, [k, *kept])) + "\n")
EOF
fi
status=0
for run in "${runs[@]}"; do
    case $run in
        base) flags=() ;;
        dgr_paper) flags=(--dgr --dgr-self-loops --dgr-z degree_sum --dgr-alpha 0.1,1.1,0
                          --lec-pos-weight 1e-2 --lec-neg-weight 5e-6) ;;
        gmp_paper) flags=(--dgr --no-dgr-lec --dgr-self-loops --dgr-z degree_sum
                          --dgr-alpha 0.1,1.1,0) ;;
        gmp_official) flags=(--dgr --no-dgr-lec --no-dgr-self-loops --dgr-z twice_degree_sum
                             --dgr-alpha 0.1,1.1,0) ;;
        gmp_a01) flags=(--dgr --no-dgr-lec --no-dgr-self-loops --dgr-z twice_degree_sum
                        --dgr-alpha 0.1) ;;
        lec_only) flags=(--dgr --no-dgr-gmp --lec-pos-weight 1e-2 --lec-neg-weight 5e-6) ;;
        lec_small) flags=(--dgr --no-dgr-gmp --lec-pos-weight 5e-4 --lec-neg-weight 5e-7) ;;
        dgr_sparse) flags=(--dgr --no-dgr-self-loops --dgr-z twice_degree_sum --dgr-alpha 0.1,1.1,0
                           --lec-pos-weight 5e-4 --lec-neg-weight 5e-7) ;;
        *) echo "unknown run $run"; status=1; continue ;;
    esac
    [ "${RESUME:-0}" = 1 ] && flags+=(--resume)
    echo "== $run $(date -u +%H:%M:%S)"
    OMP_NUM_THREADS=1 nice -n 19 "$py" -u -m fastgcn_denoise train --model lightgcn "${flags[@]}" \
        --data "$out/data" --epochs "${EPOCHS:-80}" --batch-size 1024 --eval-every 5 \
        --patience 5 --seed 0 --no-progress --out "$out/$run" >>"$out/$run.log" 2>&1
    rc=$?
    echo "$run rc=$rc $(date -u +%H:%M:%S)"
    [ $rc -ne 0 ] && status=$rc
done
exit $status
