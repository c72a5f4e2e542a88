#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 6, call A: every GPU test in 4 gtest shards at once (the CPU references dominate and the
# machine has 16 cores; the GPU has room for all four), then the skip check. FILTER narrows it.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=${OUT:-/tmp}
shards=${SHARDS:-4}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
for i in $(seq 0 $((shards - 1))); do
  GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i timeout ${LIMIT:-520} $b/bin/gpu_tests \
    --gtest_brief=1 --gtest_filter="${FILTER:-*}" --gtest_output=xml:$out/gpu_tests_$i.xml \
    > $out/gpu_tests_$i.txt 2>&1 &
done
wait
for i in $(seq 0 $((shards - 1))); do
  echo "shard $i: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $out/gpu_tests_$i.txt | tr '\n' ' ') $(tail -n 1 $out/gpu_tests_$i.txt | cut -c1-80)"
  scripts/gpu-test-skips.sh $out/gpu_tests_$i.xml 2>&1 | tail -4
done
echo "== failures"
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/gpu_tests_*.txt | sort -u | head -60
echo "== slowest tests"
cat $out/gpu_tests_*.xml | grep -o 'testcase name="[^"]*"[^>]*time="[0-9.]*"[^>]*classname="[^"]*"' |
  sed -E 's/testcase name="([^"]*)".*time="([0-9.]*)".*classname="([^"]*)"/\2 \3.\1/' | sort -rn | head -8
