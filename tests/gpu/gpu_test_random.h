// Fresh random seeds for GPU tests: each test draws a new seed (SCOPED_TRACE it so a failure
// prints it); FLATFLEET_TEST_SEED=<n> replays one. Same convention as tests/quant/test_random.h.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <random>

#include "tests/quant/test_random.h"

namespace flatfleet::cuda::testing {

// The project's one seed source (FLATFLEET_TEST_SEED, else a fresh one).
using quant::test_util::FreshSeed;

// Distance in ulps between two finite 16-bit floats of one format (bf16 or FP16 bit patterns,
// sign-magnitude); +0 and -0 are equal.
inline int64_t UlpDistance16(uint16_t a, uint16_t b) {
  auto ordinal = [](uint16_t bits) -> int64_t {
    const int64_t magnitude = bits & 0x7fff;
    return (bits & 0x8000) ? -magnitude : magnitude;
  };
  const int64_t d = ordinal(a) - ordinal(b);
  return d < 0 ? -d : d;
}

}  // namespace flatfleet::cuda::testing
