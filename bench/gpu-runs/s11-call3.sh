#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 11, call 3: the staged path's split rule (W4A8FragmentStagedSplit) against the current
# rule at 1, 8, 16 and 32 rows, ring and staged configurations (BM_W4A8FragmentStagedSplit); the
# FlatQuant transform's other two paths; `flatfleet bench` of the Llama-3-8B shape, 64 requests of
# 1,000 + 200, bf16 and w4a8. Files back: split.json, split.md, kron.json, engine.txt.
set -uo pipefail
source bench/gpu-runs/lib.sh
stamp "config tests"
timeout 60 $b/bin/gpu_tests --gtest_brief=1 --gtest_filter='W4A8FragmentConfig*' 2>&1 | tail -n 2
stamp "split sweep"
timeout 240 $b/bin/gpu_bench --benchmark_format=json --benchmark_filter='BM_W4A8FragmentStagedSplit' \
  > $out/split.json 2> /tmp/split.err
echo "bench rc=$? $(tail -n 1 /tmp/split.err | cut -c1-200)"
python3 bench/gpu-runs/staged_split_table.py $out/split.json > $out/split.md
stamp "Kronecker paths 1 and 3"
timeout 90 $b/bin/gpu_bench --benchmark_format=json \
  --benchmark_filter='BM_KroneckerQuantize/m:[0-9]+/n:[0-9]+/path:(1|3)/' > $out/kron.json 2> /tmp/kron.err
echo "kron rc=$?"
stamp "flatfleet bench, Llama-3-8B shape"
for recipe in bf16 w4a8; do
  echo "== $recipe" >> $out/engine.txt
  timeout 90 $b/bin/flatfleet bench --device cuda --recipe $recipe --arch llama-3-8b --requests 64 \
    --max-batch 64 --input-len 1000 --output-len 200 >> $out/engine.txt 2>&1
  echo "rc=$? $recipe => $(grep -E '^throughput|^ITL|^TTFT' $out/engine.txt | tail -n 3 | tr '\n' ' ' | cut -c1-200)"
done
stamp "done"
cat $out/split.md
