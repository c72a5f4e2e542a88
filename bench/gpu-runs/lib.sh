# Sourced by the session scripts run on the GPU machine (repository root, .gpu-bundle/ carried):
# the bundle's binaries and libraries, the output folder, a stopwatch, and the steps every call
# repeats. Defines b (the bundle), out ($OUT or /tmp), stamp, run_gpu_tests_sharded,
# bench_transforms and quantize_70b_two_layers.
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=${OUT:-/tmp}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

# Every GPU test in 3 concurrent shards (timeout $1 s each) into $out/tests.txt, then a line per
# shard, the failed tests and the lines matching the grep pattern $2.
run_gpu_tests_sharded() {
  local pids=() i
  for i in 0 1 2; do
    GTEST_TOTAL_SHARDS=3 GTEST_SHARD_INDEX=$i timeout $1 $b/bin/gpu_tests --gtest_brief=1 \
      > /tmp/gpu_tests_$i.txt 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  cat /tmp/gpu_tests_0.txt /tmp/gpu_tests_1.txt /tmp/gpu_tests_2.txt > $out/tests.txt
  for i in 0 1 2; do echo "shard $i: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' /tmp/gpu_tests_$i.txt | tr '\n' ' ') $(tail -n 1 /tmp/gpu_tests_$i.txt | cut -c1-70)"; done
  grep -hE '^\[  FAILED  \] [A-Za-z]' $out/tests.txt | sort -u | head -20
  grep -hE "$2" $out/tests.txt | head -14
}

# gpu_bench's benchmarks matching $1 beside the W4A8 GEMMs each transform precedes, into
# $out/transforms.json and the table $out/transforms.md (bench/gpu-runs/transform_table.py).
bench_transforms() {
  timeout 150 $b/bin/gpu_bench --benchmark_format=json \
    --benchmark_filter="$1|BM_W4A8FragmentGemm/m:(1|16)/n:[0-9]+/k:(4096|8192|14336|28672)/config:0/|BM_W4A8FragmentWgmma/m:(256|4096)/n:[0-9]+/k:[0-9]+/tile:0/split:0" \
    > $out/transforms.json 2> /tmp/transforms.err
  echo "bench rc=$? $(tail -n 1 /tmp/transforms.err | cut -c1-200)"
  python3 bench/gpu-runs/transform_table.py $out/transforms.json > $out/transforms.md
}

# A Llama-3-70B-shaped random checkpoint of 2 layers (vocab 32000) quantized with recipe $1
# (--device cuda, 256 calibration tokens, timeout $2 s, per-phase times), then generated from on
# the GPU; leaves the output in $work/quantized for the caller. Into $out/quant.txt and
# $out/phases.jsonl.
quantize_70b_two_layers() {
  work=/tmp/s10q
  rm -rf $work && mkdir -p $work
  $b/bin/flatfleet make-checkpoint --arch llama-3-70b --layers 2 --vocab 32000 --random \
    --out $work/src > /tmp/make.txt 2>&1
  echo "make-checkpoint rc=$?"
  /usr/bin/time -v timeout $2 $b/bin/flatfleet quantize --model $work/src --recipe $1 \
    --device cuda --calib-tokens 256 --calib-length 128 --phase-times $out/phases.jsonl \
    --out $work/quantized --work-dir $work/partial --force > $out/quant.txt 2>&1
  echo "quantize rc=$? ($(du -sh $work/quantized 2>/dev/null | cut -f1))"
  grep -E '^\[layer|^    phases|Maximum resident|Elapsed \(wall' $out/quant.txt
  python3 bench/gpu-runs/phase_table.py $out/phases.jsonl 2>/dev/null | head -30
  timeout 120 $b/bin/flatfleet generate --model $work/quantized --device cuda \
    --tokenizer $b/shared/models/stories260K --prompt "Once upon" --max-tokens 8 > /tmp/gen.txt 2>&1
  echo "generate --device cuda on the $1 output rc=$?"; tail -n 3 /tmp/gen.txt
  cat /tmp/gen.txt >> $out/quant.txt
}
