#!/usr/bin/env bash
# Session 8, recheck 2: the backend test suite with its poison synchronised, 20 repeats while three
# other gtest processes load the GPU (the condition that failed before the fix).
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib FLATFLEET_SHARED_DIR=$b/shared
for i in 1 2 3; do timeout 45 $b/bin/gpu_tests --gtest_filter='*W4A8Decode*' --gtest_brief=1 > /dev/null 2>&1 & done
timeout 40 $b/bin/gpu_tests --gtest_filter='W4A8Prefill/CudaQuantizedLinearTest.*' \
  --gtest_repeat=20 --gtest_brief=1 2>&1 | grep -E "^\[  (FAILED|PASSED)  \]" | sort | uniq -c | head
wait
