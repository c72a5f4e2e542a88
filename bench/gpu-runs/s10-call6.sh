#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 10, call 6: after the clean-up of 508f733 (the quantized linear's activation side in one
# function, the transform tests' shared inputs, the benchmarks' shared timer), the GPU tests it
# touches and a smoke run of the two benchmarks whose timer moved. Files back: tests.txt,
# bench.json.
set -uo pipefail
source bench/gpu-runs/lib.sh
stamp "tests"
timeout 300 $b/bin/gpu_tests --gtest_brief=1 \
  --gtest_filter='*Kronecker*:*Hadamard*:*StoredRecipe*:*CudaQuantizedLinear*:*CudaQuantizedModel*:*ActivationQuantizer*:*AddRmsNorm*:*CudaEngine*' \
  > $out/tests.txt 2>&1
echo "tests rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $out/tests.txt | tr '\n' ' ')"
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/tests.txt | sort -u | head -20
stamp "bench smoke"
timeout 60 $b/bin/gpu_bench --benchmark_format=json \
  --benchmark_filter='BM_KroneckerQuantize/m:(1|4096)/n:8192/|BM_AddRmsNormQuantize/' > $out/bench.json 2> /tmp/bench.err
echo "bench rc=$?"
python3 - $out/bench.json <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["benchmarks"]:
    print(r["name"], round(r["real_time"], 1), r["time_unit"], round(r.get("of_copy", 0), 3) if "of_copy" in r else "")
PY
stamp "done"
