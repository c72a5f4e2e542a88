// Shared helpers for the collectives tests: groups of ranks as threads or processes, random data.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "worker/collectives/communicator.h"

namespace flatfleet::collectives::testing {

// A fresh directory under /tmp (for file-store rendezvous).
std::string MakeTempDirectory();

// Runs `size` ranks as threads, each with its own GlooCommunicator over loopback rendezvousing
// through a fresh file store; `body` runs on every rank once all ranks have connected (a
// barrier). Creation failures are test failures.
void RunRanksAsThreads(int size, const std::function<void(Communicator&)>& body,
                       std::chrono::milliseconds timeout = std::chrono::seconds(20));

// Forks a child that runs `body` and exits with its return value (no destructors run).
pid_t ForkChild(const std::function<int()>& body);
// The child's exit code, or -1 if it had to be killed at `deadline` or died from a signal.
int WaitForChild(pid_t child, std::chrono::steady_clock::time_point deadline);

// A seed printed with the test so that failures can be replayed (FLATFLEET_TEST_SEED=<n>).
uint32_t FreshSeed();

// Never-zero values whose magnitude varies from block to block (exercises the per-block scales).
std::vector<float> RandomActivations(int64_t size, std::mt19937& rng);

}  // namespace flatfleet::collectives::testing
