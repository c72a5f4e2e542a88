#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 10, call 2: every GPU test (the multi-block exact Kronecker kernel, the fused TF32
# transform + quantizer, the shared scale rounding); the transforms beside the W4A8 GEMMs; the
# 70B-shaped 2-layer w4a4-flatquant quantize with the vectorised weight fold, then the output on
# the GPU: generate, and `flatfleet bench` of the checkpoint with the fused and the exact
# transform. Files back: tests.txt, transforms.json, transforms.md, quant.txt, phases.jsonl,
# engine.txt.
set -uo pipefail
source bench/gpu-runs/lib.sh
stamp "every GPU test (3 shards)"
run_gpu_tests_sharded 230 '^n [0-9]+ \(|flatquant'
stamp "transforms beside the GEMMs"
bench_transforms 'BM_KroneckerRows|BM_KroneckerQuantize|BM_HadamardRows'
stamp "quantize w4a4-flatquant (70B-shaped, 2 layers)"
quantize_70b_two_layers w4a4-flatquant 240
stamp "flatfleet bench of the w4a4-flatquant checkpoint: fused TF32 transform, then exact"
for label in fused exact; do
  envs="A=1"; [ $label = exact ] && envs="FLATFLEET_KRONECKER_EXACT=1"
  echo "== $label" >> $out/engine.txt
  env $envs timeout 60 $b/bin/flatfleet bench --device cuda --arch $work/quantized \
    --requests 32 --max-batch 32 --input-len 512 --output-len 64 >> $out/engine.txt 2>&1
  echo "rc=$? $label => $(grep -E '^throughput|^ITL|^TTFT' $out/engine.txt | tail -n 3 | tr '\n' ' ' | cut -c1-220)"
done
rm -rf $work
stamp "done"
cat $out/transforms.md
