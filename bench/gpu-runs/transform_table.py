#!/usr/bin/env python3
"""Prints the online transforms' cost beside the W4A8 GEMM each precedes, from gpu_bench's JSON
output (argv[1..]): per token count m and width K, BM_KroneckerRows (exact), BM_KroneckerQuantize
(TF32, fused with the quantizer: path 0, the kernel's rules; the other paths in their own columns)
and BM_HadamardRows in us and
as a fraction of the W4A8 GEMM of each Llama-3 layer with that K (the fragment GEMM, config 0 = the
rule, up to 32 rows; the fragment wgmma GEMM, tile 0 split 0 = the rule, from 64), all timed in the
same process. FlatQuant's claim: the transform within 0.07x of the GEMM."""
import collections
import json
import sys

UNIT = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
transforms = collections.defaultdict(dict)  # (m, k) -> name -> us
gemms = collections.defaultdict(dict)  # (m, k) -> n -> us
for path in sys.argv[1:]:
    for r in json.load(open(path))["benchmarks"]:
        if r.get("error_occurred") or r.get("run_type") == "aggregate":
            continue
        parts = r["name"].split("/")
        fields = dict(p.split(":") for p in parts[1:] if ":" in p)
        us = r["real_time"] * UNIT[r["time_unit"]]
        name = parts[0]
        if name in ("BM_KroneckerRows", "BM_HadamardRows", "BM_KroneckerQuantize"):
            path = fields.get("path", "0")
            key = name[3:] if path == "0" else f"{name[3:]}/path:{path}"
            transforms[(int(fields["m"]), int(fields["n"]))][key] = us
        elif (name == "BM_W4A8FragmentGemm" and fields.get("config") == "0") or (
                name == "BM_W4A8FragmentWgmma" and fields.get("tile") == "0"
                and fields.get("split") == "0"):
            gemms[(int(fields["m"]), int(fields["k"]))][int(fields["n"])] = us

PATH_NAMES = {"1": "one block per 1-4 rows", "2": "that, P2 from L2: the old kernel",
              "3": "the rules, P2 from L2"}
paths = sorted({key.split(":")[1] for t in transforms.values() for key in t if "/path:" in key})
extra = "".join(f" fused, path {p} ({PATH_NAMES.get(p, p)}) us |" for p in paths)
print(f"| m | K | Kronecker exact us | Kronecker+quantize TF32 us |{extra} Hadamard us | W4A8 GEMM us (N) | exact / GEMM | TF32 fused / GEMM | Hadamard / GEMM |")
print("|---|---|---|---|" + "---|" * len(paths) + "---|---|---|---|---|")
for (m, k) in sorted(transforms):
    t = transforms[(m, k)]
    kron, fused, had = t.get("KroneckerRows"), t.get("KroneckerQuantize"), t.get("HadamardRows")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    others = "".join(f" {fmt(t.get(f'KroneckerQuantize/path:{p}'))} |" for p in paths)
    rows = sorted(gemms.get((m, k), {}).items()) or [(None, None)]
    for n, g in rows:
        ratio = lambda v: "-" if v is None or g is None else f"{v / g:.2f}"
        gemm = "-" if g is None else f"{g:.1f} ({n})"
        print(f"| {m} | {k} | {fmt(kron)} | {fmt(fused)} |{others} {fmt(had)} | {gemm} | {ratio(kron)} | {ratio(fused)} | {ratio(had)} |")
