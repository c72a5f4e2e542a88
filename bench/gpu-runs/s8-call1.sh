#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 8, call 1: the W4A8 fragment GEMM (tests, then BM_W4A8FragmentGemm with its peers),
# the quantized-layer and engine tests that now run it, `flatfleet bench` with it on and off
# (FLATFLEET_W4A8_FRAGMENT_GEMM=0), and issue 10's quantize --device cuda of an 8B-shaped
# checkpoint (LAYERS layers) with the multithreaded host side. A short table last.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

stamp "fragment GEMM tests"
timeout 200 $b/bin/gpu_tests --gtest_brief=1 --gtest_filter='*W4A8Fragment*' > $out/frag_tests.txt 2>&1
echo "rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $out/frag_tests.txt | tr '\n' ' ')"
grep -E '^\[  FAILED  \]|Failure|error|bound' $out/frag_tests.txt | head -20

stamp "quantized layer / model / engine tests (4 shards)"
filter='*QuantizedLinear*:*QuantizedModel*:*RankMemory*:*StoredRecipe*:*QuantizedRecipe*:CudaEngine*:*W4A8Decode*'
for i in 0 1 2 3; do
  GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$i timeout 240 $b/bin/gpu_tests --gtest_brief=1 \
    --gtest_filter="$filter" > $out/engine_tests_$i.txt 2>&1 &
done
wait
for i in 0 1 2 3; do echo "shard $i: $(grep -E '^\[  (PASSED|FAILED) ' $out/engine_tests_$i.txt | tr '\n' ' ') $(tail -n 1 $out/engine_tests_$i.txt | cut -c1-60)"; done
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/engine_tests_*.txt | sort -u | head -30

stamp "BM_W4A8FragmentGemm"
timeout 240 $b/bin/gpu_bench --benchmark_filter='BM_W4A8FragmentGemm' --benchmark_format=json \
  > $out/frag_bench.json 2> $out/frag_bench.err
echo "bench rc=$?"; tail -n 3 $out/frag_bench.err

stamp "flatfleet bench"
run_bench() {  # label, env, args...
  local label=$1 envs=$2; shift 2
  echo "== $label: $*" >> $out/engine.txt
  env $envs timeout ${BENCH_LIMIT:-90} $b/bin/flatfleet bench --device cuda "$@" >> $out/engine.txt 2>&1
  echo "rc=$? $label => $(grep -E '^throughput|^ITL|^TTFT' $out/engine.txt | tail -n 3 | tr '\n' ' ' | cut -c1-200)"
}
one="--requests 1 --max-batch 1 --input-len 1024 --output-len 64"
sixteen="--requests 16 --max-batch 16 --input-len 512 --output-len 128"
run_bench "8B bf16 1 req" "A=1" --arch llama-3-8b --recipe bf16 $one
run_bench "8B w4a8 1 req fragment" "A=1" --arch llama-3-8b --recipe w4a8 $one
run_bench "8B w4a8 1 req previous" "FLATFLEET_W4A8_FRAGMENT_GEMM=0" --arch llama-3-8b --recipe w4a8 $one
run_bench "8B bf16 16 req" "A=1" --arch llama-3-8b --recipe bf16 $sixteen
run_bench "8B w4a8 16 req fragment" "A=1" --arch llama-3-8b --recipe w4a8 $sixteen
run_bench "8B w4a8 16 req previous" "FLATFLEET_W4A8_FRAGMENT_GEMM=0" --arch llama-3-8b --recipe w4a8 $sixteen
run_bench "70B w4a8 1 req fragment" "A=1" --arch llama-3-70b --recipe w4a8 $one
run_bench "70B w4a8 1 req previous" "FLATFLEET_W4A8_FRAGMENT_GEMM=0" --arch llama-3-70b --recipe w4a8 $one

if [ "${QUANT8B:-1}" = 1 ]; then
  stamp "quantize 8B-shaped, --device cuda"
  LAYERS=${LAYERS:-2} TIMEOUT=${QTIMEOUT:-150} bench/gpu-runs/quantize-8b-random.sh > /dev/null 2>&1
  cat $out/q8b_summary.txt
fi
stamp "done"
echo "== fragment GEMM table"
python3 bench/gpu-runs/fragment_table.py $out/frag_bench.json
