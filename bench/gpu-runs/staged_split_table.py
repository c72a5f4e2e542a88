#!/usr/bin/env python3
"""BM_W4A8FragmentStagedSplit (gpu_bench JSON, argv[1]): per layer and m, the rule's us (its
split, stages), the register ring and the staged path at W4A8FragmentStagedSplit (best of the
configurations each ran), and the best at that split against the rule; then per layer the worst
and best of that ratio over m."""
import json
import re
import sys
from collections import defaultdict

runs = json.load(open(sys.argv[1]))["benchmarks"]
rule, ring, staged = {}, defaultdict(dict), defaultdict(dict)
for r in runs:
    if r.get("error_occurred"):
        continue
    m = re.match(r"BM_W4A8FragmentStagedSplit/m:(\d+)/n:(\d+)/k:(\d+)/config:(\d+)/", r["name"])
    if not m:
        continue
    mm, n, k, config = (int(g) for g in m.groups())
    key = (n, k, mm)
    if config == 0:
        rule[key] = r
    elif config >= 100000:
        staged[key][config] = r
    else:
        ring[key][config] = r

print("| n x k | m | rule us (split, stages) | ring at staged split us | staged us (config) | split | "
      "best / rule | bf16 us | best x bf16 |")
print("|---|---|---|---|---|---|---|---|---|")
per_layer = defaultdict(list)
for key in sorted(rule, key=lambda t: (t[0] * t[1], t[0], t[2])):
    n, k, mm = key
    r = rule[key]
    if not ring[key] or not staged[key]:
        continue
    ring_best = min(ring[key].values(), key=lambda x: x["us"])
    staged_config = min(staged[key], key=lambda c: staged[key][c]["us"])
    st = staged[key][staged_config]
    best = min(ring_best["us"], st["us"])
    per_layer[(n, k)].append(r["us"] / best)
    print(f"| {n} x {k} | {mm} | {r['us']:.1f} ({int(r['split'])}, {int(r['stages'])}) | "
          f"{ring_best['us']:.1f} | {st['us']:.1f} ({staged_config}) | {int(st['split'])} | "
          f"{r['us'] / best:.2f} | {r['bf16_us']:.1f} | {r['bf16_us'] / best:.2f} |")
print()
print("| n x k | rule / best at the staged split: worst, best over m |")
print("|---|---|")
for (n, k), ratios in sorted(per_layer.items(), key=lambda t: t[0][0] * t[0][1]):
    print(f"| {n} x {k} | {min(ratios):.2f}, {max(ratios):.2f} |")
