#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Final run B: kernel benchmarks (same binary, same run: peers beside each kernel) and the engine.
set -uo pipefail
b=$PWD/.gpu-bundle
(cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0
out=$OUT
gb() { timeout $1 $b/bin/gpu_bench --benchmark_min_time=0.03 --benchmark_filter="$2" > $out/$3 2>&1; echo "$3 rc=$? $(grep -c '^BM_' $out/$3) results"; }
gb 80 'BM_W4A8DecodeStreaming|BM_CublasInt8Decode|BM_CublasLtBf16DecodeTP' bench_decode.txt
gb 80 "BM_W4A8PrefillGemm/m:(4096)/.*/kernel:[${PREFILL_KERNELS:-1-4}]/|BM_(CublasLtBf16Prefill|CublasInt8Prefill)/m:(4096)/" bench_prefill.txt
gb 20 'BM_AddRmsNorm' bench_norm.txt
while read -r args; do
  echo "== bench $args" >> $out/engine.txt
  timeout 80 $b/bin/flatfleet bench --device cuda $args >> $out/engine.txt 2>&1
  echo "$args => $(grep -E '^throughput|^ITL|^TTFT' $out/engine.txt | tail -n 3 | tr '\n' ' ' | cut -c1-220)"
done < bench/lists/s5-final.txt
