#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 11, call 1: the fragment GEMM's shared-memory weight stages (bulk copies) under
# compute-sanitizer and bit for bit; every GPU test (incl. session 10's last commits, not yet run
# on a device); the staged configurations swept against the register ring and the peers.
# Files back: sanitizer.txt, tests.txt, staged.json, staged.md.
set -uo pipefail
source bench/gpu-runs/lib.sh
stamp "fragment GEMM tests under compute-sanitizer memcheck (staged cases)"
timeout 120 compute-sanitizer --tool memcheck $b/bin/gpu_tests --gtest_brief=1 \
  --gtest_filter='*W4A8FragmentUnsplit*m1_*:*W4A8FragmentUnsplit*m9_*:*W4A8FragmentSplit*_s4:*W4A8FragmentSplit*_s3' \
  > $out/sanitizer.txt 2>&1
echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY|PASSED|FAILED' $out/sanitizer.txt | tr '\n' ' ' | cut -c1-200)"
stamp "every GPU test (3 shards)"
run_gpu_tests_sharded 300 'W4A8FragmentResidency|StagedShared'
stamp "staged sweep"
timeout 240 $b/bin/gpu_bench --benchmark_format=json \
  --benchmark_filter='BM_W4A8FragmentGemm/m:(1|8|16)/n:[0-9]+/k:[0-9]+/config:0/|BM_W4A8FragmentStaged' \
  > $out/staged.json 2> /tmp/staged.err
echo "bench rc=$? $(tail -n 2 /tmp/staged.err | cut -c1-200)"
python3 bench/gpu-runs/staged_table.py $out/staged.json > $out/staged.md
stamp "done"
cat $out/staged.md
