#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 10, call 3: call 2's script again, on the tree with its fixes (the fused kernel keeps its
# max in dynamic shared memory; a failed shared-memory opt-in no longer leaves a stale error).
exec bash bench/gpu-runs/s10-call2.sh "$@"
