#!/usr/bin/env bash
# Installs what is missing, builds flatfleet (Release, CPU) and runs the main job on the embedded
# default: `flatfleet demo` starts a coordinator and two worker processes on loopback that form
# one tensor-parallel group (tp=2, INT8-compressed all-reduces) over the built-in demo model
# (deterministic random weights, byte-level tokenizer, so the text is
# gibberish by design), submits a small batch, shows progress and results and shuts down.
# With ../shared present it then scores the Hugging Face reference fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
ninja -C build -j"$(nproc)" flatfleet

echo "== flatfleet demo (coordinator + 2 workers as one TP=2 group, built-in demo model)"
build/bin/flatfleet demo

fixtures=../shared/fixtures
if [ -d "$fixtures" ]; then
  for model in llama-tiny mixtral-tiny; do
    echo "== flatfleet score $model"
    build/bin/flatfleet score --model "$fixtures/$model" \
      --reference "$fixtures/$model/reference.safetensors" --max-rel-error 1e-4
  done
fi
