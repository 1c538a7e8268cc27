#!/usr/bin/env bash
# Compile csrc/cuda/*.cu for sm_90 and sm_80 without a GPU: nvcc, its cccl/runtime/crt headers and
# nvvm from PyPI (installed with `pip install --target DIR`), against the venv's (CPU) torch headers.
# Prints ptxas's registers and spills per kernel; exit 1 on a compile error or a spill.
#
#   PYTHON=.venv/bin/python bash tools/cuda_check.sh .venv/nvcc      (make cuda-check)
#
# CUDA_VERSION (default 13.0, what the GPU machines run) picks the packages. The CPU torch wheel
# lacks the one header CMake generates for its CUDA build (c10/cuda/impl/cuda_cmake_macros.h): a
# stand-in defines what the CUDA wheel's does.
set -euo pipefail
dir=${1:?usage: tools/cuda_check.sh NVCC_DIR}
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
cuda=${CUDA_VERSION:-13.0}
if [ ! -x "$dir/nvidia/cu13/bin/nvcc" ]; then
    # One install of all five: a later `pip install --target` would replace the shared nvidia/.
    rm -rf "$dir"
    "$py" -m pip install -q --target "$dir" "nvidia-cuda-nvcc==$cuda.*" "nvidia-cuda-cccl==$cuda.*" \
        "nvidia-cuda-runtime==$cuda.*" "nvidia-cuda-crt==$cuda.*" "nvidia-nvvm==$cuda.*"
fi
home=$(cd "$dir/nvidia/cu13" && pwd)
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
mkdir -p "$stub/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' >"$stub/c10/cuda/impl/cuda_cmake_macros.h"
incs_txt=$("$py" -c "
import sysconfig
from torch.utils.cpp_extension import include_paths
print(*include_paths(), sysconfig.get_paths()['include'], sep='\n')")
mapfile -t incs <<<"$incs_txt"
flags=(-std=c++17 -O3 -DWITH_CUDA -Icsrc -I"$stub" "${incs[@]/#/-I}" -I"$home/include/cccl"
       -Xptxas -v -diag-suppress 3306,20012)
status=0
for src in csrc/cuda/*.cu; do
    for arch in 90 80; do
        log="$stub/$(basename "$src" .cu)_sm$arch.log"
        if ! "$home/bin/nvcc" "${flags[@]}" -gencode "arch=compute_$arch,code=sm_$arch" \
                -c "$src" -o "$stub/out.o" >"$log" 2>&1; then
            echo "cuda-check: $src sm_$arch: compile error"; grep -m 20 -i error "$log"; status=1
            continue
        fi
        # ptxas: "Compiling entry function 'NAME'" ... "Used N registers" per kernel.
        awk -v src="$src" -v arch="$arch" '
            /Compiling entry function/ { match($0, /'"'"'[^'"'"']+'"'"'/); name = substr($0, RSTART + 1, RLENGTH - 2) }
            /bytes spill stores/ { spill = $0; sub(/.*ptxas info *: */, "", spill) }
            /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15)
                printf "%s sm_%s regs=%s %s %s\n", src, arch, regs, spill, substr(name, length(name) - 59)
                if (spill !~ /0 bytes spill stores, 0 bytes spill loads/) bad = 1 }
            END { exit bad }' "$log" || { echo "cuda-check: $src sm_$arch spills"; status=1; }
    done
done
exit $status
