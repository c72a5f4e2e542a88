#!/usr/bin/env bash
# Runs on the lent GPU machine (repository root, .gpu-bundle/ carried with the binaries, their
# libraries and a copy of the shared fixtures under .gpu-bundle/shared): every GPU test, the
# engine's end-to-end checks (score, eval-ppl, greedy generation) on the fixtures and the real
# stories260K, a batch through coordinator + `serve worker --device cuda`, then the kernel
# benchmarks. Logs go to $OUT. Prints a short table last; exits non-zero when a GPU test failed or
# skipped although the machine could run it (scripts/gpu-test-skips.sh).
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

# RUN_TESTS=0, RUN_SERVICE=0, RUN_KERNEL_BENCH=0, ENGINE_BENCH=0 skip those parts.
if [ "${RUN_TESTS:-1}" = 1 ]; then
  "$bundle/bin/gpu_tests" --gtest_brief=1 --gtest_output="xml:$out/gpu_tests.xml" \
    > "$out/gpu_tests.txt" 2>&1
  tests_rc=$?
  # A test this machine could run but skipped (e.g. "no GPU" on a GPU host) fails the stage.
  "$root/scripts/gpu-test-skips.sh" "$out/gpu_tests.xml" 2> "$out/gpu_test_skips.txt" ||
    { [ "$tests_rc" = 0 ] && tests_rc=1; }
  row "gpu_tests (exit $tests_rc)" "$(grep -E '^\[  (PASSED|FAILED|SKIPPED)' "$out/gpu_tests.txt" | tr '\n' ' ')"
  grep -E '^\[  FAILED|relative error' "$out/gpu_tests.txt" | head -40
  cat "$out/gpu_test_skips.txt"
fi

work=$(mktemp -d)
for model in fixtures/llama-tiny fixtures/mixtral-tiny models/stories260K; do
  "$ff" score --device cuda --model "$shared/$model" > "$work/score.txt" 2>&1
  rc=$?
  { echo "== score $model (exit $rc)"; cat "$work/score.txt"; } >> "$out/engine.txt"
  row "score --device cuda $(basename $model) (exit $rc)" \
    "$(grep -E '^logits|^top-1|^greedy' "$work/score.txt" | tr '\n' ';' | cut -c1-200)"
done
/usr/bin/time -f '%e s' "$ff" eval-ppl --device cuda --model "$shared/models/stories260K" \
  --text "$shared/data/tinystories/valid.txt" > "$work/ppl.txt" 2>&1
{ echo "== eval-ppl"; cat "$work/ppl.txt"; } >> "$out/engine.txt"
row "eval-ppl --device cuda stories260K" "$(tail -n 3 "$work/ppl.txt" | tr '\n' ' ')"
for device in cpu cuda; do
  "$ff" generate --device $device --model "$shared/models/stories260K" --prompt "Once upon a time" \
    --max-tokens 48 > "$work/generate_$device.txt" 2> "$work/generate_$device.err"
  { echo "== generate --device $device"; cat "$work/generate_$device.err" "$work/generate_$device.txt"; } >> "$out/engine.txt"
done
if cmp -s "$work/generate_cpu.txt" "$work/generate_cuda.txt"; then same=equal; else same=DIFFERENT; fi
row "generate greedy 48 tokens cpu vs cuda" "$same: $(head -c 120 "$work/generate_cuda.txt" | tr '\n' ' ')"

# Quantized checkpoints on the GPU (RUN_QUANT=0 skips): stories260K quantized here on the CPU
# (w8a8, per-token activations need no calibration text), then eval-ppl and greedy generation on
# both devices from the same directory.
if [ "${RUN_QUANT:-1}" = 1 ]; then
  qdir=$work/stories-w8a8
  "$ff" quantize --model "$shared/models/stories260K" --recipe w8a8 --out "$qdir" \
    > "$work/quantize.txt" 2>&1
  row "quantize stories260K w8a8 (exit $?)" "$(tail -n 1 "$work/quantize.txt")"
  for device in cpu cuda; do
    "$ff" eval-ppl --device $device --model "$qdir" --text "$shared/data/tinystories/valid.txt" \
      --max-windows 64 > "$work/qppl_$device.txt" 2>&1
    row "eval-ppl w8a8 --device $device (exit $?)" "$(grep -i perplexity "$work/qppl_$device.txt" | tail -n 1)"
    "$ff" generate --device $device --model "$qdir" --prompt "Once upon a time" --max-tokens 48 \
      > "$work/qgen_$device.txt" 2> "$work/qgen_$device.err"
  done
  if cmp -s "$work/qgen_cpu.txt" "$work/qgen_cuda.txt"; then same=equal; else same=DIFFERENT; fi
  row "generate w8a8 greedy 48 cpu vs cuda" "$same: $(head -c 100 "$work/qgen_cuda.txt" | tr '\n' ' ')"
  "$ff" score --device cuda --model "$qdir" --reference "$shared/models/stories260K/reference.safetensors" \
    > "$work/qscore.txt" 2>&1
  row "score w8a8 QDIR --device cuda (exit $?)" "$(grep -E '^logits|^top-1|KL' "$work/qscore.txt" | tr '\n' ';' | cut -c1-160)"
  for f in quantize qppl_cpu qppl_cuda qgen_cpu.err qgen_cuda.err qscore; do
    { echo "== $f"; cat "$work/$f"*; } >> "$out/engine.txt"
  done
fi

# The service: coordinator + one GPU worker on loopback, a 64-request batch.
if [ "${RUN_SERVICE:-1}" = 1 ]; then
"$ff" serve worker --device cuda --listen 127.0.0.1:7171 > "$work/worker.txt" 2>&1 &
worker=$!
sleep 2
"$ff" serve coordinator --listen 127.0.0.1:7170 --db "$work/jobs.sqlite" --worker 127.0.0.1:7171 \
  --model stories="$shared/models/stories260K" > "$work/coordinator.txt" 2>&1 &
coordinator=$!
sleep 3
for i in $(seq 0 63); do
  printf '{"custom_id": "r%d", "body": {"prompt": "Once upon a time %d", "max_tokens": 32, "temperature": 0.8, "seed": %d}}\n' $i $i $i
done > "$work/requests.jsonl"
batch=$("$ff" submit "$work/requests.jsonl" --model stories --coordinator 127.0.0.1:7170 2>>"$work/submit.txt")
timeout 120 "$ff" results "$batch" -o "$out/results.jsonl" --follow --coordinator 127.0.0.1:7170 \
  >> "$work/submit.txt" 2>&1
"$ff" status "$batch" --coordinator 127.0.0.1:7170 > "$work/status.txt" 2>&1
row "batch via coordinator + serve worker --device cuda" \
  "$(wc -l < "$out/results.jsonl") result lines; $(tr '\n' ' ' < "$work/status.txt" | cut -c1-150)"
kill $coordinator $worker 2>/dev/null; wait 2>/dev/null
for f in worker coordinator submit status; do { echo "== $f"; cat "$work/$f.txt"; } >> "$out/service.txt"; done
fi

[ "${RUN_KERNEL_BENCH:-1}" = 1 ] && timeout 240 "$bundle/bin/gpu_bench" --benchmark_min_time=0.05 \
  --benchmark_filter="${BENCH_FILTER:-CublasLt|PagedAttention|Attention|FusedAddRmsNorm|Sampling|MixtralMoeLayer}" \
  > "$out/gpu_bench.txt" 2>&1
[ "${RUN_KERNEL_BENCH:-1}" = 1 ] && row "gpu_bench" "$(grep -c '^BM_' "$out/gpu_bench.txt") benchmarks in gpu_bench.txt"
# The engine on Llama-3-8B-shaped random weights (ENGINE_BENCH=0 skips it).
if [ "${ENGINE_BENCH:-1}" = 1 ]; then
  bench() {
    echo "== flatfleet bench $*" >> "$out/engine_bench.txt"
    timeout 300 "$ff" bench --device cuda "$@" >> "$out/engine_bench.txt" 2>&1
    row "bench $*" "$(grep -E '^throughput|^ITL|^TTFT' "$out/engine_bench.txt" | tail -n 3 | tr '\n' ' ' | cut -c1-160)"
  }
  # BENCH_LIST=FILE: one line of bench arguments per run instead of these.
  if [ -n "${BENCH_LIST:-}" ]; then
    while read -r args; do [ -n "$args" ] && bench $args; done < "$BENCH_LIST"
  else
    bench --arch llama-3-8b --requests 1 --max-batch 1 --input-len 1024 --output-len 64
    bench --arch llama-3-8b --requests 16 --max-batch 16 --input-len 1024 --output-len 64
    bench --arch llama-3-8b --requests 64 --max-batch 64 --input-len 1024 --output-len 64
    bench --arch llama-3-8b --requests 8 --max-batch 8 --input-len 2048 --output-len 1 --max-step-tokens 16384
  fi
  ${EXTRA_BENCH:-true}
fi
echo; echo "=== summary"; printf '%s\n' "${table[@]}"
# The test stage decides the exit code: a failed GPU test, or one skipped on a machine that could
# run it, makes the whole run fail.
exit "${tests_rc:-0}"
