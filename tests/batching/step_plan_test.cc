#include "worker/batching/step_plan.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace flatfleet::engine {
namespace {

StepPlan SamplePlan() {
  StepPlan plan;
  plan.step = 42;
  plan.released = {3, 7, 9};
  plan.preempted = {9};
  plan.chunks.push_back({.sequence = 4, .begin = 17, .tokens = {5}, .sample = true});
  plan.chunks.push_back({.sequence = 11,
                         .begin = 0,
                         .tokens = {1, 2, 70000, -1},
                         .new_sequence = true,
                         .sample = false});
  return plan;
}

TEST(StepPlanTest, RoundTrips) {
  const StepPlan plan = SamplePlan();
  const std::string bytes = SerializeStepPlan(plan);
  auto parsed = ParseStepPlan(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, plan);
  EXPECT_EQ(parsed->num_tokens(), 5);
  auto empty = ParseStepPlan(SerializeStepPlan(StepPlan{}));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(*empty, StepPlan{});
}

TEST(StepPlanTest, RejectsEveryTruncationAndTrailingBytes) {
  const std::string bytes = SerializeStepPlan(SamplePlan());
  for (size_t length = 0; length < bytes.size(); ++length) {
    auto parsed = ParseStepPlan(std::string_view(bytes).substr(0, length));
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << length;
  }
  auto trailing = ParseStepPlan(bytes + "x");
  EXPECT_EQ(trailing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(trailing.status().message().find("trailing"), std::string::npos) << trailing.status();
}

TEST(StepPlanTest, RejectsMalformedFields) {
  std::string bytes = SerializeStepPlan(SamplePlan());
  std::string bad_version = bytes;
  bad_version[4] = 9;
  EXPECT_NE(ParseStepPlan(bad_version).status().message().find("version"), std::string::npos);
  std::string bad_magic = bytes;
  bad_magic[0] = 'X';
  EXPECT_FALSE(ParseStepPlan(bad_magic).ok());
  // Header (8) + step (8) + released (8 + 24) + preempted (8 + 8) + chunk count (8) +
  // sequence (8) + begin (8) = the first chunk's new_sequence flag.
  std::string bad_flag = bytes;
  bad_flag[88] = 2;
  EXPECT_NE(ParseStepPlan(bad_flag).status().message().find("flag"), std::string::npos);
  // A huge element count must be refused before allocating.
  std::string huge_count = bytes;
  for (int i = 0; i < 8; ++i) huge_count[16 + i] = static_cast<char>(0xff);
  EXPECT_EQ(ParseStepPlan(huge_count).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StepPlanTest, ForkedChunksRoundTripAndBadForksAreRefused) {
  StepPlan plan = SamplePlan();
  plan.chunks.push_back(
      {.sequence = 12, .begin = 16, .tokens = {8, 9}, .new_sequence = true, .fork_of = 11});
  auto parsed = ParseStepPlan(SerializeStepPlan(plan));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, plan);
  EXPECT_EQ(parsed->chunks[2].fork_of, 11);
  EXPECT_EQ(parsed->chunks[0].fork_of, kNoFork);
  // A live (not new) sequence cannot fork, nor a sequence from itself.
  StepPlan live_fork = plan;
  live_fork.chunks[2].new_sequence = false;
  auto refused = ParseStepPlan(SerializeStepPlan(live_fork));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("forks from 11"), std::string::npos)
      << refused.status();
  StepPlan self_fork = plan;
  self_fork.chunks[2].fork_of = 12;
  EXPECT_EQ(ParseStepPlan(SerializeStepPlan(self_fork)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StepPlanTest, GarbageFailsCleanly) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string garbage(rng() % 200, '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    if (trial % 2 == 0 && garbage.size() >= 8)
      garbage.replace(0, 8, std::string("FFSP\1\0\0\0", 8));
    auto parsed = ParseStepPlan(garbage);
    if (parsed.ok()) {
      // Rare but possible; then it must re-encode to the same bytes.
      EXPECT_EQ(SerializeStepPlan(*parsed), garbage);
    } else {
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

}  // namespace
}  // namespace flatfleet::engine
