// Fresh random inputs for the quantization tests. Each test gets a new seed (printed with any
// failure through SCOPED_TRACE); FLATFLEET_TEST_SEED=<n> replays one. A test whose assertion is a
// statistical margin ("X beats Y by a factor c"), which some inputs may miss, calls UseFixedSeed
// and states the margin measured over many seeds instead.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace flatfleet::quant::test_util {

inline uint64_t FreshSeed() {
  if (const char* fixed = std::getenv("FLATFLEET_TEST_SEED"))
    return std::strtoull(fixed, nullptr, 10);
  std::random_device device;
  return (uint64_t{device()} << 32) | device();
}

class RandomTest : public ::testing::Test {
 protected:
  RandomTest() : seed_(FreshSeed()), rng_(seed_) {
    trace_.emplace(__FILE__, __LINE__, "seed " + std::to_string(seed_));
  }

  // Draws from `seed` from here on (FLATFLEET_TEST_SEED still wins, to measure other seeds).
  void UseFixedSeed(uint64_t seed) {
    if (std::getenv("FLATFLEET_TEST_SEED") != nullptr) return;
    seed_ = seed;
    rng_.seed(seed_);
    trace_.reset();
    trace_.emplace(__FILE__, __LINE__, "fixed seed " + std::to_string(seed_));
  }

  // Normal(0, stddev) values, never exactly zero as a whole (a zero draw is redrawn).
  std::vector<float> Gaussian(int64_t count, float stddev = 1.0f) {
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> values(count);
    for (float& v : values) {
      do {
        v = dist(rng_);
      } while (v == 0.0f);
    }
    return values;
  }
  int64_t UniformInt(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  float UniformFloat(float lo, float hi) {
    return std::uniform_real_distribution<float>(lo, hi)(rng_);
  }

  uint64_t seed_;
  std::mt19937_64 rng_;

 private:
  std::optional<::testing::ScopedTrace> trace_;
};

}  // namespace flatfleet::quant::test_util
