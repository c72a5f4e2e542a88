#!/usr/bin/env bash
# scripts/bundle.sh's tarball is relocatable: unpacked in one temporary directory and run from
# another with an empty environment, its flatfleet loads only the bundle's libraries (besides
# the C runtime) and runs the demo to the end.
# usage: bundle_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
source_dir=$1 build_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$source_dir/scripts/bundle.sh" --build-dir "$build_dir" --out "$work/flatfleet-bundle.tar.gz"
mkdir "$work/unpacked" "$work/elsewhere"
tar xzf "$work/flatfleet-bundle.tar.gz" -C "$work/unpacked"
bundle=$work/unpacked/flatfleet-bundle

source "$source_dir/scripts/lib/shared-libs.sh"
# Every library the binary and the module resolve, with the bundle's lib/ first as the wrapper
# sets it, must come from the bundle unless it is the C runtime.
for file in "$bundle/libexec/flatfleet" "$bundle/lib/flatfleet/libflatfleet_sentencepiece.so"; do
  outside=$(LD_LIBRARY_PATH=$bundle/lib ldd "$file" | awk '$3 ~ /^\// {print $3}' |
    grep -v "^$bundle/lib/" | grep -v -E "$FLATFLEET_SYSTEM_LIBS" || true)
  if [ -n "$outside" ]; then
    echo "FAIL: $(basename "$file") loads libraries from outside the bundle: $outside"
    exit 1
  fi
  if LD_LIBRARY_PATH=$bundle/lib ldd "$file" | grep -q "not found"; then
    echo "FAIL: $(basename "$file") misses libraries"
    exit 1
  fi
done

cd "$work/elsewhere"
output=$(env -i PATH=/usr/bin:/bin "$bundle/bin/flatfleet" demo --timeout 120 2>&1) || {
  echo "FAIL: the bundled demo exited $?:"
  echo "$output"
  exit 1
}
echo "$output" | tail -n 2
echo "$output" | grep -q "15 completed, 1 failed; processes exited cleanly" || {
  echo "FAIL: the bundled demo did not finish as expected"
  exit 1
}
echo "ok: bundle ($(du -h "$work/flatfleet-bundle.tar.gz" | cut -f1)) runs the demo from $PWD"
