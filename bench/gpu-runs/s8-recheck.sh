#!/usr/bin/env bash
# Session 8, recheck: the backend test case that failed once in call 3
# (W4A8Prefill/...W4A8_m64_130x512_g128_sym_bias, mid-M kernel path) with its seed and 40 fresh
# seeds, with the fragment GEMM on and off, beside the mid-M kernel's own tests repeated.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib FLATFLEET_SHARED_DIR=$b/shared
case='W4A8Prefill/CudaQuantizedLinearTest.MatchesTheIntegerReference/*'
FLATFLEET_TEST_SEED=17404439524983115860 $b/bin/gpu_tests --gtest_filter="$case" --gtest_brief=1 2>&1 | grep -E "FAILED|PASSED|mismatch|Which is" | head -8
echo "== 40 fresh seeds, fragment on"
$b/bin/gpu_tests --gtest_filter="$case" --gtest_repeat=40 --gtest_brief=1 2>&1 | grep -E "^\[  FAILED  \] W4A8|Which is" | sort | uniq -c | head -8
echo "== 40 fresh seeds, fragment off"
FLATFLEET_W4A8_FRAGMENT_GEMM=0 $b/bin/gpu_tests --gtest_filter="$case" --gtest_repeat=40 --gtest_brief=1 2>&1 | grep -E "^\[  FAILED  \] W4A8|Which is" | sort | uniq -c | head -8
echo "== mid-M kernel tests x5"
timeout 120 $b/bin/gpu_tests --gtest_filter='*W4A8Midm*' --gtest_repeat=5 --gtest_brief=1 2>&1 | grep -E "^\[  FAILED  \]|PASSED" | sort | uniq -c | head -8
echo "== under load: the case x40 while 3 other gtest processes run"
for i in 1 2 3; do timeout 60 $b/bin/gpu_tests --gtest_filter='*W4A8Decode*' --gtest_brief=1 > /dev/null 2>&1 & done
$b/bin/gpu_tests --gtest_filter="$case" --gtest_repeat=40 --gtest_brief=1 2>&1 | grep -E "^\[  FAILED  \] W4A8|Which is" | sort | uniq -c | head -8
wait
echo done
