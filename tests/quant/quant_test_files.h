// Files for the quantization tests: the shared fixtures directory, fresh per-test output
// directories and whole-file reads.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"

namespace flatfleet::quant::testing_files {

// $FLATFLEET_SHARED_DIR, else the configured ../shared.
inline std::filesystem::path SharedDir() {
  const char* env = std::getenv("FLATFLEET_SHARED_DIR");
  return std::filesystem::path(env ? env : FLATFLEET_SHARED_DIR);
}

// An empty path under the test's temporary directory, unique in the process and across
// processes: PREFIX-LABEL-PID-N.
inline std::filesystem::path FreshDir(const std::string& prefix, const std::string& label) {
  static std::atomic<int> counter{0};
  std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) /
      absl::StrFormat("%s-%s-%d-%d", prefix, label, getpid(), counter.fetch_add(1));
  std::filesystem::remove_all(dir);
  return dir;
}

inline std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace flatfleet::quant::testing_files
