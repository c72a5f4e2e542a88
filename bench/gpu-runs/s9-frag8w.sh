#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 9 (branch s9-frag8w): the fragment GEMM's tests (4 and 8 warps per CTA), the 4- against
# 8-warp sweep BM_W4A8FragmentGemmWarps (90 runs), and Nsight Compute on 57344 x 8192, m = 1 at 4
# and 8 warps (2 blocks, ring 4, the rule's split 1) with the issue and instruction counters.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=${OUT:-/tmp}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
stamp "tests"
for i in 0 1; do
  GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=$i timeout 200 $b/bin/gpu_tests --gtest_brief=1 \
    --gtest_filter='*W4A8Fragment*' > $out/tests_$i.txt 2>&1 &
done
wait
for i in 0 1; do echo "shard $i: $(grep -E '^\[  (PASSED|FAILED) ' $out/tests_$i.txt | tr '\n' ' ')"; done
grep -hE '^\[  FAILED  \] [A-Za-z]|Failure' $out/tests_*.txt | sort -u | head -20
stamp "BM_W4A8FragmentGemmWarps"
timeout 200 $b/bin/gpu_bench --benchmark_filter='BM_W4A8FragmentGemmWarps/' \
  --benchmark_format=json > $out/frag_warps.json 2> $out/frag_warps.err
echo "bench rc=$?"
python3 bench/gpu-runs/fragment_table.py $out/frag_warps.json
stamp "ncu"
ncu_bin=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
for f in 'm:1/n:57344/k:8192/config:24/' 'm:1/n:57344/k:8192/config:10024/'; do
  name=ncu_$(echo $f | tr -c 'a-z0-9' '_').txt
  timeout 90 $ncu_bin --kernel-name regex:W4A8FragmentKernel --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats \
    --section ComputeWorkloadAnalysis --section InstructionStats \
    $b/bin/gpu_bench --benchmark_filter="BM_W4A8FragmentGemmWarps/$f" > $out/$name 2>&1
  echo "ncu rc=$? $f"
  grep -E 'DRAM Throughput|Duration|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Executed Ipc|Issue Slots Busy|Executed Instructions |Stall' $out/$name | head -20
done
stamp "done"
