#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 6, call B: kernel benchmarks, each kernel beside its peers in the same binary and run
# (cuBLASLt bf16, cuBLAS INT8 inside the W4A8 decode and mid-M cases).
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_bench ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0
out=${OUT:-/tmp}
gb() { timeout $1 $b/bin/gpu_bench --benchmark_min_time=0.03 --benchmark_filter="$2" > $out/$3 2>&1; echo "$3 rc=$? $(grep -c '^BM_' $out/$3) results"; }
gb 150 'BM_W4A8DecodePipelined' bench_decode.txt
gb 170 'BM_W4A8MidmGemm|BM_CublasLtBf16Midm' bench_midm.txt
gb 60 "BM_W4A8PrefillGemm/m:(4096)/.*/kernel:[0-2]/|BM_(CublasLtBf16Prefill|CublasInt8Prefill)/m:(4096)/" bench_prefill.txt
gb 40 'BM_DeviceSampling' bench_sampling.txt
gb 90 'BM_GptqSolve|BM_GramAccumulate' bench_gptq.txt
for f in bench_decode bench_midm bench_prefill bench_sampling bench_gptq; do
  grep -E 'ERROR|error' $out/$f.txt | head -3
done
