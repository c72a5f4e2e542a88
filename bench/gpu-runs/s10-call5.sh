#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 10, call 5: the fused kernel's rows per block now fall to 1 where the blocks would not fill the
# SMs (call 4's decode regression); its tests (with row counts that take 4 and 2 rows per block)
# and the engine's FlatQuant paths, the transforms beside
# the W4A8 GEMMs again; no profile.
# Files back: tests.txt, transforms.json, transforms.md.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/gpu_tests ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0 FLATFLEET_SHARED_DIR=$b/shared
out=${OUT:-/tmp}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
stamp "tests"
timeout 200 $b/bin/gpu_tests --gtest_brief=1 \
  --gtest_filter='*Kronecker*:*StoredRecipe*:*CudaQuantizedModel*flatquant*:*CudaQuantizedLinear*:*ActivationQuantizer*:*AddRmsNorm*' \
  > $out/tests.txt 2>&1
echo "tests rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' $out/tests.txt | tr '\n' ' ')"
grep -hE '^\[  FAILED  \] [A-Za-z]' $out/tests.txt | sort -u | head -20
grep -hE '^n [0-9]+ \(|flatquant' $out/tests.txt | head -14
stamp "transforms beside the GEMMs"
timeout 150 $b/bin/gpu_bench --benchmark_format=json \
  --benchmark_filter='BM_KroneckerQuantize|BM_W4A8FragmentGemm/m:(1|16)/n:[0-9]+/k:(4096|8192|14336|28672)/config:0/|BM_W4A8FragmentWgmma/m:(256|4096)/n:[0-9]+/k:[0-9]+/tile:0/split:0' \
  > $out/transforms.json 2> /tmp/transforms.err
echo "bench rc=$? $(tail -n 1 /tmp/transforms.err | cut -c1-200)"
python3 bench/gpu-runs/transform_table.py $out/transforms.json > $out/transforms.md
stamp "done"
cat $out/transforms.md | grep -E "^\| (1|16|256|4096) \| (8192|28672|4096|14336) \|" | head -60
