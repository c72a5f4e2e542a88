// Helpers shared by the checkpoint-format tests: hand-built safetensors images, temporary
// directories, random data and error-message checks.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/quant/test_random.h"

namespace flatfleet::testing {

// An 8-byte little-endian header length, `header`, then `data_bytes` random bytes.
inline std::vector<std::byte> SafetensorsImage(std::string_view header, size_t data_bytes,
                                               uint64_t declared_header_size = UINT64_MAX) {
  const uint64_t header_size =
      declared_header_size == UINT64_MAX ? header.size() : declared_header_size;
  std::vector<std::byte> image(8 + header.size() + data_bytes);
  std::memcpy(image.data(), &header_size, 8);
  std::memcpy(image.data() + 8, header.data(), header.size());
  std::mt19937 random(static_cast<uint32_t>(quant::test_util::FreshSeed()));
  for (size_t i = 8 + header.size(); i < image.size(); ++i) {
    image[i] = static_cast<std::byte>(random() & 0xff);
  }
  return image;
}

// Passes when `status` has `code` and its message contains every one of `needles`.
inline ::testing::AssertionResult HasError(const absl::Status& status, absl::StatusCode code,
                                           std::initializer_list<std::string_view> needles) {
  if (status.code() != code) {
    return ::testing::AssertionFailure()
           << "expected code " << absl::StatusCodeToString(code) << ", got " << status;
  }
  for (std::string_view needle : needles) {
    if (std::string_view(status.message().data(), status.message().size()).find(needle) ==
        std::string_view::npos) {
      return ::testing::AssertionFailure() << "message lacks '" << needle << "': " << status;
    }
  }
  return ::testing::AssertionSuccess();
}

// A fresh directory under the system temporary directory, removed with its contents.
class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    std::random_device entropy;
    path_ = std::filesystem::temp_directory_path() /
            ("flatfleet-test-" + std::to_string(getpid()) + "-" + std::to_string(entropy()));
    std::filesystem::create_directories(path_);
  }
  ~TemporaryDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void WriteTextFile(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}

inline void WriteBytesFile(const std::filesystem::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// A seeded generator whose seed is reported on failure.
class SeededRandom {
 public:
  // FLATFLEET_TEST_SEED replays a reported seed.
  SeededRandom() : seed_(static_cast<uint32_t>(quant::test_util::FreshSeed())), engine_(seed_) {}
  uint32_t seed() const { return seed_; }
  std::mt19937& engine() { return engine_; }
  std::vector<float> Normal(size_t count, float stddev = 1.0f) {
    std::normal_distribution<float> distribution(0.0f, stddev);
    std::vector<float> values(count);
    for (float& value : values) value = distribution(engine_);
    return values;
  }
  std::vector<float> Integers(size_t count, int64_t low, int64_t high) {
    std::uniform_int_distribution<int64_t> distribution(low, high);
    std::vector<float> values(count);
    for (float& value : values) value = static_cast<float>(distribution(engine_));
    return values;
  }

 private:
  uint32_t seed_;
  std::mt19937 engine_;
};

}  // namespace flatfleet::testing
