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
# The bound of docs/QUANTIZATION.md ("Peak memory"): the largest of what the steps of one layer
# hold, plus the activations and a margin.
# F: one layer's float32 weight bytes; Fmax: its largest linear (the stacked gate|up).
F=$(( 4 * (hidden * (q + 2 * kv) + q * hidden + 3 * hidden * inter) ))
Fmax=$(( 4 * 2 * inter * hidden ))
# Activations: P x hidden float32 hidden states (input, output, the window's embedding table and
# its tied LM head twice) plus one forward's workspace; margin 512 MiB (binary, allocator,
# the float tensors streamed through the writer).
activations=$(( tokens * (6 * hidden + 4 * (q + 2 * kv) + 6 * inter) * 4 ))
margin=$(( 512 * 1024 * 1024 ))
case $recipe in *gptq*) gram=1 ;; *) gram=0 ;; esac
case $recipe in *flatquant*) flat=1 ;; *) flat=0 ;; esac
# The linears in model order (qkv, o, gate|up, down) as "in out". Statistics of linear i:
# its Gram 8 in_i^2 (GPTQ), its raw row sample 4 * 256 in_i and O(in_i) maxima.
set -- "$hidden $(( q + 2 * kv ))" "$q $hidden" "$hidden $(( 2 * inter ))" "$inter $hidden"
stats_of() { echo $(( gram * 8 * $1 * $1 + 4 * 256 * $1 + 16 * $1 )); }
# Loading: the layer's mapped bf16 pages (F / 2), the float handles built so far (F) and the
# linear being prepared: its parts stacked in bf16 (Fmax / 2) and widened (Fmax).
load=$(( F / 2 + F + 3 * Fmax / 2 ))
# Calibrating: the float handles and every linear's statistics.
stats=0
for linear in "$@"; do stats=$(( stats + $(stats_of "${linear% *}") )); done
calibrate=$(( F + stats ))
# Quantizing linear j: the other linears' handles or codes (< F - F_j), its weight unpacked from
# its handle (freed first), its folded copy and codes, twice for integer-scale recipes (the
# QuantizedMatrix and IntegerScaledWeight's copy): 5/2 F_j; the statistics not yet freed
# (linears j and later; GPTQ factors the Gram in place) and the quantizer's own working memory:
# GPTQ's double rows, at most 256 MiB (and a rotated recipe's transformed Hessian); FlatQuant's
# training (flat_quant_trainer.h: the loss in
# chunks of 4 Mi weight values, six double arrays of them, and 64-row steps).
quantize=0 j=0 worst=""
for linear in "$@"; do
  j=$(( j + 1 ))
  in_j=${linear% *} out_j=${linear#* }
  held=0 i=0
  for later in "$@"; do
    i=$(( i + 1 ))
    [ "$i" -ge "$j" ] || continue
    held=$(( held + $(stats_of "${later% *}") ))
  done
  working=0
  if [ "$gram" -eq 1 ]; then
    working=$(( 8 * out_j * in_j ))
    [ "$working" -le $(( 256 * 1024 * 1024 )) ] || working=$(( 256 * 1024 * 1024 ))
    # A rotated recipe forms its transformed Hessian: 4 in_j^2 bytes beyond the Gram at once.
    case $recipe in *hadamard*) working=$(( working + 4 * in_j * in_j )) ;; esac
  fi
  if [ "$flat" -eq 1 ]; then
    working=$(( 8 * (6 * 4 * 1024 * 1024 + 24 * 64 * in_j + 3 * 64 * out_j) ))
  fi
  at=$(( F + 3 * 4 * out_j * in_j / 2 + held + working ))
  if [ "$at" -gt "$quantize" ]; then quantize=$at worst=$j; fi
done
steps=$load
[ "$calibrate" -le "$steps" ] || steps=$calibrate
[ "$quantize" -le "$steps" ] || steps=$quantize
bound=$(( steps + activations + margin ))

# Prints the terms and the bound (and the peak, when given).
report() {
  awk -v f="$F" -v m="$Fmax" -v p="${1:-0}" -v b="$bound" -v l="$load" -v c="$calibrate" \
      -v q="$quantize" -v w="$worst" -v s="$stats" 'BEGIN {
    g = 1073741824
    printf "layer float32 F = %.2f GiB, largest linear Fmax = %.2f GiB, statistics %.2f GiB\n", f / g, m / g, s / g
    printf "steps: load %.2f GiB, calibrate %.2f GiB, quantize %.2f GiB (linear %d)\n", l / g, c / g, q / g, w
    if (p > 0) printf "peak RSS %.2f GiB, ", p / g
    printf "bound max(steps) + activations + 512 MiB = %.2f GiB\n", b / g
  }'
}
# PEAK_RSS_BOUND_ONLY=1: the bound alone, nothing run.
if [ -n "${PEAK_RSS_BOUND_ONLY:-}" ]; then
  report
  exit 0
fi

start=$(date +%s)
"$flatfleet" make-checkpoint --arch "$arch" --layers "$layers" --vocab "$vocab" --random \
    --out "$work/model"
made=$(date +%s)
"$peak_rss_run" "$flatfleet" quantize --model "$work/model" --recipe "$recipe" \
    --calib-tokens "$tokens" --calib-length 32 --out "$work/q" > "$work/rss.txt"
quantized=$(date +%s)
peak=$(sed -n 's/^peak_rss_bytes //p' "$work/rss.txt")
report "$peak"
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
