// Runs Prometheus's own linter, `promtool check metrics`, on an exposition page in tests.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "gtest/gtest.h"

namespace flatfleet::test_support {

inline constexpr char kPromtoolPath[] = "/usr/bin/promtool";

inline bool HasPromtool() { return access(kPromtoolPath, X_OK) == 0; }

// Returns promtool's exit status (0: the page is valid) and fills `output` with its report.
inline int PromtoolCheckMetrics(const std::string& page, std::string* output) {
  // ctest runs tests as parallel processes: each call gets its own files.
  const std::filesystem::path dir = ::testing::TempDir();
  std::string tag = std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
                    "_" + std::to_string(getpid());
  std::replace(tag.begin(), tag.end(), '/', '_');  // parameterised tests are named "Case/0"
  const std::filesystem::path input = dir / ("promtool_input_" + tag + ".txt");
  const std::filesystem::path report = dir / ("promtool_report_" + tag + ".txt");
  std::ofstream(input, std::ios::binary) << page;
  const std::string command = std::string(kPromtoolPath) + " check metrics < " + input.string() +
                              " > " + report.string() + " 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream in(report);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::filesystem::remove(input);
  std::filesystem::remove(report);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace flatfleet::test_support
