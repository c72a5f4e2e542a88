#include "worker/batching/group_message.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "tests/quant/test_random.h"

namespace flatfleet::engine {
namespace {

// A plan with fresh random sequences, positions and tokens.
StepPlan RandomPlan(std::mt19937_64& rng) {
  StepPlan plan;
  plan.step = rng();
  plan.released = {static_cast<SequenceId>(rng() % 1000), static_cast<SequenceId>(rng() % 1000)};
  plan.preempted = {plan.released[1]};
  for (int c = 0; c < 3; ++c) {
    PlannedChunk chunk;
    chunk.sequence = static_cast<SequenceId>(rng() % 1000);
    chunk.begin = static_cast<int64_t>(rng() % 4096);
    for (int t = 1 + static_cast<int>(rng() % 8); t > 0; --t) {
      chunk.tokens.push_back(static_cast<int32_t>(rng() % 50000));
    }
    chunk.new_sequence = rng() % 2 == 0;
    chunk.sample = rng() % 2 == 0;
    plan.chunks.push_back(std::move(chunk));
  }
  return plan;
}

TEST(GroupMessageTest, PlansHeartbeatsAndStopsRoundTrip) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (FLATFLEET_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  const GroupMessage plan{GroupMessageKind::kPlan, RandomPlan(rng)};
  const std::string bytes = EncodeGroupMessage(plan);
  absl::StatusOr<GroupMessage> parsed = ParseGroupMessage(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->kind, GroupMessageKind::kPlan);
  EXPECT_EQ(parsed->plan, plan.plan);
  for (GroupMessageKind kind : {GroupMessageKind::kHeartbeat, GroupMessageKind::kStop}) {
    const std::string encoded = EncodeGroupMessage(GroupMessage{kind, {}});
    EXPECT_EQ(encoded.size(), 1u);
    absl::StatusOr<GroupMessage> round = ParseGroupMessage(encoded);
    ASSERT_TRUE(round.ok()) << round.status();
    EXPECT_EQ(round->kind, kind);
  }
}

TEST(GroupMessageTest, RejectsMalformedMessagesWithAReason) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (FLATFLEET_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  const std::string plan = EncodeGroupMessage({GroupMessageKind::kPlan, RandomPlan(rng)});
  struct Case {
    std::string bytes;
    std::string reason;
  };
  const Case cases[] = {
      {"", "empty"},
      {"Z", "unknown tag"},
      {"H!", "unexpected bytes"},
      {"S\x01", "unexpected bytes"},
      {plan.substr(0, plan.size() - 1), "bad step plan"},
      {plan + "x", "bad step plan"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<GroupMessage> parsed = ParseGroupMessage(c.bytes);
    ASSERT_FALSE(parsed.ok()) << c.reason;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(c.reason), std::string::npos)
        << parsed.status().message();
  }
}

}  // namespace
}  // namespace flatfleet::engine
