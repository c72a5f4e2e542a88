#!/bin/sh
# The quantized-checkpoint CLI end to end on llama-tiny: quantize layer by layer (with text
# calibration; sharded output), and all at once, refuse to overwrite without --force, then score,
# eval-ppl, generate and bench on the quantized dir; an interrupted run continued with --resume; a
# make-checkpoint random model quantized and run; Mixtral experts that get no calibration tokens.
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
grep -q '^\[layer 4/4\] .*ETA .*peak RSS [0-9.]* GiB$' "$work/quantize.log"
# Under each layer's line, where its time went (quant/phase_timer.h).
test "$(grep -c '^    phases:  read [0-9.]*s ([0-9]*%)  calibrate_forward [0-9.]*s' "$work/quantize.log")" -eq 4
test -f "$work/q/quantization.json" -a -f "$work/q/model-00001-of-00001.safetensors" \
    -a -f "$work/q/model.safetensors.index.json" -a -f "$work/q/config.json"
"$flatfleet" quantize --model "$model" --recipe w8a8-static --calib "$text" --calib-tokens 512 \
    --all-at-once --out "$work/a" 2> "$work/all.log"
grep -q '^\[17/17\] lm_head  elapsed' "$work/all.log"
test -f "$work/a/model.safetensors"
cmp "$work/q/config.json" "$work/a/config.json"

# Interrupted after 2 layers: nothing in --out, the work directory kept; --resume finishes it.
if "$flatfleet" quantize --model "$model" --recipe w4a8-gptq --out "$work/r" \
    --stop-after-layers 2 2> "$work/stopped.log"; then
  echo "the stopped run succeeded" >&2
  exit 1
fi
test ! -e "$work/r" -a -f "$work/.r.quantize-work/state.json"
"$flatfleet" quantize --model "$model" --recipe w4a8-gptq --out "$work/r" --resume \
    2> "$work/resumed.log"
grep -q '^\[layer 2/4\] done by the interrupted run (resumed)$' "$work/resumed.log"
grep -q '^\[layer 3/4\] .*peak RSS' "$work/resumed.log"
test ! -e "$work/.r.quantize-work"
"$flatfleet" quantize --model "$model" --recipe w4a8-gptq --out "$work/r2" \
    --phase-times "$work/phases.jsonl" 2> /dev/null
for f in "$work"/r2/model-*.safetensors; do cmp "$f" "$work/r/$(basename "$f")"; done
# --phase-times: one JSON line per layer with every phase (a GPTQ recipe: no RTN, no FlatQuant).
test "$(wc -l < "$work/phases.jsonl")" -eq 4
for phase in read calibrate_forward statistics gram_finalize gptq_solve rtn flatquant_training \
    quantize_other quantized_forward pack write free other; do
  test "$(grep -c "\"$phase\":[0-9]" "$work/phases.jsonl")" -eq 4
done
test "$(grep -c '"rtn":0.0,' "$work/phases.jsonl")" -eq 4

# A random checkpoint of llama-tiny's shape with 2 layers, small shards, quantized and run.
"$flatfleet" make-checkpoint --arch tiny --layers 2 --random --shard-size 0.0005 \
    --out "$work/m" 2> "$work/make.log"
test -f "$work/m/model.safetensors.index.json"
test "$(ls "$work/m" | grep -c '^model-0000[0-9]-of-0000[0-9].safetensors$')" -ge 2
"$flatfleet" quantize --model "$work/m" --recipe w4a8 --calib-tokens 64 --calib-length 32 \
    --out "$work/mq" 2> /dev/null
"$flatfleet" generate --device cpu --model "$work/mq" --prompt "Hi" --max-tokens 2 --ignore-eos \
    2> /dev/null > /dev/null

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
# `flatfleet bench` runs a quantized checkpoint directory (the CPU's integer reference here).
"$flatfleet" bench --arch "$work/q" --device cpu --requests 4 --input-len 16 --output-len 4 \
    --max-batch 2 > "$work/bench.log" 2> "$work/bench.err"
grep -q 'quantized (recipe w8a8)' "$work/bench.log"
grep -q '0 requests failed' "$work/bench.log"

# A real model whose widths (64, 172) no group of 128 divides: quantize succeeds (it used to
# abort), records the per-channel fallback, and the result runs.
stories=$shared/models/stories260K
head -c 20000 "$shared/data/tinystories/valid.txt" > "$work/calib.txt"
"$flatfleet" quantize --model "$stories" --recipe w4a8-intscale --calib "$work/calib.txt" \
    --calib-tokens 256 --out "$work/s" 2> "$work/stories.log"
grep -q '"rule": "per_channel"' "$work/s/quantization.json"
"$flatfleet" generate --device cpu --model "$work/s" --prompt "Once upon a time" --max-tokens 4 \
    2> /dev/null > /dev/null
# Mixtral experts on 3 calibration tokens (at least two experts per layer get none): the progress
# line reports the experts' token counts and fallbacks, quantization.json their records, and the
# result runs.
mixtral=$shared/fixtures/mixtral-tiny
"$flatfleet" quantize --model "$mixtral" --recipe w4a8-gptq --calib-tokens 3 --calib-length 3 \
    --min-expert-tokens 2 --out "$work/x" 2> "$work/mixtral.log"
grep -q '^\[layer 2/2\] .*peak RSS [0-9.]* GiB  experts 8: tokens min 0 median [0-9]* max [0-3]; of 24 linears [0-9]* rtn-clip-search, [0-9]* gptq-damped$' \
    "$work/mixtral.log"
grep -q '"rtn-clip-search"' "$work/x/quantization.json"
grep -q '"min_expert_tokens": 2' "$work/x/quantization.json"
"$flatfleet" generate --device cpu --model "$work/x" --prompt "Hi" --max-tokens 2 --ignore-eos \
    2> /dev/null > /dev/null
echo PASS
