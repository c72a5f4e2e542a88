#!/usr/bin/env bash
# Builds the CUDA configuration and packs what the GPU machine needs into .gpu-bundle/ (git-ignored):
# flatfleet, gpu_tests and gpu_bench with their non-system shared libraries (packed as
# payload.tar.xz, to stay under the 64 MiB a device call carries), the Python baselines, and a copy
# of the shared fixtures the engine checks read (the checkout's ../shared does not travel).
# There: `cd .gpu-bundle && tar xJf payload.tar.xz && cd .. && scripts/gpu-engine-run.sh`
# (or scripts/gpu-run.sh for the kernel tests and benchmarks alone); see docs/GPU.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATFLEET_CUDA=ON \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" \
  -DCMAKE_CUDA_ARCHITECTURES=90a >/dev/null
ninja -C build-cuda flatfleet gpu_tests gpu_bench
rm -rf .gpu-bundle
source scripts/lib/shared-libs.sh
gpu_binaries=(build-cuda/bin/flatfleet build-cuda/bin/gpu_tests build-cuda/bin/gpu_bench)
mkdir -p .gpu-bundle/bin
cp -L "${gpu_binaries[@]}" build-cuda/bin/libflatfleet_sentencepiece.so .gpu-bundle/bin/
# The GPU machine brings its own driver, CUDA runtime, cuBLAS and NCCL.
copy_shared_libs .gpu-bundle/lib --also-exclude "$FLATFLEET_CUDA_LIBS" "${gpu_binaries[@]}" \
  build-cuda/bin/libflatfleet_sentencepiece.so
strip .gpu-bundle/bin/flatfleet .gpu-bundle/bin/gpu_tests .gpu-bundle/bin/gpu_bench || true
mkdir -p .gpu-bundle/python .gpu-bundle/shared/fixtures .gpu-bundle/shared/models \
  .gpu-bundle/shared/data/tinystories
cp bench/python/*.py .gpu-bundle/python/
cp -r ../shared/fixtures/llama-tiny ../shared/fixtures/mixtral-tiny .gpu-bundle/shared/fixtures/
cp -r ../shared/models/stories260K .gpu-bundle/shared/models/
cp ../shared/data/tinystories/valid.txt .gpu-bundle/shared/data/tinystories/
(cd .gpu-bundle && tar cJf payload.tar.xz bin lib && rm -rf bin lib)
du -sh .gpu-bundle
