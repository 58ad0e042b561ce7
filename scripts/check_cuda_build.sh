#!/usr/bin/env bash
# Compile check of `ust` with `--features cuda` on a machine without a GPU or a CUDA install
# (issue 19): nvcc and the CUDA headers come from PyPI into a scratch folder, then
# `cargo check` builds candle's CUDA back end, its PTX kernels included. Nothing runs on a GPU.
#
#   scripts/check_cuda_build.sh [SCRATCH_DIR]     (default /tmp/ust-cuda; about 7 minutes on 2 cores)
#
# Measured 2026-12-07 with nvidia-cuda-nvcc 13.5.37: cudarc 0.19.10 knows CUDA up to 13.4, so
# the version is given as 13.4 (CUDARC_CUDA_VERSION); `nv/target`, which cuda_fp16.h includes,
# is in the separate nvidia-cuda-cccl package. Not part of CI (the download and the kernels
# cost minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="${1:-/tmp/ust-cuda}"
cuda="$scratch/nvidia/cu13"
if [ ! -x "$cuda/bin/nvcc" ]; then
    python3 -m pip install --quiet --target "$scratch" "nvidia-cuda-nvcc==13.*" "nvidia-cuda-cccl==13.*"
fi
[ -x "$cuda/bin/nvcc" ] || { echo "no nvcc under $cuda after the install" >&2; exit 1; }
export PATH="$cuda/bin:$PATH" CUDA_ROOT="$cuda" CUDA_PATH="$cuda"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13040}" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
nvcc --version | tail -n 1
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$scratch/target}" cargo check --locked -p ust-cli --features cuda
echo "ust-cli with --features cuda: compile check passed"
