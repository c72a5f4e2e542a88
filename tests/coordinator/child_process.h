// Helpers for end-to-end tests with real processes of the `flatfleet` binary (ChildProcess:
// spawn one, read its "listening on HOST:PORT" line, kill and reap it), free ports, temporary
// directories and plain HTTP GETs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/child_process.h"

namespace flatfleet::testing_util {

// The shared implementation (common/child_process.h); tests spawn with SIGKILL on parent death.
using ChildProcess = ::flatfleet::ChildProcess;

// A TCP port on 127.0.0.1 that was free a moment ago (for programs that cannot take port 0).
absl::StatusOr<int> PickFreePort();

// A fresh directory under the test's temporary directory.
std::string MakeTempDir(const std::string& name);

// One HTTP/1.0 GET on 127.0.0.1:`port`; returns the body of a 200 response.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path, absl::Duration timeout);

}  // namespace flatfleet::testing_util
