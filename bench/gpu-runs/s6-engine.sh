#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 6, call C: `flatfleet bench` end to end (bf16 and W4A8 in the same run), then the
# Llama-3-8B-shaped random checkpoint quantized with GPTQ on the GPU (quantize-8b-random.sh).
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/flatfleet ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0
out=${OUT:-/tmp}
while read -r args; do
  echo "== bench $args" >> $out/engine.txt
  timeout ${BENCH_LIMIT:-100} $b/bin/flatfleet bench --device cuda $args >> $out/engine.txt 2>&1
  echo "rc=$? $args => $(grep -E '^throughput|^ITL|^TTFT' $out/engine.txt | tail -n 3 | tr '\n' ' ' | cut -c1-220)"
done < ${LIST:-bench/lists/s6.txt}
if [ "${QUANT8B:-1}" = 1 ]; then
  LAYERS=${LAYERS:-8} TIMEOUT=${QTIMEOUT:-200} bench/gpu-runs/quantize-8b-random.sh
  tail -n 20 $out/q8b_summary.txt
fi
