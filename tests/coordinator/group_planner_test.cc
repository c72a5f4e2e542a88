#include "coordinator/server/group_planner.h"

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "coordinator/server/model_memory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/quant/synthetic_checkpoint.h"

namespace flatfleet::coordinator {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint64_t kGiB = 1ull << 30;

std::vector<WorkerInfo> Workers(int count, uint64_t memory,
                                WorkerDevice device = WorkerDevice::kGpu) {
  std::vector<WorkerInfo> workers;
  for (int i = 0; i < count; ++i) workers.push_back({absl::StrCat("w", i), memory, device});
  return workers;
}

// A model whose ranks each need `bytes` / tp (twice that on CPU workers).
RankMemoryNeed Split(uint64_t bytes) {
  return [bytes](uint32_t tp, WorkerDevice device) -> absl::StatusOr<RankNeed> {
    const uint64_t per_rank = bytes / tp * (device == WorkerDevice::kCpu ? 2 : 1);
    return RankNeed{per_rank, absl::StrCat(per_rank, " bytes")};
  };
}

TEST(GroupPlannerTest, SmallModelGetsOneWorkerPerGroup) {
  absl::StatusOr<ClusterPlan> plan = PlanWorkerGroups(Split(10 * kGiB), Workers(3, 80 * kGiB));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tp_size, 1u);
  ASSERT_EQ(plan->groups.size(), 3u);
  EXPECT_EQ(plan->groups[2].rank_addresses, std::vector<std::string>{"w2"});
  EXPECT_THAT(plan->reason, AllOf(HasSubstr("tp=1: each rank needs 10737418240 bytes"),
                                  HasSubstr("offers 77.31 GB (90% of 85.90 GB)")));
}

TEST(GroupPlannerTest, LargeModelIsShardedOverThePowerOfTwoThatFits) {
  // 200 GiB over 80 GiB devices of which 90% (72 GiB) is usable: 4 ranks of 50 GiB.
  absl::StatusOr<ClusterPlan> plan = PlanWorkerGroups(Split(200 * kGiB), Workers(9, 80 * kGiB));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tp_size, 4u);
  ASSERT_EQ(plan->groups.size(), 2u);
  EXPECT_EQ(plan->groups[1].rank_addresses, (std::vector<std::string>{"w4", "w5", "w6", "w7"}));
  EXPECT_EQ(plan->unused_workers, std::vector<std::string>{"w8"});
  // Why not fewer ranks: the need against what each worker offers.
  EXPECT_THAT(plan->reason, AllOf(HasSubstr("tp=4: each rank needs"),
                                  HasSubstr("tp=2: each rank needs 107374182400 bytes"),
                                  HasSubstr("but w0 (GPU) offers 77.31 GB")));
}

TEST(GroupPlannerTest, SmallestDeviceDecides) {
  std::vector<WorkerInfo> workers = Workers(2, 80 * kGiB);
  workers[1].device_memory_bytes = 24 * kGiB;  // 21.6 GiB usable
  absl::StatusOr<ClusterPlan> plan = PlanWorkerGroups(Split(30 * kGiB), workers);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tp_size, 2u);
  EXPECT_THAT(plan->reason, HasSubstr("the tightest worker, w1 (GPU)"));
}

TEST(GroupPlannerTest, CpuWorkersAreSizedByTheirOwnNeed) {
  // The same model needs twice the bytes per rank on a CPU worker (float32 instead of bf16).
  absl::StatusOr<ClusterPlan> gpu = PlanWorkerGroups(Split(60 * kGiB), Workers(4, 80 * kGiB));
  absl::StatusOr<ClusterPlan> cpu =
      PlanWorkerGroups(Split(60 * kGiB), Workers(4, 80 * kGiB, WorkerDevice::kCpu));
  ASSERT_TRUE(gpu.ok() && cpu.ok());
  EXPECT_EQ(gpu->tp_size, 1u);
  EXPECT_EQ(cpu->tp_size, 2u);
  EXPECT_THAT(cpu->reason, HasSubstr("on a CPU worker"));
  // A worker of unknown kind (memory configured, no Health) is planned as a GPU worker.
  absl::StatusOr<ClusterPlan> unknown =
      PlanWorkerGroups(Split(60 * kGiB), Workers(4, 80 * kGiB, WorkerDevice::kUnknown));
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(unknown->tp_size, 1u);
}

TEST(GroupPlannerTest, RefusesWhatCannotFitNamingTheNumbers) {
  absl::StatusOr<ClusterPlan> two = PlanWorkerGroups(Split(100 * kGiB), Workers(1, 80 * kGiB));
  EXPECT_EQ(two.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(two.status().message(), AllOf(HasSubstr("needs tp=2 but only 1 workers"),
                                            HasSubstr("tp=1: each rank needs 107374182400")));
  absl::StatusOr<ClusterPlan> none =
      PlanWorkerGroups(Split(10'000 * kGiB), Workers(8, 80 * kGiB));  // beyond max_tp
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(none.status().message(),
              AllOf(HasSubstr("fits no tensor-parallel degree up to 8"),
                    HasSubstr("tp=8: each rank needs 1342177280000 bytes on a GPU worker, but "
                              "w0 (GPU) offers 77.31 GB (90% of 85.90 GB), w1 (GPU)")));
  EXPECT_FALSE(PlanWorkerGroups(Split(1 * kGiB), {}).ok());
}

TEST(GroupPlannerTest, ADegreeThatCannotSplitTheModelIsSkippedWithItsReason) {
  RankMemoryNeed need = [](uint32_t tp, WorkerDevice) -> absl::StatusOr<RankNeed> {
    if (tp == 2) return absl::InvalidArgumentError("3 heads do not split over 2 ranks");
    return RankNeed{100 * kGiB / tp, "some bytes"};
  };
  absl::StatusOr<ClusterPlan> plan = PlanWorkerGroups(need, Workers(4, 80 * kGiB));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tp_size, 4u);
  EXPECT_THAT(plan->reason, HasSubstr("tp=2: 3 heads do not split over 2 ranks"));
}

TEST(GroupPlannerTest, UnknownMemoryIsTakenAsLargeEnough) {
  absl::StatusOr<ClusterPlan> plan = PlanWorkerGroups(Split(1000 * kGiB), Workers(2, 0));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tp_size, 1u);
  EXPECT_THAT(plan->reason, HasSubstr("no worker reported its memory"));
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
  absl::StatusOr<ClusterPlan> plan =
      PlanWorkerGroups(Split(1 * kGiB), Workers(5, 80 * kGiB), options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tp_size, 2u);
  ASSERT_EQ(plan->groups.size(), 2u);
  EXPECT_EQ(plan->groups[1].rank_addresses, (std::vector<std::string>{"w2", "w3"}));
  EXPECT_EQ(plan->unused_workers, std::vector<std::string>{"w4"});
  EXPECT_THAT(plan->reason, HasSubstr("forced tp=2 (tp=2: each rank needs 536870912 bytes"));
  // Forced even where it does not fit.
  options.forced_tp = 1;
  EXPECT_TRUE(PlanWorkerGroups(Split(100 * kGiB), Workers(1, 80 * kGiB), options).ok());
  options.forced_tp = 4;
  absl::StatusOr<ClusterPlan> too_few = PlanWorkerGroups(Split(1 * kGiB), Workers(3, 0), options);
  EXPECT_EQ(too_few.status().code(), absl::StatusCode::kResourceExhausted);
}

// The planner on the estimate of real checkpoint shapes (header-only Llama-3-70B directories):
// an H200 reports 139.8 GiB (cudaMemGetInfo), 90% of which is 135.1 GB. A bf16 70B rank needs
// ~145 GB at tp=1 (141 GB of weights), so two H200s; the W4A8 checkpoint's ~46 GB fits one.
TEST(GroupPlannerTest, Llama70bNeedsTwoH200sInBf16AndOneInW4A8) {
  namespace synthetic = quant::testing_synthetic;
  const std::filesystem::path root =
      std::filesystem::path(::testing::TempDir()) / absl::StrCat("planner-70b-", getpid());
  synthetic::WriteFloatCheckpoint(root / "bf16", synthetic::Llama3_70bConfig(), "BF16");
  synthetic::WriteW4A8IntScaleCheckpoint(root / "w4a8", synthetic::Llama3_70bConfig());
  const uint64_t h200 = static_cast<uint64_t>(139.8 * kGiB);
  auto plan = [&](const std::string& dir, int workers, WorkerDevice device) {
    absl::StatusOr<quant::CheckpointShapes> shapes =
        ReadModelShapes(ModelSpec{"llama-70b", (root / dir).string()});
    EXPECT_TRUE(shapes.ok()) << shapes.status();
    return PlanWorkerGroups(ModelRankNeed(*std::move(shapes), quant::RankMemoryOptions()),
                            Workers(workers, h200, device));
  };
  absl::StatusOr<ClusterPlan> bf16_one = plan("bf16", 1, WorkerDevice::kGpu);
  EXPECT_EQ(bf16_one.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(bf16_one.status().message()),
              AllOf(HasSubstr("needs tp=2 but only 1 workers"),
                    HasSubstr("tp=1: each rank needs 145.11 GB = 141.11 GB weights"),
                    HasSubstr("but w0 (GPU) offers 135.10 GB (90% of 150.11 GB)")));
  absl::StatusOr<ClusterPlan> bf16_two = plan("bf16", 2, WorkerDevice::kGpu);
  ASSERT_TRUE(bf16_two.ok()) << bf16_two.status();
  EXPECT_EQ(bf16_two->tp_size, 2u);
  absl::StatusOr<ClusterPlan> w4a8 = plan("w4a8", 1, WorkerDevice::kGpu);
  ASSERT_TRUE(w4a8.ok()) << w4a8.status();
  EXPECT_EQ(w4a8->tp_size, 1u);
  EXPECT_THAT(w4a8->reason, HasSubstr("tp=1: each rank needs 45.79 GB = 41.68 GB weights"));
  // CPU workers of the same memory hold float32 (and a 16384-position KV pool): ~293 GB per rank at
  // tp=1, 4 ranks of ~75 GB.
  absl::StatusOr<ClusterPlan> cpu = plan("bf16", 4, WorkerDevice::kCpu);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(cpu->tp_size, 4u);
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flatfleet::coordinator
