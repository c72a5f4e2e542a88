#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 11: the fused Kronecker + quantize kernel split over a thread-block cluster at decode,
# with P2 staged in shared memory and the row loaded four values at a time. Its tests (the bound
# against the exact transform; every path bit for bit against one block per row) and the engine's
# FlatQuant paths, the transforms beside the W4A8 GEMMs (BM_KroneckerQuantize's path axis: 0 the
# rules, 1 one block per 1-4 rows, 2 that with P2 from L2 = the kernel before, 3 the rules with P2
# from L2), and Nsight Compute of the rules' path at m = 4096 and m = 1, 8192 wide (NCU=0: none).
# Files back: tests.txt, transforms.json, transforms.md, ncu.txt.
set -uo pipefail
source bench/gpu-runs/lib.sh
stamp "tests"
timeout 300 $b/bin/gpu_tests --gtest_brief=1 \
  --gtest_filter='*Kronecker*:*StoredRecipe*:*CudaQuantizedModel*flatquant*:*CudaQuantizedLinear*:*RankMemoryEstimate*' \
  > $out/tests.txt 2>&1
echo "tests rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $out/tests.txt | tr '\n' ' ')"
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/tests.txt | sort -u | head -20
grep -hE '^n [0-9]+ \(' $out/tests.txt | head -16
stamp "transforms beside the GEMMs"
bench_transforms 'BM_KroneckerQuantize'
if [ "${NCU:-1}" = 1 ]; then
  stamp "ncu"
  ncu_bin=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
  for m in 4096 1; do
    timeout 90 $ncu_bin --kernel-name regex:KroneckerQuantizeKernel --launch-skip 1 --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section WarpStateStats \
      --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      $b/bin/gpu_bench --benchmark_filter="BM_KroneckerQuantize/m:$m/n:8192/path:0/" >> $out/ncu.txt 2>&1
    echo "ncu m=$m rc=$?"
  done
  grep -E 'Duration|Compute \(SM\) Throughput|Issue Slots Busy|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|Stall|Cluster' $out/ncu.txt | head -24
fi
stamp "done"
grep -E "^\| (1|16|256|4096) \| (4096|8192|14336|28672) \|" $out/transforms.md | head -60
