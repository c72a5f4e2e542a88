#!/usr/bin/env bash
# Makes throwaway TLS material for the security tests in OUTDIR (valid for two days):
#   ca.pem             the test CA; server.pem/.key (localhost, 127.0.0.1) and client.pem/.key
#                      are signed by it
#   other-ca.pem       an unrelated CA; other-client.pem/.key are signed by it
# usage: make_test_certs.sh OUTDIR
set -euo pipefail
out=$1
mkdir -p "$out"
cd "$out"

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

make_ca() {  # NAME COMMON_NAME
  new_key "$1"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

make_leaf() {  # NAME CA COMMON_NAME EXTENSIONS
  new_key "$1"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$3"
  printf '%s\n' "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "0x$(openssl rand -hex 8)" \
    -out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

make_ca ca "flatfleet test CA"
make_ca other-ca "unrelated test CA"
make_leaf server ca localhost \
  "$(printf 'subjectAltName=DNS:localhost,DNS:coordinator.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth')"
make_leaf client ca coordinator "extendedKeyUsage=clientAuth"
make_leaf other-client other-ca intruder "extendedKeyUsage=clientAuth"
