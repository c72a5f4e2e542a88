#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 11, call 4, the final tree: every GPU test (3 shards); the fragment GEMM's final rule
# with its peers at 1, 8, 16, 32 rows; `flatfleet bench` of the 70B shape (1 and 16 requests) and
# the 8B shape (1 request, 64 requests), w4a8. Files back: tests.txt, final.json, engine.txt.
set -uo pipefail
source bench/gpu-runs/lib.sh
stamp "every GPU test (3 shards)"
run_gpu_tests_sharded 300 'decisive positions [0-9]+ of'
stamp "the final rule and its peers"
timeout 150 $b/bin/gpu_bench --benchmark_format=json \
  --benchmark_filter='BM_W4A8FragmentGemm/m:(1|8|16|32)/n:[0-9]+/k:[0-9]+/config:0/' \
  > $out/final.json 2> /tmp/final.err
echo "bench rc=$? $(tail -n 1 /tmp/final.err | cut -c1-200)"
python3 - $out/final.json <<'PY'
import json, re, sys
print("| n x k | m | split | stages | warps | us | bf16 us | INT8 us | previous us | x bf16 | x INT8 | x previous |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
rows = []
for r in json.load(open(sys.argv[1]))["benchmarks"]:
    m = re.match(r"BM_W4A8FragmentGemm/m:(\d+)/n:(\d+)/k:(\d+)/config:0/", r["name"])
    if m and not r.get("error_occurred"):
        rows.append((int(m.group(2)) * int(m.group(3)), int(m.group(2)), int(m.group(3)), int(m.group(1)), r))
for _, n, k, mm, r in sorted(rows):
    print(f"| {n} x {k} | {mm} | {int(r['split'])} | {int(r['stages'])} | {int(r['warps'])} | {r['us']:.1f} | "
          f"{r['bf16_us']:.1f} | {r['int8_us']:.1f} | {r['previous_us']:.1f} | {r['x_bf16']:.2f} | "
          f"{r['x_int8']:.2f} | {r['x_previous']:.2f} |")
PY
stamp "flatfleet bench"
for spec in "llama-3-70b --requests 1 --max-batch 1 --input-len 1024 --output-len 64" \
            "llama-3-70b --requests 16 --max-batch 16 --input-len 512 --output-len 128" \
            "llama-3-8b --requests 1 --max-batch 1 --input-len 1024 --output-len 64" \
            "llama-3-8b --requests 64 --max-batch 64 --input-len 1000 --output-len 200"; do
  echo "== $spec" >> $out/engine.txt
  timeout 90 $b/bin/flatfleet bench --device cuda --recipe w4a8 --arch $spec >> $out/engine.txt 2>&1
  echo "rc=$? $spec => $(grep -E '^throughput|^ITL|^TTFT' $out/engine.txt | tail -n 3 | tr '\n' ' ' | cut -c1-200)"
done
stamp "done"
