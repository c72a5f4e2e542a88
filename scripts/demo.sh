#!/usr/bin/env bash
# Installs what is missing, builds flatfleet (Release, CPU) and runs the main job on the embedded
# default: the built-in demo model (deterministic random weights, byte-level tokenizer), so it
# works on a fresh machine with no model files. With ../shared present it also scores the
# reference fixtures against Hugging Face's logits.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build -j"$(nproc)" flatfleet

echo "== flatfleet generate (built-in demo model)"
build/bin/flatfleet generate --prompt "The quick brown fox" --max-tokens 24
build/bin/flatfleet generate --prompt "Once upon a time" --max-tokens 24 --temperature 0.8 --top-p 0.9 --seed 7

fixtures=../shared/fixtures
if [ -d "$fixtures" ]; then
  for model in llama-tiny mixtral-tiny; do
    echo "== flatfleet score $model"
    build/bin/flatfleet score --model "$fixtures/$model" --reference "$fixtures/$model/reference.safetensors"
  done
fi
