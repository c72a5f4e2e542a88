#!/usr/bin/env bash
# Installs the Debian 12 packages flatfleet needs to build, test and run. Idempotent: quiet and
# quick when everything is already present. Run as root (or with sudo available).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ccache
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libgloo-dev libsqlite3-dev libcivetweb-dev nlohmann-json3-dev libcli11-dev
  libsentencepiece-dev libpcre2-dev libopenblas0
  clang-14 libclang-rt-14-dev clang-format
  prometheus python3-grpcio python3-yaml yamllint
  openssl libssl-dev
  nodejs
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
# The OpenAI client test's npm (Debian packages it apart from nodejs; other nodejs builds
# bring their own).
if ! command -v npm >/dev/null; then missing+=(npm); fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
echo "install-deps: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
