#!/usr/bin/env python3
"""Prints the BM_W4A8FragmentGemm table from gpu_bench's JSON output (argv[1]): per shape and m,
kAuto's configuration and time beside the peers timed in the same process, and the best forced
configuration (BM_W4A8FragmentGemm's and BM_W4A8FragmentGemmWarps' forced runs); then, where
BM_W4A8FragmentGemmWarps ran, 4 against 8 warps per CTA for each block count and ring depth.

Config codes: 0 kAuto; else 10000 (8 warps per CTA; none: 4) + split * 100 (0: the rule's split)
+ blocks per warp * 10 + ring depth."""
import collections
import json
import sys


def decode(config):
    """(warps, split, blocks, depth) of a nonzero config code (split 0: the rule's)."""
    return (8 if config >= 10000 else 4, config % 10000 // 100, config // 10 % 10, config % 10)


def weight_tbs(n, k, us):
    return (n * k / 2 + 2 * n * k / 128) / (us * 1e-6) / 1e12


runs = json.load(open(sys.argv[1]))["benchmarks"]
auto = {}
forced = collections.defaultdict(list)
warps = collections.defaultdict(dict)  # (n, k, m) -> (blocks, depth) -> warps -> run
for r in runs:
    name = r["name"]
    in_warps = name.startswith("BM_W4A8FragmentGemmWarps/")
    if not (in_warps or name.startswith("BM_W4A8FragmentGemm/")) or r.get("error_occurred"):
        continue
    fields = dict(p.split(":") for p in name.split("/")[1:] if ":" in p)
    m, n, k, config = (int(fields[x]) for x in ("m", "n", "k", "config"))
    if config == 0:
        auto[(n, k, m)] = r
        continue
    forced[(n, k, m)].append((r["us"], config))
    if in_warps:
        w, _, blocks, depth = decode(config)
        warps[(n, k, m)].setdefault((blocks, depth), {})[w] = r
print("| n x k | m | auto us | split/blocks | TB/s | cuBLASLt bf16 us | cuBLAS INT8 us | previous us"
      " | x bf16 | x int8 | x previous | best forced (config: us) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for (n, k, m), r in sorted(auto.items(), key=lambda kv: (kv[0][1] * kv[0][0], kv[0][0], kv[0][2])):
    best = min(forced.get((n, k, m), [(0, 0)]))
    tbs = weight_tbs(n, k, r["us"])
    print(f"| {n} x {k} | {m} | {r['us']:.1f} | {int(r['split'])}/{int(r['blocks'])} | {tbs:.2f} | "
          f"{r['bf16_us']:.1f} | {r['int8_us']:.1f} | {r['previous_us']:.1f} | {r['x_bf16']:.2f} | "
          f"{r['x_int8']:.2f} | {r['x_previous']:.2f} | "
          + (f"{best[1]}: {best[0]:.1f}" if best[1] else "") + " |")
if warps:
    print()
    print("| n x k | m | split | blocks/depth | 4 warps us | 8 warps us | 4 warps TB/s | 8 warps TB/s"
          " | 4 / 8 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (n, k, m), by_config in sorted(warps.items(),
                                        key=lambda kv: (kv[0][1] * kv[0][0], kv[0][0], kv[0][2])):
        for (blocks, depth), by_warps in sorted(by_config.items()):
            four, eight = by_warps.get(4), by_warps.get(8)
            split = int((four or eight)["split"])
            cells = [f"{x['us']:.1f}" if x else "" for x in (four, eight)]
            cells += [f"{weight_tbs(n, k, x['us']):.2f}" if x else "" for x in (four, eight)]
            ratio = f"{four['us'] / eight['us']:.2f}" if four and eight else ""
            print(f"| {n} x {k} | {m} | {split} | {blocks}/{depth} | " + " | ".join(cells) +
                  f" | {ratio} |")
