#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 10, call 4: the fused TF32 Kronecker + quantize kernel with several token rows per block
# (P2 fragments shared by them): its tests and the engine's FlatQuant paths, the transforms beside
# the W4A8 GEMMs again, and one Nsight Compute profile of the fused kernel at m = 4096, K = 8192.
# Files back: tests.txt, transforms.json, transforms.md, ncu.txt (NCU=0: no profile).
set -uo pipefail
source bench/gpu-runs/lib.sh
stamp "tests"
timeout 200 $b/bin/gpu_tests --gtest_brief=1 \
  --gtest_filter='*Kronecker*:*StoredRecipe*:*CudaQuantizedModel*flatquant*:*CudaQuantizedLinear*:*ActivationQuantizer*:*AddRmsNorm*' \
  > $out/tests.txt 2>&1
echo "tests rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $out/tests.txt | tr '\n' ' ')"
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/tests.txt | sort -u | head -20
grep -hE '^n [0-9]+ \(|flatquant' $out/tests.txt | head -14
stamp "transforms beside the GEMMs"
bench_transforms 'BM_KroneckerQuantize'
if [ "${NCU:-1}" = 1 ]; then
  stamp "ncu"
  ncu_bin=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
  timeout 90 $ncu_bin --kernel-name regex:KroneckerQuantizeKernel --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis \
    --section MemoryWorkloadAnalysis \
    $b/bin/gpu_bench --benchmark_filter='BM_KroneckerQuantize/m:4096/n:8192/' > $out/ncu.txt 2>&1
  echo "ncu rc=$?"
  grep -E 'Duration|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|Stall|L1/TEX Hit|Executed Ipc A' $out/ncu.txt | head -16
fi
stamp "done"
cat $out/transforms.md | grep -E "^\| (1|16|256|4096) \| (8192|28672|4096|14336) \|" | head -60
