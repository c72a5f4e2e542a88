#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 11, call 7: a Mixtral-8x7B-shaped random checkpoint of 2 layers (vocab 32000) quantized
# with w4a8-gptq --device cuda (256 calibration tokens, per-phase times, per-expert token counts),
# the measured run issue 10 asks for beside its projection. Files back: quant.txt, phases.jsonl.
set -uo pipefail
source bench/gpu-runs/lib.sh
work=/tmp/s11m
rm -rf $work && mkdir -p $work
stamp "make-checkpoint mixtral-8x7b, 2 layers"
timeout 60 $b/bin/flatfleet make-checkpoint --arch mixtral-8x7b --layers 2 --vocab 32000 --random \
  --out $work/src > /tmp/make.txt 2>&1
echo "make-checkpoint rc=$? $(du -sh $work/src | cut -f1)"
stamp "quantize w4a8-gptq --device cuda"
/usr/bin/time -v timeout 170 $b/bin/flatfleet quantize --model $work/src --recipe w4a8-gptq \
  --device cuda --calib-tokens 256 --calib-length 128 --phase-times $out/phases.jsonl \
  --out $work/quantized --work-dir $work/partial --force > $out/quant.txt 2>&1
echo "quantize rc=$? ($(du -sh $work/quantized 2>/dev/null | cut -f1))"
grep -E '^\[layer|expert|Maximum resident|Elapsed \(wall' $out/quant.txt | cut -c1-200 | head -20
python3 bench/gpu-runs/phase_table.py $out/phases.jsonl 2>/dev/null | head -16
stamp "done"
