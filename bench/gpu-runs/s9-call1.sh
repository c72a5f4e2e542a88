#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 9, call 1: the W4A8 fragment wgmma GEMM's tests (and the backend's, which now route 33+
# rows through it), compute-sanitizer on two small cases, its benchmark beside cuBLASLt bf16,
# cuBLAS INT8 and the previous W4A8 kernels (same process), an Nsight Compute profile, and
# `flatfleet bench` with the kernel on and off (FLATFLEET_W4A8_FRAGMENT_WGMMA=0).
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
    --gtest_filter='*W4A8FragmentWgmma*:*CudaQuantizedLinear*:*W4A8Prefill*' > $out/tests_$i.txt 2>&1 &
done
wait
for i in 0 1; do echo "shard $i: $(grep -E '^\[  (PASSED|FAILED) ' $out/tests_$i.txt | tr '\n' ' ') $(tail -n 1 $out/tests_$i.txt | cut -c1-80)"; done
grep -hE '^\[  FAILED  \] [A-Za-z]|Failure|Which is|Expected' $out/tests_*.txt | sort | uniq -c | sort -rn | head -20
stamp "compute-sanitizer"
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck racecheck synccheck; do
  timeout 90 $cs --tool $tool --error-exitcode 9 $b/bin/gpu_tests --gtest_brief=1 \
    --gtest_filter='Shapes/W4A8FragmentWgmmaGpuTest.*m63_n77*:Shapes/W4A8FragmentWgmmaGpuTest.*m130_n129*' \
    > $out/cs_$tool.txt 2>&1
  echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|PASSED|FAILED' $out/cs_$tool.txt | tr '\n' ' ' | cut -c1-160)"
done
stamp "bench"
timeout 240 $b/bin/gpu_bench --benchmark_format=json \
  --benchmark_filter='BM_W4A8FragmentWgmma|BM_CublasLtBf16Prefill|BM_CublasInt8Prefill|BM_W4A8PrefillGemm/.*/kernel:0/|BM_W4A8MidmGemm/m:(64|128|256)/.*/kernel:0/' \
  > $out/wgmma_bench.json 2> $out/wgmma_bench.err
echo "bench rc=$? $(tail -n 2 $out/wgmma_bench.err | cut -c1-200)"
python3 bench/gpu-runs/wgmma_table.py $out/wgmma_bench.json > $out/wgmma_table.md
stamp "ncu"
ncu_bin=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
for f in 'm:4096/n:8192/k:8192/tokens:0/' 'm:128/n:8192/k:8192/tokens:0/'; do
  name=ncu_$(echo $f | tr -c 'a-z0-9' '_').txt
  timeout 60 $ncu_bin --kernel-name regex:W4A8FragmentWgmmaKernel --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis \
    $b/bin/gpu_bench --benchmark_filter="BM_W4A8FragmentWgmma/$f" > $out/$name 2>&1
  echo "ncu rc=$? $f"
  grep -E 'DRAM Throughput|Duration|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|Executed Ipc A|Stall' $out/$name | head -16
done
stamp "flatfleet bench"
run_bench() {  # label, env, args...
  local label=$1 envs=$2; shift 2
  echo "== $label: $*" >> $out/engine.txt
  env $envs timeout 40 $b/bin/flatfleet bench --device cuda "$@" >> $out/engine.txt 2>&1
  echo "rc=$? $label => $(grep -E '^throughput|^ITL|^TTFT' $out/engine.txt | tail -n 3 | tr '\n' ' ' | cut -c1-220)"
}
one="--requests 1 --max-batch 1 --input-len 1024 --output-len 64"
many="--requests 64 --max-batch 64 --input-len 1000 --output-len 200"
run_bench "8b w4a8 1 req wgmma" "A=1" --arch llama-3-8b --recipe w4a8 $one
run_bench "8b w4a8 1 req previous" "FLATFLEET_W4A8_FRAGMENT_WGMMA=0" --arch llama-3-8b --recipe w4a8 $one
run_bench "8b w4a8 64 req wgmma" "A=1" --arch llama-3-8b --recipe w4a8 $many
run_bench "8b w4a8 64 req previous" "FLATFLEET_W4A8_FRAGMENT_WGMMA=0" --arch llama-3-8b --recipe w4a8 $many
run_bench "8b bf16 64 req" "A=1" --arch llama-3-8b --recipe bf16 $many
stamp "done"
cat $out/wgmma_table.md
