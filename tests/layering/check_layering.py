#!/usr/bin/env python3
"""Every #include "..." of a project folder must point down the layering (README, "Layout"):

  tools -> coordinator, worker/serving, quantize -> worker/quantized -> worker/model (the engine)
        -> quant, kernels -> runtime -> common

Exits 1 naming each file, line and include that runs an arrow the wrong way.
Usage: check_layering.py SOURCE_DIR | --self-test (a seeded tree with reversed arrows must fail)
"""
import os
import re
import sys
import tempfile

PROJECT = ("common/", "runtime/", "kernels/", "quant/", "quantize/", "worker/", "coordinator/",
           "security/", "proto/", "tools/")
# Folder: (allowed project prefixes, or None for "any but the forbidden"), forbidden prefixes.
# The longest matching folder applies.
RULES = {
    "common/": (("common/",), ()),
    "runtime/": (("common/", "runtime/"), ()),
    "kernels/": (("common/", "runtime/", "kernels/"), ()),
    "quant/": (("common/", "runtime/", "kernels/", "quant/"), ()),
    "worker/": (None, ("quantize/", "coordinator/", "tools/")),
    "worker/model/": (None, ("quant/", "quantize/", "worker/quantized/", "worker/serving/",
                             "coordinator/", "tools/")),
    "worker/quantized/": (None, ("quantize/", "worker/serving/", "coordinator/", "tools/")),
    "quantize/": (None, ("worker/serving/", "coordinator/", "tools/")),
    "coordinator/": (None, ("quantize/", "tools/")),
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def rule_for(path):
    best = None
    for folder in RULES:
        if path.startswith(folder) and (best is None or len(folder) > len(best)):
            best = folder
    return best


def check(root):
    violations = []
    checked = 0
    for folder in RULES:
        for directory, _, files in os.walk(os.path.join(root, folder)):
            for name in files:
                if not name.endswith((".h", ".cc", ".cu", ".cuh")):
                    continue
                path = os.path.relpath(os.path.join(directory, name), root)
                if rule_for(path) != folder:
                    continue  # a deeper rule covers it
                allowed, forbidden = RULES[folder]
                with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        match = INCLUDE.match(line)
                        if not match or not match.group(1).startswith(PROJECT):
                            continue
                        target = match.group(1)
                        checked += 1
                        bad = any(target.startswith(p) for p in forbidden) or (
                            allowed is not None and not target.startswith(allowed))
                        if bad:
                            violations.append(f"{path}:{number}: includes {target} ({folder} "
                                              "must not depend on it)")
    return checked, violations


def self_test():
    seeded = {
        "quant/a.h": '#include "worker/model/llama_model.h"\n',  # the arrow this split removed
        "worker/serving/b.cc": '#include "quantize/quantize_model.h"\n',
        "worker/model/c.cc": '#include "worker/quantized/runnable_model.h"\n',
        "common/d.h": '#include "kernels/backend.h"\n#include "absl/status/status.h"\n',
        "quantize/e.cc": '#include "worker/model/llama_model.h"\n',  # allowed
    }
    with tempfile.TemporaryDirectory() as root:
        for path, text in seeded.items():
            os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
            with open(os.path.join(root, path), "w", encoding="utf-8") as f:
                f.write(text)
        checked, violations = check(root)
    flagged = sorted(v.split(":")[0] for v in violations)
    expected = ["common/d.h", "quant/a.h", "worker/model/c.cc", "worker/serving/b.cc"]
    if checked != 5 or flagged != expected:
        print(f"self-test FAILED: {checked} includes checked, flagged {flagged}, want {expected}")
        return 1
    print("self-test: the 4 reversed arrows of the seeded tree are flagged, the allowed one is not")
    return 0


def main():
    if sys.argv[1] == "--self-test":
        return self_test()
    checked, violations = check(sys.argv[1])
    for violation in violations:
        print(violation)
    if checked == 0:
        print("no project includes found: wrong SOURCE_DIR?")
        return 1
    print(f"{checked} project includes checked, {len(violations)} against the layering")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
