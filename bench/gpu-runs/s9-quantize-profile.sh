#!/usr/bin/env bash
# Run on the GPU machine from the repository root with .gpu-bundle/ carried (scripts/gpu-bundle.sh).
# Session 9: where a Llama-3-70B-shaped layer's 25-28 s go with `quantize --device cuda`. A random
# checkpoint with LAYERS (default 2) decoder layers (vocab 32000) quantized with w4a8-gptq,
# CALIB_TOKENS (default 256, as quantize-70b-2layers.sh) calibration tokens in sequences of 128,
# with --phase-times; prints quantize's progress lines and the per-phase table
# (bench/gpu-runs/phase_table.py). Outputs under $OUT: s9qp_make.txt, s9qp_quantize.txt,
# s9qp_phases.jsonl, s9qp_table.md. FLATFLEET_THREADS (default: every core) sizes the pool;
# RECIPE and DEVICE (defaults w4a8-gptq, cuda) are for trying the script elsewhere.
# THP=1 repeats the quantize with glibc's malloc asking for transparent huge pages
# (GLIBC_TUNABLES=glibc.malloc.hugetlb=1): on the 2-core dev box that cut a 70B-shaped layer's
# page faults 70x and its time 20% (bench/RESULTS.md, session 9); s9qp_thp_* beside the others.
set -uo pipefail
b=$PWD/.gpu-bundle
[ -x $b/bin/flatfleet ] || (cd $b && tar xJf payload.tar.xz)
export LD_LIBRARY_PATH=$b/lib:/usr/local/cuda-13.0/targets/x86_64-linux/lib NCCL_NVLS_ENABLE=0
out=${OUT:-/tmp}
work=${WORK:-/tmp/s9qp}
if ! $b/bin/flatfleet quantize --help 2>&1 | grep -q -- --phase-times; then
  echo "this bundle's flatfleet has no --phase-times: rebuild it (scripts/gpu-bundle.sh) from s9-qprofile" >&2
  exit 2
fi
timed() { if [ -x /usr/bin/time ]; then /usr/bin/time -v "$@"; else "$@"; fi; }
rm -rf $work && mkdir -p $work
echo "machine: $(nproc) cores, $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)," \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
timed $b/bin/flatfleet make-checkpoint --arch llama-3-70b --layers ${LAYERS:-2} --vocab 32000 \
  --random --out $work/src > $out/s9qp_make.txt 2>&1
echo "make-checkpoint rc=$? ($(du -sh $work/src | cut -f1))"
profile() {  # label (file prefix)
  timed timeout ${TIMEOUT:-400} $b/bin/flatfleet quantize --model $work/src \
    --recipe ${RECIPE:-w4a8-gptq} --device ${DEVICE:-cuda} --calib-tokens ${CALIB_TOKENS:-256} --calib-length 128 \
    --phase-times $out/$1_phases.jsonl --out $work/quantized --work-dir $work/partial --force \
    > $out/$1_quantize.txt 2>&1
  local rc=$?
  echo "quantize ($1) rc=$rc"
  [ $rc = 0 ] || grep -m 3 -E 'flatfleet quantize:|error' $out/$1_quantize.txt
  grep -E '^\[layer|^    phases|Maximum resident|Elapsed \(wall|Minor' $out/$1_quantize.txt
  python3 bench/gpu-runs/phase_table.py $out/$1_phases.jsonl | tee $out/$1_table.md ||
    cat $out/$1_phases.jsonl
}
profile s9qp
[ "${THP:-0}" = 1 ] && GLIBC_TUNABLES=glibc.malloc.hugetlb=1 profile s9qp_thp
rm -rf $work
