#include "coordinator/server/group_planner.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace flatfleet::coordinator {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

std::vector<WorkerInfo> Workers(int count, uint64_t memory) {
  std::vector<WorkerInfo> workers;
  for (int i = 0; i < count; ++i) workers.push_back({absl::StrCat("w", i), memory});
  return workers;
}

TEST(GroupPlannerTest, SmallModelGetsOneWorkerPerGroup) {
  absl::StatusOr<ClusterPlan> plan = PlanWorkerGroups(10 * kGiB, Workers(3, 80 * kGiB));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tp_size, 1u);
  ASSERT_EQ(plan->groups.size(), 3u);
  EXPECT_EQ(plan->groups[2].rank_addresses, std::vector<std::string>{"w2"});
}

TEST(GroupPlannerTest, LargeModelIsShardedOverThePowerOfTwoThatFitsWithHeadroom) {
  // 140 GiB over 80 GiB devices with 30% headroom: 56 GiB usable, so 4 ranks (35 GiB each).
  absl::StatusOr<ClusterPlan> plan = PlanWorkerGroups(140 * kGiB, Workers(9, 80 * kGiB));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tp_size, 4u);
  ASSERT_EQ(plan->groups.size(), 2u);
  EXPECT_EQ(plan->groups[1].rank_addresses, (std::vector<std::string>{"w4", "w5", "w6", "w7"}));
  EXPECT_EQ(plan->unused_workers, std::vector<std::string>{"w8"});
}

TEST(GroupPlannerTest, SmallestDeviceDecides) {
  std::vector<WorkerInfo> workers = Workers(2, 80 * kGiB);
  workers[1].device_memory_bytes = 24 * kGiB;
  absl::StatusOr<ClusterPlan> plan = PlanWorkerGroups(20 * kGiB, workers);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tp_size, 2u);
}

TEST(GroupPlannerTest, RefusesWhatCannotFit) {
  EXPECT_FALSE(PlanWorkerGroups(100 * kGiB, Workers(1, 80 * kGiB)).ok());     // needs tp=2
  EXPECT_FALSE(PlanWorkerGroups(10'000 * kGiB, Workers(8, 80 * kGiB)).ok());  // beyond max_tp
  EXPECT_FALSE(PlanWorkerGroups(1 * kGiB, {}).ok());
}

TEST(GroupPlannerTest, GroupBackendIsNcclOnlyForAllGpuGroups) {
  EXPECT_EQ(*ChooseGroupBackend({false, false}), GroupBackend::kGloo);
  EXPECT_EQ(*ChooseGroupBackend({true, true, true, true}), GroupBackend::kNccl);
  absl::StatusOr<GroupBackend> mixed = ChooseGroupBackend({true, false, true});
  ASSERT_FALSE(mixed.ok());
  EXPECT_EQ(mixed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(mixed.status().message().find("ranks 0, 2"), std::string::npos) << mixed.status();
  EXPECT_NE(mixed.status().message().find("ranks 1)"), std::string::npos) << mixed.status();
}

TEST(GroupPlannerTest, ForcedTpOverridesTheMemoryRule) {
  PlannerOptions options;
  options.forced_tp = 2;
  // A tiny model would get tp=1; forced, five workers make two groups and one idle worker.
  absl::StatusOr<ClusterPlan> plan = PlanWorkerGroups(1 * kGiB, Workers(5, 80 * kGiB), options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tp_size, 2u);
  ASSERT_EQ(plan->groups.size(), 2u);
  EXPECT_EQ(plan->groups[1].rank_addresses, (std::vector<std::string>{"w2", "w3"}));
  EXPECT_EQ(plan->unused_workers, std::vector<std::string>{"w4"});
  options.forced_tp = 4;
  absl::StatusOr<ClusterPlan> too_few = PlanWorkerGroups(1 * kGiB, Workers(3, 0), options);
  EXPECT_EQ(too_few.status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace flatfleet::coordinator
