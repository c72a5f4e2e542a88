#include "tests/collectives/collectives_test_support.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <memory>
#include <thread>

#include "gtest/gtest.h"
#include "tests/quant/test_random.h"
#include "worker/collectives/file_store.h"
#include "worker/collectives/gloo_communicator.h"

namespace flatfleet::collectives::testing {

std::string MakeTempDirectory() {
  std::string path = "/tmp/flatfleet_collectives_XXXXXX";
  if (mkdtemp(path.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
  return path;
}

void RunRanksAsThreads(int size, const std::function<void(Communicator&)>& body,
                       std::chrono::milliseconds timeout) {
  const std::string directory = MakeTempDirectory();
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < size; ++rank) {
    ranks.emplace_back([&, rank] {
      FileStoreWithTimeout store(directory, timeout);
      GlooCommunicatorOptions options;
      options.rank = rank;
      options.size = size;
      options.timeout = timeout;
      auto communicator = GlooCommunicator::Create(options, store);
      ASSERT_TRUE(communicator.ok()) << communicator.status();
      // Until every rank has finished the rendezvous, none may close its sockets: a body that
      // returns at once (a refused load) would otherwise make a slower peer's Create fail with
      // "connection closed by peer" under load.
      const absl::Status started = (*communicator)->Barrier();
      ASSERT_TRUE(started.ok()) << started;
      body(**communicator);
    });
  }
  for (std::thread& rank : ranks) rank.join();
  std::system(("rm -rf " + directory).c_str());
}

pid_t ForkChild(const std::function<int()>& body) {
  const pid_t child = fork();
  if (child == 0) _exit(body());
  return child;
}

int WaitForChild(pid_t child, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    int status = 0;
    const pid_t done = waitpid(child, &status, WNOHANG);
    if (done == child) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

uint32_t FreshSeed() {
  // FLATFLEET_TEST_SEED replays a printed seed.
  const uint32_t seed = static_cast<uint32_t>(quant::test_util::FreshSeed());
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  std::printf("[ seed     ] %u\n", seed);
  return seed;
}

std::vector<float> RandomActivations(int64_t size, std::mt19937& rng) {
  std::uniform_real_distribution<float> value(0.05f, 1.0f);
  std::uniform_real_distribution<float> log_magnitude(-3.0f, 3.0f);
  std::bernoulli_distribution negative(0.5);
  std::vector<float> values(size);
  float magnitude = 1.0f;
  for (int64_t i = 0; i < size; ++i) {
    if (i % 97 == 0) magnitude = std::exp(log_magnitude(rng));  // drifts across block borders
    values[i] = (negative(rng) ? -1.0f : 1.0f) * value(rng) * magnitude;
  }
  return values;
}

}  // namespace flatfleet::collectives::testing
