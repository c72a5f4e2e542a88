#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 9, call 2: the W4A8 fragment wgmma GEMM with natural-order activations (16-byte cp.async)
# and the weights shuffled into k order in registers; the fragment GEMM's 4- and 8-warp CTAs
# (helper branch s9-frag8w); their tests and the backend's; compute-sanitizer; the benchmarks
# beside cuBLASLt bf16, cuBLAS INT8 and the previous W4A8 kernels; Nsight Compute; `flatfleet
# bench` with the wgmma kernel on and off; the 70B-shaped quantize phase profile (s9-qprofile).
# At most 8 files come back: everything lands in 7.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=${OUT:-/tmp}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
stamp "tests"
for i in 0 1; do
  GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=$i timeout 170 $b/bin/gpu_tests --gtest_brief=1 \
    --gtest_filter='*W4A8Fragment*:*CudaQuantizedLinear*' > /tmp/tests_$i.txt 2>&1 &
done
wait
cat /tmp/tests_0.txt /tmp/tests_1.txt > $out/tests.txt
for i in 0 1; do echo "shard $i: $(grep -E '^\[  (PASSED|FAILED) ' /tmp/tests_$i.txt | tr '\n' ' ') $(tail -n 1 /tmp/tests_$i.txt | cut -c1-80)"; done
grep -hE '^\[  FAILED  \] [A-Za-z]|Failure|Which is|Expected' $out/tests.txt | sort | uniq -c | sort -rn | head -12
stamp "compute-sanitizer"
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck synccheck; do
  timeout 60 $cs --tool $tool --error-exitcode 9 $b/bin/gpu_tests --gtest_brief=1 \
    --gtest_filter='Shapes/W4A8FragmentWgmmaGpuTest.*m63_n77*:Shapes/W4A8FragmentWgmmaGpuTest.*m130_n129*' \
    > /tmp/cs_$tool.txt 2>&1
  echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|PASSED|FAILED' /tmp/cs_$tool.txt | tr '\n' ' ' | cut -c1-160)"
done
stamp "bench"
timeout 200 $b/bin/gpu_bench --benchmark_format=json \
  --benchmark_filter='BM_W4A8FragmentWgmma/m:(64|128|256|1024|4096)/|BM_CublasLtBf16Prefill/m:(64|128|256|1024|4096)/|BM_CublasInt8Prefill/m:(64|128|256|1024|4096)/|BM_W4A8PrefillGemm/m:(256|1024|4096)/.*/kernel:0/|BM_W4A8MidmGemm/m:(64|128|256)/.*/kernel:0/' \
  > $out/wgmma_bench.json 2> /tmp/wgmma_bench.err
echo "bench rc=$? $(tail -n 1 /tmp/wgmma_bench.err | cut -c1-200)"
python3 bench/gpu-runs/wgmma_table.py $out/wgmma_bench.json > /tmp/wgmma_table.md
stamp "fragment warps"
timeout 100 $b/bin/gpu_bench --benchmark_filter='BM_W4A8FragmentGemmWarps/' \
  --benchmark_format=json > $out/warps.json 2> /tmp/warps.err
echo "warps rc=$?"
python3 bench/gpu-runs/fragment_table.py $out/warps.json > /tmp/warps_table.md 2>&1
stamp "ncu"
ncu_bin=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
for f in 'm:4096/n:8192/k:8192/tokens:0/' 'm:64/n:8192/k:8192/tokens:0/'; do
  echo "==== $f" >> $out/ncu.txt
  # The stall breakdown only on the second run: an unknown metric name must not cost the first.
  extra=()
  [ "$f" = 'm:64/n:8192/k:8192/tokens:0/' ] && extra=(--metrics smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_membar_per_issue_active.ratio,smsp__average_warps_issue_stalled_sleeping_per_issue_active.ratio,smsp__average_warps_issue_stalled_dispatch_stall_per_issue_active.ratio)
  timeout 60 $ncu_bin --kernel-name regex:W4A8FragmentWgmmaKernel --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis \
    "${extra[@]}" \
    $b/bin/gpu_bench --benchmark_filter="BM_W4A8FragmentWgmma/$f" >> $out/ncu.txt 2>&1
  echo "ncu rc=$? $f"
done
grep -E '^====|Duration|Compute \(SM\) Throughput|Issue Slots Busy|Warp Cycles Per Issued|stalled|gmma' $out/ncu.txt | head -40
stamp "flatfleet bench"
run_bench() {  # label, env, args...
  local label=$1 envs=$2; shift 2
  echo "== $label: $*" >> $out/engine.txt
  env $envs timeout 45 $b/bin/flatfleet bench --device cuda "$@" >> $out/engine.txt 2>&1
  echo "rc=$? $label => $(grep -E '^throughput|^ITL|^TTFT' $out/engine.txt | tail -n 3 | tr '\n' ' ' | cut -c1-220)"
}
one="--requests 1 --max-batch 1 --input-len 1024 --output-len 64"
many="--requests 64 --max-batch 64 --input-len 1000 --output-len 200"
run_bench "8b w4a8 1 req wgmma" "A=1" --arch llama-3-8b --recipe w4a8 $one
run_bench "8b w4a8 1 req previous" "FLATFLEET_W4A8_FRAGMENT_WGMMA=0" --arch llama-3-8b --recipe w4a8 $one
run_bench "8b w4a8 64 req wgmma" "A=1" --arch llama-3-8b --recipe w4a8 $many
run_bench "8b w4a8 64 req previous" "FLATFLEET_W4A8_FRAGMENT_WGMMA=0" --arch llama-3-8b --recipe w4a8 $many
run_bench "8b bf16 64 req" "A=1" --arch llama-3-8b --recipe bf16 $many
run_bench "70b w4a8 1 req wgmma" "A=1" --arch llama-3-70b --recipe w4a8 $one
run_bench "70b w4a8 1 req previous" "FLATFLEET_W4A8_FRAGMENT_WGMMA=0" --arch llama-3-70b --recipe w4a8 $one
if [ -x bench/gpu-runs/s9-quantize-profile.sh ]; then
  stamp "quantize profile"
  OUT=/tmp/qp TIMEOUT=${QTIMEOUT:-150} bash -c 'mkdir -p /tmp/qp; bench/gpu-runs/s9-quantize-profile.sh' > $out/quant.txt 2>&1
  cat /tmp/qp/s9qp_quantize.txt >> $out/quant.txt 2>/dev/null
  tail -n 30 $out/quant.txt | grep -vE '^\s*$' | tail -n 22
fi
stamp "done"
cat /tmp/warps_table.md /tmp/wgmma_table.md > $out/summary.md
cat /tmp/wgmma_table.md
tail -n 40 /tmp/warps_table.md
