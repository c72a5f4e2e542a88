// A damaged job store is refused at open, naming the file, instead of being served: random
// bytes written over a page of a copy of a real store (2,000 requests, some answered).
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/job_store.h"
#include "gtest/gtest.h"
#include "tests/quant/test_random.h"
#include "tests/service/job_store_test_util.h"

namespace flatfleet::coordinator {
namespace {

using testing_util::MakeRequests;
using testing_util::Success;
using testing_util::TempDatabasePath;

constexpr int kPageBytes = 4096;  // SQLite's default page size.

// A closed store (WAL checkpointed into the file) with 2,000 requests, 300 of them answered.
std::string MakeStore(const std::string& name) {
  const std::string path = TempDatabasePath(name);
  auto store = JobStore::Open(path);
  EXPECT_TRUE(store.ok()) << store.status();
  JobOptions options;
  options.model = "demo";
  auto job = (*store)->CreateJob(options, MakeRequests(2000));
  EXPECT_TRUE(job.ok()) << job.status();
  auto claimed = (*store)->ClaimPending("demo", 300, "w", 60'000);
  EXPECT_TRUE(claimed.ok()) << claimed.status();
  for (const ClaimedRequest& request : *claimed) {
    EXPECT_TRUE((*store)->RecordResult(request.key, Success("fine")).ok());
  }
  return path;
}

// Writes `count` random bytes at `offset` of the file.
void Scribble(const std::string& path, int64_t offset, int count, std::mt19937_64& rng) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(file) << path;
  file.seekp(offset);
  for (int i = 0; i < count; ++i) file.put(static_cast<char>(rng()));
  ASSERT_TRUE(file.good());
}

TEST(JobStoreIntegrityTest, ASoundStoreOpensAndKeepsItsJobs) {
  const std::string path = MakeStore("sound");
  auto reopened = JobStore::Open(path);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto jobs = (*reopened)->ListJobs(10);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].counts.completed, 300);
}

TEST(JobStoreIntegrityTest, RandomBytesOverAPageAreRefusedNamingTheFile) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const std::string original = MakeStore("damaged_original");
  const int64_t pages = static_cast<int64_t>(std::filesystem::file_size(original)) / kPageBytes;
  ASSERT_GT(pages, 10);
  // Several damaged copies, each with 200 random bytes over the start of a random page after
  // the first (the header page is covered by its own case below).
  for (int copy = 0; copy < 5; ++copy) {
    const std::string path = TempDatabasePath(absl::StrCat("damaged_", copy));
    std::filesystem::copy_file(original, path, std::filesystem::copy_options::overwrite_existing);
    const int64_t page = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(pages - 1));
    Scribble(path, page * kPageBytes, 200, rng);
    SCOPED_TRACE(absl::StrCat("page ", page));
    auto opened = JobStore::Open(path);
    ASSERT_FALSE(opened.ok()) << "a damaged store opened";
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss) << opened.status();
    EXPECT_TRUE(absl::StrContains(opened.status().message(), path)) << opened.status();
    EXPECT_TRUE(absl::StrContains(opened.status().message(), "damaged")) << opened.status();
  }
}

TEST(JobStoreIntegrityTest, ADamagedHeaderIsRefusedNamingTheFile) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const std::string path = MakeStore("damaged_header");
  Scribble(path, 0, 200, rng);
  auto opened = JobStore::Open(path);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss) << opened.status();
  EXPECT_TRUE(absl::StrContains(opened.status().message(), path)) << opened.status();
}

TEST(JobStoreIntegrityTest, AVacuumIntoBackupRestoresTheStore) {
  const std::string path = MakeStore("backed_up");
  const std::string backup = TempDatabasePath("backup");
  {
    auto store = JobStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->BackupTo(backup).ok());
  }
  auto restored = JobStore::Open(backup);
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto jobs = (*restored)->ListJobs(10);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].counts.total, 2000);
  EXPECT_EQ((*jobs)[0].counts.completed, 300);
}

}  // namespace
}  // namespace flatfleet::coordinator
