#!/usr/bin/env python3
"""Prints the W4A8 fragment wgmma GEMM's table from gpu_bench's JSON output (argv[1..]): per shape
and m, the rule's time and TOP/s beside cuBLASLt bf16, cuBLAS INT8 (no epilogue) and the previous
W4A8 kernel (GemmW4A8Midm kAuto up to 256 rows, GemmW4A8Prefill kAuto from 256), all timed in the
same process, and both token tiles where they ran."""
import collections
import json
import sys

UNIT = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
times = collections.defaultdict(dict)  # (n, k, m) -> label -> us
for path in sys.argv[1:]:
    for r in json.load(open(path))["benchmarks"]:
        if r.get("error_occurred") or r.get("run_type") == "aggregate":
            continue
        parts = r["name"].split("/")
        fields = dict(p.split(":") for p in parts[1:] if ":" in p)
        try:
            key = (int(fields["n"]), int(fields["k"]), int(fields["m"]))
        except KeyError:
            continue
        us = r["real_time"] * UNIT[r["time_unit"]]
        name = parts[0]
        if name == "BM_W4A8FragmentWgmma":
            label = "t" + fields.get("tile", fields.get("tokens", "0"))
            if fields.get("split", "0") != "0":
                label += "s" + fields["split"]
            times[key][label] = us
        elif name == "BM_CublasLtBf16Prefill":
            times[key]["bf16"] = us
        elif name == "BM_CublasInt8Prefill":
            times[key]["int8"] = us
        elif name == "BM_W4A8MidmGemm" and fields.get("kernel") == "0":
            times[key]["midm"] = us
        elif name == "BM_W4A8PrefillGemm" and fields.get("kernel") == "0":
            times[key]["prefill"] = us

def cell(d, label, fmt="{:.1f}"):
    return fmt.format(d[label]) if label in d else "-"

print("| n x k | m | wgmma us (rule) | TOP/s | unsplit us | 64x2 / 64x4 / 128x2 / 128x4 us | cuBLASLt bf16 us | cuBLAS INT8 us"
      " | previous W4A8 us | x bf16 | x INT8 | x previous |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for (n, k, m), d in sorted(times.items(), key=lambda kv: (kv[0][1] * kv[0][0], kv[0][0], kv[0][2])):
    if "t0" not in d:
        continue
    us = d["t0"]
    previous = d.get("prefill") if m >= 256 and "prefill" in d else d.get("midm")
    ratio = lambda peer: f"{peer / us:.2f}" if peer else "-"
    previous_cell = f"{previous:.1f}" if previous else "-"
    print(f"| {n} x {k} | {m} | {us:.1f} | {2 * m * n * k / us / 1e6:.0f} | {cell(d, 't0s1')} | "
          f"{cell(d, 't642')} / {cell(d, 't644')} / {cell(d, 't1282')} / {cell(d, 't1284')} | "
          f"{cell(d, 'bf16')} | {cell(d, 'int8')} | "
          f"{previous_cell} | {ratio(d.get('bf16'))} | {ratio(d.get('int8'))} | {ratio(previous)} |")
