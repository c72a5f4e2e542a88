#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Final run A: every GPU test (the warp-specialised wgmma kernel first, alone, under a timeout),
# then the engine checks, the quantized checkpoint checks and the service batch.
set -uo pipefail
b=$PWD/.gpu-bundle
(cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=$OUT
timeout 120 $b/bin/gpu_tests --gtest_brief=1 --gtest_filter='*W4A8PrefillWgmmaGpuTest.WarpSpecialized*' > $out/ws.txt 2>&1; echo "warp-specialised wgmma tests rc=$?"; tail -3 $out/ws.txt
timeout 360 $b/bin/gpu_tests --gtest_brief=1 --gtest_filter='-*W4A8PrefillWgmmaGpuTest.WarpSpecialized*' --gtest_output=xml:$out/gpu_tests.xml > $out/gpu_tests.txt 2>&1; echo "gpu_tests rc=$?"
grep -E '^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]|tests ran' $out/gpu_tests.txt | head -30
scripts/gpu-test-skips.sh $out/gpu_tests.xml 2>&1 | tail -5
RUN_TESTS=0 RUN_KERNEL_BENCH=0 ENGINE_BENCH=0 timeout 200 scripts/gpu-engine-run.sh 2>&1 | tail -14
