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
source bench/gpu-runs/lib.sh
echo "machine: $(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
stamp "every GPU test (3 shards)"
run_gpu_tests_sharded 230 '^(models|fixtures)/.*(flatquant|w[23]a8)'
stamp "transforms beside the GEMMs"
bench_transforms 'BM_KroneckerRows|BM_HadamardRows'
stamp "quantize w4a4-flatquant (70B-shaped, 2 layers)"
quantize_70b_two_layers w4a4-flatquant 300
rm -rf $work
stamp "done"
cat $out/transforms.md
