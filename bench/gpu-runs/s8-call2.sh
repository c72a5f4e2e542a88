#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 8, call 2: the fragment GEMM's tests (now with the 8-deep ring) and the backend's
# quantized-linear tests, the BM_W4A8FragmentGemm sweep (split x blocks x ring depth), an Nsight
# Compute profile of two configurations, and issue 10's 70B-shaped 2-layer quantize --device cuda.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=${OUT:-/tmp}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
stamp "tests"
for i in 0 1; do
  GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=$i timeout 150 $b/bin/gpu_tests --gtest_brief=1 \
    --gtest_filter='*W4A8Fragment*:*CudaQuantizedLinear*' > $out/tests_$i.txt 2>&1 &
done
wait
for i in 0 1; do echo "shard $i: $(grep -E '^\[  (PASSED|FAILED) ' $out/tests_$i.txt | tr '\n' ' ')"; done
grep -hE '^\[  FAILED  \] [A-Za-z]|Failure' $out/tests_*.txt | sort -u | head -20
stamp "BM_W4A8FragmentGemm"
timeout 260 $b/bin/gpu_bench --benchmark_filter='BM_W4A8FragmentGemm' --benchmark_format=json \
  > $out/frag_bench.json 2> $out/frag_bench.err
echo "bench rc=$?"
stamp "ncu"
ncu_bin=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
for f in 'BM_W4A8FragmentGemm/m:1/n:57344/k:8192/config:124/' 'BM_W4A8FragmentGemm/m:1/n:8192/k:8192/config:824/' 'BM_W4A8FragmentGemm/m:16/n:8192/k:8192/config:814/'; do
  timeout 90 $ncu_bin --kernel-name regex:W4A8FragmentKernel --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats \
    $b/bin/gpu_bench --benchmark_filter="$f" > $out/ncu_$(echo $f | tr -c 'a-z0-9' '_').txt 2>&1
  echo "ncu rc=$? $f"
  grep -E 'DRAM Throughput|Memory Throughput|Duration|Achieved Occupancy|Theoretical Occupancy|Registers Per|Stall|Warp Cycles Per Issued|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Compute \(SM\)' $out/ncu_$(echo $f | tr -c 'a-z0-9' '_').txt | head -24
done
stamp "quantize 70B-shaped, 2 layers"
TIMEOUT=${QTIMEOUT:-200} bench/gpu-runs/quantize-70b-2layers.sh 2>&1 | tail -n 12
stamp "done"
python3 bench/gpu-runs/fragment_table.py $out/frag_bench.json
