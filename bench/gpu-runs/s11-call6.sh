#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 11, call 6: the Kronecker and FlatQuant tests on the final tree (after the dedupe of the
# kernel's cp.async helpers and the tests' inputs). File back: tests.txt.
set -uo pipefail
source bench/gpu-runs/lib.sh
timeout 200 $b/bin/gpu_tests --gtest_brief=1 \
  --gtest_filter='*Kronecker*:*StoredRecipe*:*CudaQuantizedModel*flatquant*:*W4A8Fragment*' > $out/tests.txt 2>&1
echo "tests rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $out/tests.txt | tr '\n' ' ')"
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/tests.txt | sort -u | head
stamp "done"
