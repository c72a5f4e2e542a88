#!/bin/sh
# Layer-by-layer quantization of a random checkpoint with a served architecture's layer shapes,
# within a stated peak RSS (docs/QUANTIZATION.md, "Peak memory"), and the output loads and
# scores. The quantize runs as a child of peak_rss_run, so the RSS measured is its own.
# Usage: layer_by_layer_peak_rss.sh FLATFLEET PEAK_RSS_RUN [ARCH [LAYERS [VOCAB [RECIPE [TOKENS]]]]]
#   default: llama-3-70b, 2 layers, vocab 32000 (Llama-3's 128256 would make the float embedding
#   and LM head, copied byte for byte and never held by the quantizer, dominate the disk and the
#   scoring step, not the quantizer), w4a8, 64 calibration tokens in sequences of 32.
set -eu
flatfleet=$1
peak_rss_run=$2
arch=${3:-llama-3-70b}
layers=${4:-2}
vocab=${5:-32000}
recipe=${6:-w4a8}
tokens=${7:-64}
work=$(mktemp -d "${TMPDIR:-/tmp}/lbl-rss.XXXXXX")
trap 'rm -rf "$work"' EXIT

case $arch in
  llama-3-70b) hidden=8192 inter=28672 q=8192 kv=1024 ;;
  llama-3-8b) hidden=4096 inter=14336 q=4096 kv=1024 ;;
  tiny) hidden=256 inter=688 q=256 kv=128 ;;
  *) echo "unknown arch $arch" >&2; exit 2 ;;
esac
# F: one layer's float32 weight bytes; Fmax: its largest linear (the stacked gate|up).
F=$(( 4 * (hidden * (q + 2 * kv) + q * hidden + 3 * hidden * inter) ))
Fmax=$(( 4 * 2 * inter * hidden ))
# Activations: P x hidden float32 hidden states (input, output, the window's embedding table and
# its tied LM head twice) plus one forward's workspace; margin 512 MiB (binary, allocator,
# statistics of the non-GPTQ recipes, the float tensors streamed through the writer).
activations=$(( tokens * (6 * hidden + 4 * (q + 2 * kv) + 6 * inter) * 4 ))
margin=$(( 512 * 1024 * 1024 ))
# GPTQ recipes add S_gptq (docs/QUANTIZATION.md, "GPTQ memory and solvers"): at linear j (model
# order qkv, o, gate|up, down) the Grams not yet freed, 8 sum_{i>=j} in_i^2, plus the solver's
# buffer 8 in_j^2 and the weight copies 12 out_j in_j; the maximum over j.
gptq=0
case $recipe in
  *gptq*)
    set -- "$hidden $(( q + 2 * kv ))" "$q $hidden" "$hidden $(( 2 * inter ))" "$inter $hidden"
    j=0
    for linear in "$@"; do
      j=$(( j + 1 ))
      grams=0 i=0
      for pair in "$@"; do
        i=$(( i + 1 ))
        [ "$i" -ge "$j" ] || continue
        in_i=${pair% *}
        grams=$(( grams + 8 * in_i * in_i ))
      done
      in_j=${linear% *} out_j=${linear#* }
      at=$(( grams + 8 * in_j * in_j + 12 * out_j * in_j ))
      [ "$at" -le "$gptq" ] || gptq=$at
    done
    ;;
esac
bound=$(( F * 3 + Fmax + activations + margin + gptq ))

start=$(date +%s)
"$flatfleet" make-checkpoint --arch "$arch" --layers "$layers" --vocab "$vocab" --random \
    --out "$work/model"
made=$(date +%s)
"$peak_rss_run" "$flatfleet" quantize --model "$work/model" --recipe "$recipe" \
    --calib-tokens "$tokens" --calib-length 32 --out "$work/q" > "$work/rss.txt"
quantized=$(date +%s)
peak=$(sed -n 's/^peak_rss_bytes //p' "$work/rss.txt")
awk -v f="$F" -v m="$Fmax" -v p="$peak" -v b="$bound" -v s="$gptq" 'BEGIN {
  g = 1073741824
  if (s > 0) printf "GPTQ statistics and solver S_gptq = %.2f GiB\n", s / g
  printf "layer float32 F = %.2f GiB, largest linear Fmax = %.2f GiB\n", f / g, m / g
  printf "peak RSS %.2f GiB, bound 3 F + Fmax + activations + 512 MiB + S_gptq = %.2f GiB\n", p / g, b / g
}'
echo "make-checkpoint $((made - start)) s, quantize $((quantized - made)) s ($layers layers)"
if [ "$peak" -gt "$bound" ]; then
  echo "FAIL: peak RSS above the bound" >&2
  exit 1
fi
# The output loads and scores (byte tokenizer: the random model has none).
printf 'Once upon a time there was a quantized model that loaded.\n' > "$work/text.txt"
"$flatfleet" eval-ppl --device cpu --model "$work/q" --text "$work/text.txt" --window 16 \
    --max-windows 1 > "$work/ppl.txt"
grep -q '^perplexity: [0-9]' "$work/ppl.txt"
cat "$work/ppl.txt"
echo PASS
