#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 9, call 4: after call 3, the bit-exact wgmma tests force the unsplit kernel and the
# split rule is narrowed to what call 3 measured faster; their tests and the backend's, then
# `flatfleet bench` with the wgmma kernel on (Llama-3-8B 64 requests, Llama-3-70B 1 request).
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=${OUT:-/tmp}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
stamp "tests"
for i in 0 1; do
  GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=$i timeout 60 $b/bin/gpu_tests --gtest_brief=1 \
    --gtest_filter='*W4A8FragmentWgmma*:*CudaQuantizedLinear*' > /tmp/tests_$i.txt 2>&1 &
done
wait
cat /tmp/tests_0.txt /tmp/tests_1.txt > $out/tests.txt
for i in 0 1; do echo "shard $i: $(grep -E '^\[  (PASSED|FAILED) ' /tmp/tests_$i.txt | tr '\n' ' ')"; done
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/tests.txt | sort -u | head
stamp "flatfleet bench"
for spec in "llama-3-8b --requests 64 --max-batch 64 --input-len 1000 --output-len 200" \
            "llama-3-70b --requests 1 --max-batch 1 --input-len 1024 --output-len 64"; do
  echo "== $spec" >> $out/engine.txt
  timeout 40 $b/bin/flatfleet bench --device cuda --recipe w4a8 --arch $spec >> $out/engine.txt 2>&1
  echo "rc=$? $spec => $(grep -E '^throughput|^ITL|^TTFT' $out/engine.txt | tail -n 3 | tr '\n' ' ' | cut -c1-220)"
done
stamp "done"
