#!/usr/bin/env python3
"""Prints `flatfleet quantize --phase-times FILE`'s per-layer breakdown (argv[1], one JSON object
per layer) as a markdown table: one row per phase (quant/phase_timer.h, in pipeline order, then
"other"), one column per layer, the mean and its share of the mean layer time."""
import json
import sys

ORDER = ["read", "calibrate_forward", "statistics", "gram_finalize", "gptq_solve", "rtn",
         "flatquant_training", "quantize_other", "quantized_forward", "pack", "write", "free",
         "other"]

layers = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
if not layers:
    sys.exit("no layers in " + sys.argv[1])
names = ORDER + sorted(set(layers[0]["phases"]) - set(ORDER))  # phases this script predates
mean_total = sum(l["seconds"] for l in layers) / len(layers)
print("| phase | " + " | ".join(f"layer {l['layer']} s" for l in layers) + " | mean s | share |")
print("|---|" + "---|" * (len(layers) + 2))
for name in names:
    values = [l["phases"].get(name, 0.0) for l in layers]
    mean = sum(values) / len(values)
    print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) +
          f" | {mean:.2f} | {100 * mean / mean_total:.1f}% |")
print("| **layer** | " + " | ".join(f"**{l['seconds']:.2f}**" for l in layers) +
      f" | **{mean_total:.2f}** | 100% |")
