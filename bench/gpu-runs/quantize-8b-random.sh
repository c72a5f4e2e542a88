#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Issue 10: a Llama-3-8B-shaped random checkpoint (LAYERS decoder layers, default all 32) quantized
# end to end with w4a8-gptq, GPTQ's Gram and solver on the GPU (--device cuda). quantize's
# progress lines give each layer's time, the ETA, peak host RSS and peak device memory of the GPTQ
# backend; /usr/bin/time adds the whole run's peak RSS. A run cut by TIMEOUT keeps its work
# directory: RESUME=1 in the next call (same warm machine) continues from the last finished layer.
# Outputs under $OUT: q8b_make.txt, q8b_quantize.txt, q8b_summary.txt.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/flatfleet ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0
out=${OUT:-/tmp}
work=${WORK:-/tmp/q8b}
layers=${LAYERS:-32}
limit=${TIMEOUT:-540}
# Calibration forwards run on the CPU: 512 tokens keep a layer's two passes to seconds.
calib="--calib-tokens ${CALIB_TOKENS:-512} --calib-length 128"
timed() { if [ -x /usr/bin/time ]; then /usr/bin/time -v "$@"; else "$@"; fi; }
if [ "${RESUME:-0}" != 1 ]; then
  rm -rf $work
  mkdir -p $work
  timed $b/bin/flatfleet make-checkpoint --arch llama-3-8b --layers $layers --random \
    --out $work/src > $out/q8b_make.txt 2>&1
  echo "make-checkpoint rc=$? ($(du -sh $work/src | cut -f1))"
  resume=''
else
  resume='--resume'
fi
(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > $work/smi.txt 2>&1 &
 echo $! > $work/smi.pid)
timed timeout $limit $b/bin/flatfleet quantize --model $work/src --recipe w4a8-gptq --device cuda $calib \
  --out $work/quantized --work-dir $work/partial --force $resume >> $out/q8b_quantize.txt 2>&1
rc=$?
kill "$(cat $work/smi.pid)" 2>/dev/null
{
  echo "quantize rc=$rc (124: cut by TIMEOUT=$limit s; rerun with RESUME=1)"
  grep -E '^\[layer' $out/q8b_quantize.txt
  grep -E 'Maximum resident set size|Elapsed \(wall' $out/q8b_quantize.txt
  echo "nvidia-smi peak memory.used (MiB, whole GPU): $(sort -n $work/smi.txt | tail -n 1)"
  du -sh $work/quantized 2>/dev/null
} | tee $out/q8b_summary.txt
