#!/bin/sh
# The quantized-checkpoint CLI end to end on llama-tiny: quantize (with text calibration),
# refuse to overwrite without --force, then score, eval-ppl and generate on the quantized dir.
# Usage: cli_quantize_test.sh FLATFLEET SHARED_DIR
set -eu
flatfleet=$1
shared=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=$shared/fixtures/llama-tiny
text=$shared/data/wikitext-2/valid.txt

"$flatfleet" quantize --model "$model" --recipe w8a8-static --calib "$text" --calib-tokens 512 \
    --out "$work/q" 2> "$work/quantize.log"
grep -q '^\[17/17\] lm_head  elapsed' "$work/quantize.log"
test -f "$work/q/quantization.json" -a -f "$work/q/model.safetensors" -a -f "$work/q/config.json"

if "$flatfleet" quantize --model "$model" --recipe w8a8 --out "$work/q" 2> "$work/refused.log"; then
  echo "overwrote a non-empty --out without --force" >&2
  exit 1
fi
grep -q -- '--force' "$work/refused.log"
"$flatfleet" quantize --model "$model" --recipe w8a8 --out "$work/q" --force 2> /dev/null
grep -q '"name": "w8a8"' "$work/q/quantization.json"
if ls -a "$work" | grep -q '^\.q\.'; then
  echo "temporary directory left behind" >&2
  exit 1
fi

"$flatfleet" score --device cpu --model "$work/q" --reference "$model/reference.safetensors" --bf16-rope \
    > "$work/score.log"
grep -q 'quantized vs reference: mean KL' "$work/score.log"
"$flatfleet" eval-ppl --device cpu --model "$work/q" --text "$text" --window 64 --max-windows 2 \
    > "$work/ppl.log" 2> /dev/null
grep -q '^perplexity: [0-9]' "$work/ppl.log"
grep -q '^scored tokens: 126$' "$work/ppl.log"  # 2 windows x 63 predicted tokens
"$flatfleet" generate --model "$work/q" --prompt "Hello" --max-tokens 4 --ignore-eos \
    2> "$work/generate.log" > /dev/null
grep -q 'quantized (recipe w8a8)' "$work/generate.log"

# A real model whose widths (64, 172) no group of 128 divides: quantize succeeds (it used to
# abort), records the per-channel fallback, and the result runs.
stories=$shared/models/stories260K
head -c 20000 "$shared/data/tinystories/valid.txt" > "$work/calib.txt"
"$flatfleet" quantize --model "$stories" --recipe w4a8-intscale --calib "$work/calib.txt" \
    --calib-tokens 256 --out "$work/s" 2> "$work/stories.log"
grep -q '"rule": "per_channel"' "$work/s/quantization.json"
"$flatfleet" generate --device cpu --model "$work/s" --prompt "Once upon a time" --max-tokens 4 \
    2> /dev/null > /dev/null
echo PASS
