#!/usr/bin/env bash
# Packs a relocatable tarball of the flatfleet binary and the non-system shared libraries it
# loads (gRPC, protobuf, abseil, Gloo, sentencepiece, ...), for machines without the build
# dependencies:  tar xzf flatfleet-bundle.tar.gz && flatfleet-bundle/bin/flatfleet demo
# Works from any directory: bin/flatfleet is a small wrapper that points the loader at the
# bundle's lib/ and runs libexec/flatfleet; the sentencepiece module sits in lib/flatfleet/,
# where the binary looks for it. glibc and the dynamic loader are the host's (needs glibc at least
# the build machine's). Also carries deploy/container/flatfleet-ranks.
# Usage: scripts/bundle.sh [--build-dir build] [--out flatfleet-bundle.tar.gz]
#   FLATFLEET_BUNDLE_EXCLUDE_CUDA=1: leave the CUDA libraries out (for a CUDA base image).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/shared-libs.sh
build=build
out=$PWD/flatfleet-bundle.tar.gz
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    *) echo "usage: scripts/bundle.sh [--build-dir DIR] [--out FILE.tar.gz]" >&2; exit 2 ;;
  esac
done
binary=$build/bin/flatfleet
module=$build/bin/libflatfleet_sentencepiece.so
for file in "$binary" "$module"; do
  [ -f "$file" ] || { echo "bundle.sh: $file missing; build it: ninja -C $build flatfleet flatfleet_sentencepiece" >&2; exit 1; }
done

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
root=$staging/flatfleet-bundle
mkdir -p "$root/bin" "$root/libexec" "$root/lib/flatfleet"
cp -L "$binary" "$root/libexec/flatfleet"
cp -L "$module" "$root/lib/flatfleet/"
strip "$root/libexec/flatfleet" "$root/lib/flatfleet/libflatfleet_sentencepiece.so" 2>/dev/null || true
# HTTPS on --http-listen loads civetweb's OpenSSL 3 shim from beside the binary
# (coordinator/civetweb_ssl/); it needs the system's libssl.so.3 at run time.
if [ -f "$build/bin/libflatfleet_civetweb_ssl.so" ]; then
  cp -L "$build/bin/libflatfleet_civetweb_ssl.so" "$root/libexec/"
fi
# A CUDA image brings its own CUDA runtime, cuBLAS and NCCL (and the node its driver).
if [ -n "${FLATFLEET_BUNDLE_EXCLUDE_CUDA:-}" ]; then
  copy_shared_libs "$root/lib" --also-exclude "$FLATFLEET_CUDA_LIBS" "$binary" "$module"
else
  copy_shared_libs "$root/lib" "$binary" "$module"
fi
cat > "$root/bin/flatfleet" <<'WRAPPER'
#!/bin/sh
# Runs the bundled flatfleet with the bundle's libraries, wherever the bundle was unpacked.
here=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$here/../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/../libexec/flatfleet" "$@"
WRAPPER
chmod +x "$root/bin/flatfleet"
cp deploy/container/flatfleet-ranks "$root/bin/"
tar czf "$out" -C "$staging" flatfleet-bundle
echo "bundle.sh: $out ($(du -h "$out" | cut -f1), $(ls "$root/lib" | wc -l) libraries)"
