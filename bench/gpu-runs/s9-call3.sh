#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 9, call 3: a smoke run of the fragment wgmma GEMM (if it fails, the engine runs below
# turn it off), every GPU test in 3 shards, the wgmma GEMM's split / tile / part sweep beside
# cuBLASLt bf16, one Nsight Compute profile, `flatfleet bench`, and the 70B-shaped quantize phase
# profile. 6 files come back.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=${OUT:-/tmp}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
stamp "smoke"
wgmma_env="A=1"
if ! timeout 40 $b/bin/gpu_tests --gtest_brief=1 \
    --gtest_filter='Shapes/W4A8FragmentWgmmaGpuTest.*m63_n77*:Shapes/W4A8FragmentWgmmaGpuTest.*m4096*' \
    > /tmp/smoke.txt 2>&1; then
  echo "SMOKE FAILED: $(grep -E 'FAILED|Failure' /tmp/smoke.txt | head -3)"
  wgmma_env="FLATFLEET_W4A8_FRAGMENT_WGMMA=0"
fi
stamp "every GPU test (3 shards)"
pids=()
for i in 0 1 2; do
  GTEST_TOTAL_SHARDS=3 GTEST_SHARD_INDEX=$i timeout 200 $b/bin/gpu_tests --gtest_brief=1 \
    > /tmp/gpu_tests_$i.txt 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
cat /tmp/gpu_tests_0.txt /tmp/gpu_tests_1.txt /tmp/gpu_tests_2.txt > $out/tests.txt
for i in 0 1 2; do echo "shard $i: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' /tmp/gpu_tests_$i.txt | tr '\n' ' ') $(tail -n 1 /tmp/gpu_tests_$i.txt | cut -c1-70)"; done
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/tests.txt | sort -u | head -20
stamp "tests done"
stamp "bench"
timeout 130 $b/bin/gpu_bench --benchmark_format=json \
  --benchmark_filter='BM_W4A8FragmentWgmma/m:(64|128|256|1024|4096)/|BM_CublasLtBf16Prefill/m:(64|128|256|1024|4096)/' \
  > $out/wgmma_bench.json 2> /tmp/wgmma_bench.err
echo "bench rc=$? $(tail -n 1 /tmp/wgmma_bench.err | cut -c1-200)"
python3 bench/gpu-runs/wgmma_table.py $out/wgmma_bench.json > /tmp/wgmma_table.md
stamp "ncu"
ncu_bin=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
timeout 40 $ncu_bin --kernel-name regex:W4A8FragmentWgmmaKernel --launch-count 1 \
  --section SpeedOfLight --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis \
  $b/bin/gpu_bench --benchmark_filter="BM_W4A8FragmentWgmma/m:4096/n:8192/k:8192/tile:0/" > /tmp/ncu.txt 2>&1
echo "ncu rc=$?"
grep -E 'Duration|Compute \(SM\) Throughput|Issue Slots Busy|Warp Cycles Per Issued|Executed Ipc A|pipeline' /tmp/ncu.txt | head -8
stamp "flatfleet bench"
run_bench() {  # label, env, args...
  local label=$1 envs=$2; shift 2
  echo "== $label: $*" >> $out/engine.txt
  env $envs timeout 45 $b/bin/flatfleet bench --device cuda "$@" >> $out/engine.txt 2>&1
  echo "rc=$? $label => $(grep -E '^throughput|^ITL|^TTFT' $out/engine.txt | tail -n 3 | tr '\n' ' ' | cut -c1-220)"
}
one="--requests 1 --max-batch 1 --input-len 1024 --output-len 64"
many="--requests 64 --max-batch 64 --input-len 1000 --output-len 200"
run_bench "8b w4a8 64 req" "$wgmma_env" --arch llama-3-8b --recipe w4a8 $many
run_bench "70b w4a8 1 req" "$wgmma_env" --arch llama-3-70b --recipe w4a8 $one
stamp "quantize profile (70B-shaped, 2 layers, --device cuda)"
OUT=/tmp/qp TIMEOUT=120 bash -c 'mkdir -p /tmp/qp; bench/gpu-runs/s9-quantize-profile.sh' > /tmp/quant_run.txt 2>&1
cat /tmp/quant_run.txt /tmp/qp/s9qp_quantize.txt > $out/quant.txt 2>/dev/null
cp /tmp/qp/s9qp_phases.jsonl $out/phases.jsonl 2>/dev/null
grep -E '^\[layer|^    phases' /tmp/qp/s9qp_quantize.txt | head -4
cat /tmp/qp/s9qp_table.md 2>/dev/null
stamp "done"
cat /tmp/ncu.txt >> $out/engine.txt
cp /tmp/wgmma_table.md $out/summary.md
cat /tmp/wgmma_table.md
