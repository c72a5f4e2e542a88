# Sourced by scripts/bundle.sh and scripts/gpu-bundle.sh: copies the shared libraries executables
# load into a directory, leaving out the ones every Linux machine provides itself.
#   copy_shared_libs DEST_LIB_DIR [--also-exclude REGEX] FILE...
# FILE may be an executable or a shared module (dlopen'ed ones have to be named: ldd cannot see
# them). Libraries are copied with symlinks resolved, never overwriting one already there.

# The C runtime and the dynamic loader: a bundled copy would not match the host's loader.
FLATFLEET_SYSTEM_LIBS='/(ld-linux[^/]*|libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl)\.so'
# The GPU driver and the CUDA libraries a GPU machine (or a CUDA runtime image) has in a version
# matching its driver (cuSOLVER, with its cuSPARSE and nvJitLink, for GPTQ on the GPU).
FLATFLEET_CUDA_LIBS='/(libcuda|libnvidia-[^/]*|libnccl|libcublas[^/]*|libcudart|libcusolver|libcusparse|libnvJitLink)\.so'

copy_shared_libs() {
  local dest=$1 extra='' file missing
  shift
  if [ "${1:-}" = --also-exclude ]; then
    extra=$2
    shift 2
  fi
  mkdir -p "$dest"
  for file in "$@"; do
    # Excluded libraries may be absent here (no GPU driver on a build machine); others may not.
    missing=$(ldd "$file" | awk '/not found/ {print "/" $1}' | grep -v -E "$FLATFLEET_SYSTEM_LIBS" |
      { if [ -n "$extra" ]; then grep -v -E "$extra"; else cat; fi; } || true)
    if [ -n "$missing" ]; then
      echo "copy_shared_libs: $file needs libraries that are not found: $missing" >&2
      return 1
    fi
    # (grep -v finding nothing to keep is not an error.)
    ldd "$file" | awk '$3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' |
      { grep -v -E "$FLATFLEET_SYSTEM_LIBS" || true; } |
      { if [ -n "$extra" ]; then grep -v -E "$extra" || true; else cat; fi; } |
      while read -r library; do
        [ -e "$dest/$(basename "$library")" ] || cp -L "$library" "$dest/"
      done
  done
}
