// Shared helpers for the job store tests.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/batch_input_parser.h"
#include "coordinator/job_store.h"
#include "gtest/gtest.h"

namespace flatfleet::coordinator::testing_util {

// A fresh database path under the test's temporary directory.
inline std::string TempDatabasePath(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "job_store";
  std::filesystem::create_directories(dir);
  const std::filesystem::path path =
      dir / absl::StrCat(name, "_", ::testing::UnitTest::GetInstance()->random_seed(), "_",
                         getpid(), ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(path.string() + suffix);
  }
  return path.string();
}

// `count` valid completion requests with custom_ids "r0", "r1", ...
inline std::vector<BatchRequestLine> MakeRequests(int count) {
  std::string text;
  for (int i = 0; i < count; ++i) {
    absl::StrAppend(&text, "{\"custom_id\": \"r", i, "\", \"body\": {\"prompt\": \"p", i,
                    "\", \"max_tokens\": 4}}\n");
  }
  ParsedBatch parsed = ParseBatchInput(text);
  EXPECT_TRUE(parsed.ok());
  return std::move(parsed.requests);
}

inline ResultRecord Success(std::string_view text) {
  return ResultRecord{ResultOutcome::kSucceeded,
                      absl::StrCat("{\"text\":\"", std::string(text), "\"}")};
}

}  // namespace flatfleet::coordinator::testing_util
