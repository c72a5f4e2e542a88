#!/usr/bin/env bash
# Usage: gpu-test-skips.sh GPU_TESTS_XML
# Reads gpu_tests' --gtest_output=xml report and fails (exit 1, listing them) when a test skipped
# that this machine could have run. On a GPU machine the only acceptable skip is a multi-GPU test
# on a host with fewer GPUs ("needs N GPUs, found M" with M < N); "no GPU" or any other reason
# means the test did not run where it should have.
set -uo pipefail
xml=${1:?usage: gpu-test-skips.sh GPU_TESTS_XML}
if [ ! -s "$xml" ]; then
  echo "gpu-test-skips: no test report at $xml" >&2
  exit 1
fi
# One line per skipped test: "Suite.Name<TAB>message" (the testcase element precedes its
# <skipped> child in gtest's XML).
skips=$(awk '
  /<testcase / {
    name = $0; sub(/.*<testcase name="/, "", name); sub(/".*/, "", name)
    suite = $0; sub(/.*classname="/, "", suite); sub(/".*/, "", suite)
  }
  /<skipped message="/ {
    message = $0; sub(/.*<skipped message="/, "", message); sub(/".*/, "", message)
    gsub(/&#x0A;/, " ", message)
    print suite "." name "\t" message
  }' "$xml")
bad=0
while IFS=$'\t' read -r test message; do
  [ -z "$test" ] && continue
  if [[ $message =~ needs\ ([0-9]+)\ GPUs,\ found\ ([0-9]+) ]] &&
     [ "${BASH_REMATCH[2]}" -lt "${BASH_REMATCH[1]}" ]; then
    continue
  fi
  echo "gpu-test-skips: $test skipped on a machine that could run it: $message" >&2
  bad=1
done <<< "$skips"
exit "$bad"
