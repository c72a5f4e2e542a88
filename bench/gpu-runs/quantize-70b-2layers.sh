#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Issue 10: a Llama-3-70B-shaped random checkpoint with LAYERS (default 2) decoder layers (vocab
# 32000: the embedding and LM head are copied, not quantized) quantized with w4a8-gptq, GPTQ's
# Gram and solver on the GPU; per-layer time, peak host RSS and device memory from quantize's
# progress lines and /usr/bin/time; then the output loads on the GPU and generates.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/flatfleet ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0
out=${OUT:-/tmp}
work=${WORK:-/tmp/q70}
rm -rf $work && mkdir -p $work
/usr/bin/time -v $b/bin/flatfleet make-checkpoint --arch llama-3-70b --layers ${LAYERS:-2} \
  --vocab 32000 --random --out $work/src > $out/q70_make.txt 2>&1
echo "make-checkpoint rc=$? ($(du -sh $work/src | cut -f1))"
/usr/bin/time -v timeout ${TIMEOUT:-300} $b/bin/flatfleet quantize --model $work/src \
  --recipe w4a8-gptq --device cuda --calib-tokens ${CALIB_TOKENS:-256} --calib-length 128 \
  --out $work/quantized --work-dir $work/partial --force > $out/q70_quantize.txt 2>&1
echo "quantize rc=$? ($(du -sh $work/quantized 2>/dev/null | cut -f1))"
grep -E '^\[layer|Maximum resident|Elapsed \(wall' $out/q70_quantize.txt
# The output loads on the GPU and generates (a few greedy tokens; the random checkpoint carries
# stories260K's tokenizer: make-checkpoint writes none).
timeout 120 $b/bin/flatfleet generate --model $work/quantized --device cuda --tokenizer $b/shared/models/stories260K --prompt "Once upon" \
  --max-tokens 8 > $out/q70_generate.txt 2>&1
echo "generate on the quantized 70B-shaped checkpoint rc=$?"; tail -n 3 $out/q70_generate.txt
