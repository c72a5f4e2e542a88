#!/usr/bin/env bash
# Runs on the GPU machine, in the repository root, with .gpu-bundle/ carried along: the GPU tests,
# then the kernel benchmarks. Writes logs to $OUT when set. Builds nothing. Fails when a GPU test
# failed, or skipped although this machine could run it (scripts/gpu-test-skips.sh). GPU_BUNDLE names another
# bundle directory (default .gpu-bundle); extra arguments go to gpu_bench (e.g. a filter).
set -uo pipefail
bundle=${GPU_BUNDLE:-.gpu-bundle}
export LD_LIBRARY_PATH=$PWD/$bundle/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib
export NCCL_NVLS_ENABLE=0
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$bundle/bin/gpu_tests" --gtest_output="xml:$out/gpu_tests.xml" 2>&1 | tee "$out/gpu_tests.txt"
tests_rc=${PIPESTATUS[0]}
if ! "$(dirname "$0")/gpu-test-skips.sh" "$out/gpu_tests.xml"; then
  [ "$tests_rc" = 0 ] && tests_rc=1
fi
"$bundle/bin/gpu_bench" --benchmark_min_time=0.2 "$@" 2>&1 | tee "$out/gpu_bench.txt"
echo "gpu_tests exit code: $tests_rc"
exit "$tests_rc"
