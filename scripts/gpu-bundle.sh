#!/usr/bin/env bash
# Builds the CUDA configuration and copies the GPU test and benchmark binaries, with the
# non-system shared libraries they load, into .gpu-bundle/ (git-ignored) for the GPU machine.
# Then run scripts/gpu-run.sh there (see docs/GPU.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATFLEET_CUDA=ON \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" \
  -DCMAKE_CUDA_ARCHITECTURES=90a >/dev/null
ninja -C build-cuda gpu_tests gpu_bench
rm -rf .gpu-bundle
bundler=../shared/gpu/bundle.sh
"$bundler" .gpu-bundle build-cuda/bin/gpu_tests build-cuda/bin/gpu_bench
strip .gpu-bundle/bin/* || true
