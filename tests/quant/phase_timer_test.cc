// quant/phase_timer.h: nested phases are exclusive and sum to the time inside the outermost
// timer; timers without a recorder, or on another thread, count nothing. The sleeps give lower
// bounds only (sleep_for never returns early), so no assertion depends on the machine's load.
#include "quant/phase_timer.h"

#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace flatfleet::quant {
namespace {

using std::chrono::milliseconds;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(PhaseTimerTest, NestedPhasesAreExclusiveAndSumToTheOuterWallTime) {
  PhaseTimes times;
  double wall = 0.0;
  {
    const PhaseRecorder recorder(times);
    const auto start = std::chrono::steady_clock::now();
    {
      const ScopedPhase outer(QuantizePhase::kCalibrateForward);
      std::this_thread::sleep_for(milliseconds(5));
      for (int i = 0; i < 2; ++i) {
        const ScopedPhase inner(QuantizePhase::kStatistics);
        std::this_thread::sleep_for(milliseconds(10));
      }
    }
    wall = SecondsSince(start);
  }
  const double outer = times[QuantizePhase::kCalibrateForward];
  const double inner = times[QuantizePhase::kStatistics];
  EXPECT_GE(inner, 0.020);  // both inner scopes, added up
  EXPECT_GE(outer, 0.005);
  EXPECT_LE(outer + inner, wall);
  EXPECT_LE(outer, wall - 0.020) << "the inner phases' time is not the outer's";
  EXPECT_EQ(times.total(), outer + inner);
  for (size_t p = 0; p < kQuantizePhaseCount; ++p) {
    const auto phase = static_cast<QuantizePhase>(p);
    if (phase != QuantizePhase::kCalibrateForward && phase != QuantizePhase::kStatistics) {
      EXPECT_EQ(times[phase], 0.0) << QuantizePhaseName(phase);
    }
  }
}

TEST(PhaseTimerTest, RecorderAddsToItsSinkAcrossScopes) {
  PhaseTimes times;
  for (int i = 0; i < 2; ++i) {
    const PhaseRecorder recorder(times);
    const ScopedPhase phase(QuantizePhase::kWrite);
    std::this_thread::sleep_for(milliseconds(3));
  }
  EXPECT_GE(times[QuantizePhase::kWrite], 0.006);
}

TEST(PhaseTimerTest, NoRecorderOrAnotherThreadCountsNothing) {
  {
    const ScopedPhase unrecorded(QuantizePhase::kRead);  // no recorder: a no-op
    std::this_thread::sleep_for(milliseconds(1));
  }
  PhaseTimes times;
  {
    const PhaseRecorder recorder(times);
    const ScopedPhase phase(QuantizePhase::kGptqSolve);
    std::thread worker([] {
      const ScopedPhase elsewhere(QuantizePhase::kPack);  // that thread has no recorder
      std::this_thread::sleep_for(milliseconds(5));
    });
    worker.join();
  }
  EXPECT_EQ(times[QuantizePhase::kRead], 0.0);
  EXPECT_EQ(times[QuantizePhase::kPack], 0.0);
  // The waiting thread counts the worker's time in its own phase.
  EXPECT_GE(times[QuantizePhase::kGptqSolve], 0.005);
}

TEST(PhaseTimerTest, ANestedRecorderKeepsItsOwnPhases) {
  PhaseTimes outer_times, inner_times;
  {
    const PhaseRecorder outer_recorder(outer_times);
    const ScopedPhase outer(QuantizePhase::kQuantizeOther);
    {
      const PhaseRecorder inner_recorder(inner_times);
      const ScopedPhase inner(QuantizePhase::kRtn);
      std::this_thread::sleep_for(milliseconds(5));
    }
    const ScopedPhase after(QuantizePhase::kPack);  // the outer recorder again
  }
  EXPECT_GE(inner_times[QuantizePhase::kRtn], 0.005);
  EXPECT_EQ(outer_times[QuantizePhase::kRtn], 0.0);
  EXPECT_GE(outer_times[QuantizePhase::kQuantizeOther], 0.005)
      << "time under another recorder is not taken out of this one's phase";
  EXPECT_GT(outer_times[QuantizePhase::kPack], 0.0);
}

TEST(PhaseTimerTest, EveryPhaseHasADistinctName) {
  for (size_t a = 0; a < kQuantizePhaseCount; ++a) {
    const std::string_view name = QuantizePhaseName(static_cast<QuantizePhase>(a));
    EXPECT_FALSE(name.empty());
    EXPECT_NE(name, "unknown");
    for (size_t b = a + 1; b < kQuantizePhaseCount; ++b) {
      EXPECT_NE(name, QuantizePhaseName(static_cast<QuantizePhase>(b)));
    }
  }
}

}  // namespace
}  // namespace flatfleet::quant
