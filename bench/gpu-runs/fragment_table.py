#!/usr/bin/env python3
"""Prints the BM_W4A8FragmentGemm table from gpu_bench's JSON output (argv[1]): per shape and m,
kAuto's configuration and time beside the peers timed in the same process, and the best forced
configuration."""
import collections
import json
import sys

runs = json.load(open(sys.argv[1]))["benchmarks"]
auto = {}
forced = collections.defaultdict(list)
for r in runs:
    if not r["name"].startswith("BM_W4A8FragmentGemm/") or r.get("error_occurred"):
        continue
    fields = dict(p.split(":") for p in r["name"].split("/")[1:] if ":" in p)
    m, n, k, config = (int(fields[x]) for x in ("m", "n", "k", "config"))
    if config == 0:
        auto[(n, k, m)] = r
    else:
        forced[(n, k, m)].append((r["us"], config))
print("| n x k | m | auto us | split/blocks | TB/s | cuBLASLt bf16 us | cuBLAS INT8 us | previous us"
      " | x bf16 | x int8 | x previous | best forced (config: us) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for (n, k, m), r in sorted(auto.items(), key=lambda kv: (kv[0][1] * kv[0][0], kv[0][0], kv[0][2])):
    best = min(forced.get((n, k, m), [(0, 0)]))
    tbs = (n * k / 2 + 2 * n * k / 128) / (r["us"] * 1e-6) / 1e12
    print(f"| {n} x {k} | {m} | {r['us']:.1f} | {int(r['split'])}/{int(r['blocks'])} | {tbs:.2f} | "
          f"{r['bf16_us']:.1f} | {r['int8_us']:.1f} | {r['previous_us']:.1f} | {r['x_bf16']:.2f} | "
          f"{r['x_int8']:.2f} | {r['x_previous']:.2f} | "
          + (f"{best[1]}: {best[0]:.1f}" if best[1] else "") + " |")
