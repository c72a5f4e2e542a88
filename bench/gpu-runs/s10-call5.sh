#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 10, call 5: call 4's script without the profile, on the tree where the fused kernel's
# rows per block fall to 1 when the blocks would not fill the SMs (call 4's decode regression),
# with KroneckerQuantizeTest cases of 265-531 rows (2 and 4 rows per block).
NCU=0 exec bash bench/gpu-runs/s10-call4.sh "$@"
