#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 11, call 2: the fragment GEMM's symmetric unpack and staged rule (bit for bit, through
# the backend and the recipes), call 1's two failures with their fixes, the FlatQuant transform's
# cluster / shared-P2 kernels (KRON=1); the staged sweep again; an Nsight Compute profile of the
# rule's kernel on 57344 x 8192 and 8192 x 8192 at one row; `flatfleet bench` of the 70B shape at
# one and 16 requests, staged on and off. Files back: tests.txt, staged.json, staged.md, ncu.txt,
# engine.txt (and transforms.json / transforms.md with KRON=1).
set -uo pipefail
source bench/gpu-runs/lib.sh
stamp "targeted tests (3 shards)"
filter='*W4A8Fragment*:*CudaQuantizedLinear*:*StoredRecipeLayer*:*CudaQuantizedModel*:*CudaEngine*:*Kronecker*:*RankMemoryEstimate*'
pids=()
for i in 0 1 2; do
  GTEST_TOTAL_SHARDS=3 GTEST_SHARD_INDEX=$i timeout 200 $b/bin/gpu_tests --gtest_brief=1 \
    --gtest_filter="$filter" > /tmp/t_$i.txt 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
cat /tmp/t_0.txt /tmp/t_1.txt /tmp/t_2.txt > $out/tests.txt
for i in 0 1 2; do echo "shard $i: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' /tmp/t_$i.txt | tr '\n' ' ')"; done
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/tests.txt | sort -u | head -20
grep -hE 'decisive positions [0-9]+ of' $out/tests.txt | head -20
stamp "staged sweep"
timeout 200 $b/bin/gpu_bench --benchmark_format=json \
  --benchmark_filter='BM_W4A8FragmentGemm/m:(1|8|16)/n:[0-9]+/k:[0-9]+/config:0/|BM_W4A8FragmentStaged' \
  > $out/staged.json 2> /tmp/staged.err
echo "bench rc=$? $(tail -n 1 /tmp/staged.err | cut -c1-200)"
python3 bench/gpu-runs/staged_table.py $out/staged.json > $out/staged.md
stamp "ncu"
ncu_bin=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
for shape in 'n:57344/k:8192'; do
  timeout 60 $ncu_bin --kernel-name regex:W4A8FragmentKernel --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section MemoryWorkloadAnalysis --section LaunchStats \
    $b/bin/gpu_bench --benchmark_filter="BM_W4A8FragmentStaged/m:1/$shape/config:200018/" \
    >> $out/ncu.txt 2>&1
  echo "ncu $shape rc=$?"
done
if [ "${KRON:-0}" = 1 ]; then
  timeout 60 $ncu_bin --kernel-name regex:KroneckerQuantizeKernel --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
    $b/bin/gpu_bench --benchmark_filter='BM_KroneckerQuantize/m:1/n:8192/path:0/' >> $out/ncu.txt 2>&1
  echo "ncu kronecker m=1 rc=$?"
fi
grep -E 'W4A8FragmentKernel<|Duration|DRAM Throughput|Memory Throughput|Issue Slots Busy|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|Block Limit|Waves Per SM|No Eligible' $out/ncu.txt | cut -c1-150 | head -30
if [ "${KRON:-0}" = 1 ]; then
  stamp "transforms"
  bench_transforms 'BM_KroneckerQuantize/m:[0-9]+/n:[0-9]+/path:(0|2)/'
fi
stamp "flatfleet bench, 70B shape, staged on and off"
for run in "1 --requests 1 --max-batch 1 --input-len 1024 --output-len 64" \
           "0 --requests 1 --max-batch 1 --input-len 1024 --output-len 64" \
           "1 --requests 16 --max-batch 16 --input-len 512 --output-len 128"; do
  staged=${run%% *}; spec=${run#* }
  {
    echo "== staged=$staged $spec" >> $out/engine.txt
    FLATFLEET_W4A8_FRAGMENT_STAGED=$staged timeout 60 $b/bin/flatfleet bench --device cuda \
      --recipe w4a8 --arch llama-3-70b $spec >> $out/engine.txt 2>&1
    echo "rc=$? staged=$staged $spec => $(grep -E '^throughput|^ITL|^TTFT' $out/engine.txt | tail -n 3 | tr '\n' ' ' | cut -c1-200)"
  }
done
stamp "done"
cat $out/staged.md
[ "${KRON:-0}" = 1 ] && grep -E "^\| (1|16|256|4096) \|" $out/transforms.md | head -40
