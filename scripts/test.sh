#!/usr/bin/env bash
# Builds flatfleet and runs every test that a machine without a GPU can run:
#   1. the Release CPU build and all ctest tests (unit, integration, fuzz-corpus replays);
#   2. the CUDA configuration (-DFLATFLEET_CUDA=ON, sm_90a) of the CUDA kernels and GPU tests, so
#      CUDA code cannot rot (the GPU tests skip without a GPU) — skipped when nvcc is absent;
#   3. an ASan+UBSan clang build of the format parsers' tests;
#   4. libFuzzer runs of every fuzz target for a bounded time (FUZZ_SECONDS each, default 20).
# Usage: scripts/test.sh [--quick]   (--quick: stage 1 only)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${JOBS:-$(nproc)}
fuzz_seconds=${FUZZ_SECONDS:-20}
quick=0
[ "${1:-}" = "--quick" ] && quick=1

stage() { printf '\n=== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }
# ccache, where installed, makes rebuilds and the several configurations below much cheaper.
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  # Share cached objects between clones in different directories.
  export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=1
fi

scripts/install-deps.sh
# The deploy checks (tests/deploy) render the manifests with kubectl's built-in kustomize; the
# machine image ships kubectl 1.32 (Debian's kubernetes-client is older and must not replace it).
command -v kubectl >/dev/null || echo "kubectl not found: the deploy manifest checks will skip"

stage "CPU build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
ninja -C build -j"$jobs"

if [ $quick -eq 0 ]; then
  if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
    stage "CUDA configuration build (sm_90a)"
    cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATFLEET_CUDA=ON "${launcher[@]}" \
      -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" \
      -DCMAKE_CUDA_ARCHITECTURES=90a >/dev/null
    ninja -C build-cuda -j"$jobs" gpu_tests
    build-cuda/bin/gpu_tests --gtest_brief=1
  else
    echo "nvcc not found: CUDA configuration not built"
  fi

  stage "Sanitizer build of the parsers (clang-14, ASan+UBSan)"
  cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
    -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
    -DFLATFLEET_PARSERS_ONLY=ON -DFLATFLEET_SANITIZE=ON >/dev/null
  ninja -C build-sanitize -j"$jobs"
  (cd build-sanitize && ctest --output-on-failure -j"$jobs")

  stage "libFuzzer runs (${fuzz_seconds}s per target)"
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
    -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
    -DFLATFLEET_PARSERS_ONLY=ON -DFLATFLEET_FUZZ=ON -DFLATFLEET_SANITIZE=ON >/dev/null
  ninja -C build-fuzz -j"$jobs"
  # Fuzz targets that need a fixture (the HF tokenizer) read it from here.
  export FLATFLEET_SHARED_DIR=${FLATFLEET_SHARED_DIR:-$(cd "$root/.." && pwd)/shared}
  for target in build-fuzz/bin/*_fuzz; do
    name=$(basename "$target")
    corpus=$(mktemp -d)
    cp -r "tests/fuzz/corpus/$name/." "$corpus/" 2>/dev/null || true
    echo "fuzzing $name"
    "$target" -max_total_time="$fuzz_seconds" -print_final_stats=0 "$corpus" 2>&1 | tail -n 2
    rm -rf "$corpus"
  done
fi

stage "Tests (Release CPU build)"
cd build
ctest --output-on-failure -j"$jobs" --timeout 600
