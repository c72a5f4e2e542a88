#!/usr/bin/env python3
"""Tables of BM_W4A8FragmentStaged beside BM_W4A8FragmentGemm config 0 (gpu_bench JSON, argv[1]).

Per layer and m: the rule's configuration (config 0), the fastest staged configuration, the peers of
config 0 (cuBLASLt bf16, cuBLAS INT8) and the speed-ups; then, per staged configuration and m,
the geometric mean of (rule us / its us) over the layers it ran on."""
import json
import math
import re
import sys
from collections import defaultdict

runs = json.load(open(sys.argv[1]))["benchmarks"]
rule, staged = {}, defaultdict(dict)
for r in runs:
    if r.get("error_occurred"):
        continue
    m = re.match(r"BM_W4A8Fragment(Gemm|Staged)/m:(\d+)/n:(\d+)/k:(\d+)/config:(\d+)/", r["name"])
    if not m:
        continue
    kind, mm, n, k, config = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5))
    key = (n, k, mm)
    if kind == "Gemm" and config == 0:
        rule[key] = r
    elif kind == "Staged":
        staged[key][config] = r["us"]


def label(config):
    zero_points, config = divmod(config, 1000000)
    suffix = " (zero-point path)" if zero_points else ""
    if config == 0:
        return "rule" + suffix
    stages, rest = divmod(config, 100000)
    warps = 8 if rest >= 10000 else 4
    split = rest % 10000 // 100
    return (f"s{stages} w{warps} b{rest // 10 % 10} d{rest % 10}" +
            (f" split{split}" if split else "") + suffix)


print("| n x k | m | rule us (stages) | split | best staged us | config | bf16 us | INT8 us | "
      "rule x bf16 | staged x bf16 | staged x INT8 | staged x rule |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(rule, key=lambda t: (t[0] * t[1], t[0], t[2])):
    n, k, mm = key
    r = rule[key]
    if not staged.get(key):
        continue
    best = min(staged[key], key=staged[key].get)
    us = staged[key][best]
    bf16, int8 = r["bf16_us"], r["int8_us"]
    print(f"| {n} x {k} | {mm} | {r['us']:.1f} ({int(r['stages'])}) | {int(r['split'])} | {us:.1f} | {label(best)} | "
          f"{bf16:.1f} | {int8:.1f} | {bf16 / r['us']:.2f} | {bf16 / us:.2f} | {int8 / us:.2f} | "
          f"{r['us'] / us:.2f} |")

print()
print("| staged config | m | layers | geomean rule us / its us | worst | best |")
print("|---|---|---|---|---|---|")
by_config = defaultdict(list)
for key, configs in staged.items():
    if key not in rule:
        continue
    for config, us in configs.items():
        by_config[(config, key[2])].append(rule[key]["us"] / us)
for (config, mm), ratios in sorted(by_config.items(), key=lambda t: (t[0][1], t[0][0])):
    g = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    print(f"| {label(config)} | {mm} | {len(ratios)} | {g:.2f} | {min(ratios):.2f} | {max(ratios):.2f} |")
