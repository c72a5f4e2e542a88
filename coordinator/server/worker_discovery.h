// Finds workers through DNS instead of a hand-written list: a Kubernetes headless Service's name
// resolves to one address per pod (publishNotReadyAddresses makes pods that are still loading
// visible), and each address hosts `workers_per_host` worker processes on consecutive ports
// (one pod with N GPUs runs one worker per GPU). `serve coordinator --worker-dns` re-resolves
// periodically and re-plans when the set changes and stays changed (WorkerSetWatcher).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::coordinator {

struct DnsWorkerTarget {
  std::string host;
  int port = 0;
  // Workers at port, port + 1, ..., port + workers_per_host - 1 on every resolved address.
  int workers_per_host = 1;
};

// "HOST:PORT" (HOST a DNS name or an IPv4 literal; "[v6]:PORT" for IPv6 literals).
absl::StatusOr<DnsWorkerTarget> ParseDnsWorkerTarget(std::string_view spec, int workers_per_host);

// The numeric addresses a host name resolves to (IPv6 ones without brackets), in any order.
using HostResolver = std::function<absl::StatusOr<std::vector<std::string>>(const std::string&)>;

// getaddrinfo (A and AAAA records, TCP).
absl::StatusOr<std::vector<std::string>> ResolveHostAddresses(const std::string& host);

// Every worker address ("IP:PORT", "[IPv6]:PORT") of the targets: addresses sorted numerically
// and deduplicated per target, the ports of one host together and in order (so that groups
// planned tp at a time keep one host's ranks together). A name that resolves to nothing is an
// error naming it.
absl::StatusOr<std::vector<std::string>> ResolveWorkers(const std::vector<DnsWorkerTarget>& targets,
                                                        const HostResolver& resolver);

// Decides when a re-resolved worker set replaces the one in use: only a set that differs from
// the current one and was seen `confirmations` times in a row (pods come and go one at a time
// during a rollout; re-planning on every step would reload groups needlessly). Failed
// resolutions keep the current set.
class WorkerSetWatcher {
 public:
  WorkerSetWatcher(std::vector<std::string> current, int confirmations);

  // Feeds one resolution; returns the new set when it is time to switch to it.
  std::optional<std::vector<std::string>> Observe(
      const absl::StatusOr<std::vector<std::string>>& resolved);

  const std::vector<std::string>& current() const { return current_; }

 private:
  std::vector<std::string> current_;
  std::vector<std::string> candidate_;
  int candidate_seen_ = 0;
  const int confirmations_;
};

}  // namespace flatfleet::coordinator
