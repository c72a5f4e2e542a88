#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 10, call 1: every GPU test in 3 shards (FlatQuant's Kronecker kernel, the 2/3-bit
# recipes on the W4A8 GEMMs, and session 9's last refactors, which had not run on a device); the
# online transforms beside the W4A8 GEMMs they precede; a Llama-3-70B-shaped 2-layer checkpoint
# quantized with w4a4-flatquant (FlatQuant's training on the host's cores), per-phase times, then
# generated from on the GPU. Files back: tests.txt, transforms.json, transforms.md, quant.txt,
# phases.jsonl. (As run, its BM_W4A8FragmentGemm filter ended in config:0$, which matched nothing:
# the names end in /manual_time; fixed here.)
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=${OUT:-/tmp}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
echo "machine: $(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
stamp "every GPU test (3 shards)"
pids=()
for i in 0 1 2; do
  GTEST_TOTAL_SHARDS=3 GTEST_SHARD_INDEX=$i timeout 230 $b/bin/gpu_tests --gtest_brief=1 \
    > /tmp/gpu_tests_$i.txt 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
cat /tmp/gpu_tests_0.txt /tmp/gpu_tests_1.txt /tmp/gpu_tests_2.txt > $out/tests.txt
for i in 0 1 2; do echo "shard $i: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' /tmp/gpu_tests_$i.txt | tr '\n' ' ') $(tail -n 1 /tmp/gpu_tests_$i.txt | cut -c1-70)"; done
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/tests.txt | sort -u | head -20
grep -hE '^(models|fixtures)/.*(flatquant|w[23]a8)' $out/tests.txt | head -12
stamp "transforms beside the GEMMs"
timeout 150 $b/bin/gpu_bench --benchmark_format=json \
  --benchmark_filter='BM_KroneckerRows|BM_HadamardRows|BM_W4A8FragmentGemm/m:(1|16)/n:[0-9]+/k:(4096|8192|14336|28672)/config:0/|BM_W4A8FragmentWgmma/m:(256|4096)/n:[0-9]+/k:[0-9]+/tile:0/split:0' \
  > $out/transforms.json 2> /tmp/transforms.err
echo "bench rc=$? $(tail -n 1 /tmp/transforms.err | cut -c1-200)"
python3 bench/gpu-runs/transform_table.py $out/transforms.json > $out/transforms.md
stamp "quantize w4a4-flatquant (70B-shaped, 2 layers)"
work=/tmp/s10q
rm -rf $work && mkdir -p $work
$b/bin/flatfleet make-checkpoint --arch llama-3-70b --layers 2 --vocab 32000 --random \
  --out $work/src > /tmp/make.txt 2>&1
echo "make-checkpoint rc=$?"
/usr/bin/time -v timeout 300 $b/bin/flatfleet quantize --model $work/src --recipe w4a4-flatquant \
  --device cuda --calib-tokens 256 --calib-length 128 --phase-times $out/phases.jsonl \
  --out $work/quantized --work-dir $work/partial --force > $out/quant.txt 2>&1
echo "quantize rc=$? ($(du -sh $work/quantized 2>/dev/null | cut -f1))"
grep -E '^\[layer|^    phases|Maximum resident|Elapsed \(wall' $out/quant.txt
python3 bench/gpu-runs/phase_table.py $out/phases.jsonl 2>/dev/null | head -30
timeout 120 $b/bin/flatfleet generate --model $work/quantized --device cuda \
  --tokenizer $b/shared/models/stories260K --prompt "Once upon" --max-tokens 8 > /tmp/gen.txt 2>&1
echo "generate --device cuda on the w4a4-flatquant output rc=$?"; tail -n 3 /tmp/gen.txt
cat /tmp/gen.txt >> $out/quant.txt
rm -rf $work
stamp "done"
cat $out/transforms.md
