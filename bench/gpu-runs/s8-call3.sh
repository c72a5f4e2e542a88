#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 8, call 3 (the final tree): every GPU test (3 gtest shards) while issue 10's quantize
# runs beside them (the 8B-shaped checkpoint with all 32 layers, then a 70B-shaped one-layer
# checkpoint whose output must load and generate on the GPU: per-layer times are the tests'
# neighbours' too, see call 1 and 2 for quiet ones); then `flatfleet bench` with the fragment GEMM
# on and off, and an Nsight Compute profile of three fragment GEMM configurations.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=${OUT:-/tmp}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
stamp "quantize (background) and every GPU test"
( LAYERS=32 TIMEOUT=330 bench/gpu-runs/quantize-8b-random.sh > $out/q8b_run.txt 2>&1
  LAYERS=1 TIMEOUT=60 bench/gpu-runs/quantize-70b-2layers.sh > $out/q70_run.txt 2>&1 ) &
quant_pid=$!
test_pids=()
for i in 0 1 2; do
  GTEST_TOTAL_SHARDS=3 GTEST_SHARD_INDEX=$i timeout 330 $b/bin/gpu_tests --gtest_brief=1 \
    --gtest_output=xml:$out/gpu_tests_$i.xml > $out/gpu_tests_$i.txt 2>&1 &
  test_pids+=($!)
done
wait "${test_pids[@]}"
stamp "tests done"
for i in 0 1 2; do echo "shard $i: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $out/gpu_tests_$i.txt | tr '\n' ' ') $(tail -n 1 $out/gpu_tests_$i.txt | cut -c1-70)"; done
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/gpu_tests_*.txt | sort -u | head -30
wait $quant_pid
stamp "quantize done"
cat $out/q8b_summary.txt; cat $out/q70_run.txt
stamp "flatfleet bench"
run_bench() {  # label, env, args...
  local label=$1 envs=$2; shift 2
  echo "== $label: $*" >> $out/engine.txt
  env $envs timeout 40 $b/bin/flatfleet bench --device cuda "$@" >> $out/engine.txt 2>&1
  echo "rc=$? $label => $(grep -E '^throughput|^ITL' $out/engine.txt | tail -n 2 | tr '\n' ' ' | cut -c1-170)"
}
one="--requests 1 --max-batch 1 --input-len 1024 --output-len 64"
sixteen="--requests 16 --max-batch 16 --input-len 512 --output-len 128"
for arch in llama-3-8b llama-3-70b; do
  run_bench "$arch w4a8 1 req fragment" "A=1" --arch $arch --recipe w4a8 $one
  run_bench "$arch w4a8 1 req previous" "FLATFLEET_W4A8_FRAGMENT_GEMM=0" --arch $arch --recipe w4a8 $one
  run_bench "$arch w4a8 16 req fragment" "A=1" --arch $arch --recipe w4a8 $sixteen
  run_bench "$arch w4a8 16 req previous" "FLATFLEET_W4A8_FRAGMENT_GEMM=0" --arch $arch --recipe w4a8 $sixteen
done
run_bench "llama-3-8b bf16 16 req" "A=1" --arch llama-3-8b --recipe bf16 $sixteen
stamp "ncu"
ncu_bin=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
for f in 'm:1/n:57344/k:8192/config:124/' 'm:1/n:8192/k:8192/config:824/' 'm:16/n:8192/k:8192/config:814/'; do
  name=ncu_$(echo $f | tr -c 'a-z0-9' '_').txt
  timeout 40 $ncu_bin --kernel-name regex:W4A8FragmentKernel --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats \
    $b/bin/gpu_bench --benchmark_filter="BM_W4A8FragmentGemm/$f" > $out/$name 2>&1
  echo "ncu rc=$? $f"
  grep -E 'DRAM Throughput|Duration|Achieved Occupancy|Registers Per|L1/TEX Hit|L2 Hit|Warp Cycles Per Issued|Issued Warp' $out/$name | head -12
done
stamp "done"
