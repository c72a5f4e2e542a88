// A child process whose stdout we read line by line: `flatfleet demo` starts its coordinator and
// workers with it, and the end-to-end tests start real `flatfleet` processes. Children die with
// their parent (PR_SET_PDEATHSIG), so a crashed parent leaves nothing running.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace flatfleet {

class ChildProcess {
 public:
  struct Options {
    std::string log_path;  // stderr is appended here (empty: inherited)
    int parent_death_signal = SIGKILL;
  };

  // Runs `argv` (argv[0] is the executable's path, e.g. "/proc/self/exe") with stdout on a pipe.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::vector<std::string>& argv,
                                                             const Options& options);
  ~ChildProcess();  // SIGKILLs and reaps a child still running.

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // The rest of the next stdout line that starts with `prefix`, e.g. "listening on "; earlier
  // lines are skipped.
  absl::StatusOr<std::string> WaitForLine(const std::string& prefix, absl::Duration timeout);

  // Sends `signal`, then waits up to `timeout` for the exit. Returns the wait status.
  absl::StatusOr<int> SignalAndWait(int signal, absl::Duration timeout);

  // SIGTERM, then SIGKILL if it has not exited within `grace`. Returns the exit code (128 +
  // signal when killed by one), or -1 when it was not running.
  int Stop(absl::Duration grace);

  pid_t pid() const { return pid_; }

 private:
  ChildProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_(stdout_fd) {}

  pid_t pid_;
  int stdout_;
  std::string buffered_;
};

}  // namespace flatfleet
