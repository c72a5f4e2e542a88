#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 11, call 5: compute-sanitizer (memcheck, synccheck, racecheck) over the new kernels' tests:
# the fragment GEMM's staged path (bulk copies on per-warp mbarriers; the default rule) and the
# FlatQuant transform's cluster split (distributed shared memory) and staged P2. Files back:
# memcheck.txt, synccheck.txt, racecheck.txt.
set -uo pipefail
source bench/gpu-runs/lib.sh
broad='*W4A8FragmentSplit*_s4:*W4A8FragmentSplit*_s3:*W4A8FragmentSplit*_s2:*W4A8FragmentSplit*m16_n4096_k4096*:*W4A8FragmentUnsplit*m1_n77*:*W4A8FragmentUnsplit*m17_*:*KroneckerQuantizePath*rows1:*KroneckerQuantizePath*rows3:*KroneckerQuantizePath*n1024*'
narrow='*KroneckerQuantizePath*n4096_rows1:*KroneckerQuantizePath*n8192_rows3:*W4A8FragmentUnsplit*m1_n64*:*W4A8FragmentSplit*_s2'
for tool in memcheck synccheck racecheck; do
  stamp "$tool"
  filter=$broad; [ $tool = racecheck ] && filter=$narrow
  timeout 150 compute-sanitizer --tool $tool $b/bin/gpu_tests --gtest_brief=1 --gtest_filter="$filter" \
    > $out/$tool.txt 2>&1
  echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|^\[  (PASSED|FAILED) ' $out/$tool.txt | tr '\n' ' ' | cut -c1-240)"
done
stamp "done"
