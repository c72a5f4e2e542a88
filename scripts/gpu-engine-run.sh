#!/usr/bin/env bash
# Runs on the lent GPU machine (repository root, .gpu-bundle/ carried with the binaries, their
# libraries and a copy of the shared fixtures under .gpu-bundle/shared): every GPU test, the
# engine's end-to-end checks (score, eval-ppl, greedy generation) on the fixtures and the real
# stories260K, a batch through coordinator + `serve worker --device cuda`, then the kernel
# benchmarks. Logs go to $OUT. Prints a short table last.
set -uo pipefail
root=$PWD
bundle=$root/${GPU_BUNDLE:-.gpu-bundle}
export LD_LIBRARY_PATH=$bundle/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib
export NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$bundle/shared
out=${OUT:-/tmp}
ff=$bundle/bin/flatfleet
shared=$bundle/shared
declare -a table
row() { table+=("$(printf '%-44s %s' "$1" "$2")"); }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"

"$bundle/bin/gpu_tests" --gtest_brief=1 > "$out/gpu_tests.txt" 2>&1
row "gpu_tests (exit $?)" "$(grep -E '^\[  (PASSED|FAILED|SKIPPED)' "$out/gpu_tests.txt" | tr '\n' ' ')"
grep -E '^\[  FAILED|relative error' "$out/gpu_tests.txt" | head -40

for model in fixtures/llama-tiny fixtures/mixtral-tiny models/stories260K; do
  "$ff" score --device cuda --model "$shared/$model" > "$out/score_$(basename $model).txt" 2>&1
  rc=$?
  row "score --device cuda $(basename $model) (exit $rc)" \
    "$(grep -E '^logits|^top-1|^greedy' "$out/score_$(basename $model).txt" | tr '\n' ';' | cut -c1-200)"
done
/usr/bin/time -f '%e s' "$ff" eval-ppl --device cuda --model "$shared/models/stories260K" \
  --text "$shared/data/tinystories/valid.txt" > "$out/ppl_cuda.txt" 2>&1
row "eval-ppl --device cuda stories260K" "$(tail -n 3 "$out/ppl_cuda.txt" | tr '\n' ' ')"
for device in cpu cuda; do
  "$ff" generate --device $device --model "$shared/models/stories260K" --prompt "Once upon a time" \
    --max-tokens 48 > "$out/generate_$device.txt" 2>&1
done
if cmp -s "$out/generate_cpu.txt" "$out/generate_cuda.txt"; then same=equal; else same=DIFFERENT; fi
row "generate greedy 48 tokens cpu vs cuda" "$same: $(head -c 120 "$out/generate_cuda.txt" | tr '\n' ' ')"

# The service: coordinator + one GPU worker on loopback, a 64-request batch.
work=$(mktemp -d)
"$ff" serve worker --device cuda --listen 127.0.0.1:7171 > "$out/worker.txt" 2>&1 &
worker=$!
sleep 2
"$ff" serve coordinator --listen 127.0.0.1:7170 --db "$work/jobs.sqlite" --worker 127.0.0.1:7171 \
  --model stories="$shared/models/stories260K" > "$out/coordinator.txt" 2>&1 &
coordinator=$!
sleep 3
for i in $(seq 0 63); do
  printf '{"custom_id": "r%d", "body": {"prompt": "Once upon a time %d", "max_tokens": 32, "temperature": 0.8, "seed": %d}}\n' $i $i $i
done > "$work/requests.jsonl"
batch=$("$ff" submit "$work/requests.jsonl" --model stories --coordinator 127.0.0.1:7170 2>>"$out/submit.txt")
timeout 120 "$ff" results "$batch" -o "$out/results.jsonl" --follow --coordinator 127.0.0.1:7170 \
  >> "$out/submit.txt" 2>&1
"$ff" status "$batch" --coordinator 127.0.0.1:7170 > "$out/status.txt" 2>&1
row "batch via coordinator + serve worker --device cuda" \
  "$(wc -l < "$out/results.jsonl") result lines; $(tr '\n' ' ' < "$out/status.txt" | cut -c1-150)"
kill $coordinator $worker 2>/dev/null; wait 2>/dev/null

timeout 240 "$bundle/bin/gpu_bench" --benchmark_min_time=0.05s \
  --benchmark_filter="${BENCH_FILTER:-CublasLt|PagedAttention|Attention|FusedAddRmsNorm|Sampling|MixtralMoeLayer}" \
  > "$out/gpu_bench.txt" 2>&1
row "gpu_bench (exit $?)" "$(grep -c '^BM_' "$out/gpu_bench.txt") benchmarks in gpu_bench.txt"
echo; echo "=== summary"; printf '%s\n' "${table[@]}"
