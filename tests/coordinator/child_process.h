// Real processes of the `flatfleet` binary for end-to-end tests: spawn one, read the
// "listening on HOST:PORT" (and "metrics on HOST:PORT") lines it prints, kill it (SIGKILL for
// crash tests) and reap it. Children die with the test process (PR_SET_PDEATHSIG), so a failed
// test leaves nothing running.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace flatfleet::testing_util {

class ChildProcess {
 public:
  // Runs `argv` (argv[0] is the executable path) with stdout on a pipe and stderr appended to
  // `log_path`.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::vector<std::string>& argv,
                                                             const std::string& log_path);
  ~ChildProcess();  // Kills (SIGKILL) and reaps a child still running.

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // The rest of the next stdout line that starts with `prefix`, e.g. "listening on "; earlier
  // lines are skipped.
  absl::StatusOr<std::string> WaitForLine(const std::string& prefix, absl::Duration timeout);

  // Sends `signal`, then waits up to `timeout` for the exit. Returns the wait status.
  absl::StatusOr<int> SignalAndWait(int signal, absl::Duration timeout);

  pid_t pid() const { return pid_; }

 private:
  ChildProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_(stdout_fd) {}

  pid_t pid_;
  int stdout_;
  std::string buffered_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (for programs that cannot take port 0).
absl::StatusOr<int> PickFreePort();

// A fresh directory under the test's temporary directory.
std::string MakeTempDir(const std::string& name);

// One HTTP/1.0 GET on 127.0.0.1:`port`; returns the body of a 200 response.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path, absl::Duration timeout);

}  // namespace flatfleet::testing_util
