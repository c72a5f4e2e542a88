#include "coordinator/server/worker_discovery.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::coordinator {
namespace {

constexpr int kMaxWorkersPerHost = 64;

// Sort key: IPv4 before IPv6, then by the address bytes (so 10.0.0.9 precedes 10.0.0.10).
std::pair<int, std::array<unsigned char, 16>> NumericKey(const std::string& address) {
  std::array<unsigned char, 16> bytes{};
  if (inet_pton(AF_INET, address.c_str(), bytes.data()) == 1) return {4, bytes};
  if (inet_pton(AF_INET6, address.c_str(), bytes.data()) == 1) return {6, bytes};
  return {99, bytes};
}

}  // namespace

absl::StatusOr<DnsWorkerTarget> ParseDnsWorkerTarget(std::string_view spec_view,
                                                     int workers_per_host) {
  const std::string spec(spec_view);
  const size_t colon = spec.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == spec.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--worker-dns '", spec, "': expected HOST:PORT"));
  }
  DnsWorkerTarget target;
  target.host = std::string(spec.substr(0, colon));
  if (target.host.front() == '[' && target.host.back() == ']') {
    target.host = target.host.substr(1, target.host.size() - 2);
  }
  if (!absl::SimpleAtoi(spec.substr(colon + 1), &target.port) || target.port < 1 ||
      target.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--worker-dns '", spec, "': the port must be 1..65535"));
  }
  if (workers_per_host < 1 || workers_per_host > kMaxWorkersPerHost ||
      target.port + workers_per_host - 1 > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--workers-per-host ", workers_per_host,
                                                   ": must be 1..", kMaxWorkersPerHost,
                                                   " with every port <= 65535"));
  }
  target.workers_per_host = workers_per_host;
  return target;
}

absl::StatusOr<std::vector<std::string>> ResolveHostAddresses(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* results = nullptr;
  const int error = getaddrinfo(host.c_str(), nullptr, &hints, &results);
  if (error != 0) {
    return absl::UnavailableError(
        absl::StrCat("resolving '", host, "' failed: ", gai_strerror(error)));
  }
  std::vector<std::string> addresses;
  for (const addrinfo* entry = results; entry != nullptr; entry = entry->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* raw = nullptr;
    if (entry->ai_family == AF_INET) {
      raw = &reinterpret_cast<const sockaddr_in*>(entry->ai_addr)->sin_addr;
    } else if (entry->ai_family == AF_INET6) {
      raw = &reinterpret_cast<const sockaddr_in6*>(entry->ai_addr)->sin6_addr;
    }
    if (raw != nullptr && inet_ntop(entry->ai_family, raw, text, sizeof(text)) != nullptr) {
      addresses.emplace_back(text);
    }
  }
  freeaddrinfo(results);
  return addresses;
}

absl::StatusOr<std::vector<std::string>> ResolveWorkers(const std::vector<DnsWorkerTarget>& targets,
                                                        const HostResolver& resolver) {
  std::vector<std::string> workers;
  for (const DnsWorkerTarget& target : targets) {
    absl::StatusOr<std::vector<std::string>> addresses = resolver(target.host);
    if (!addresses.ok()) return addresses.status();
    std::vector<std::string> hosts = *std::move(addresses);
    std::sort(hosts.begin(), hosts.end(), [](const std::string& a, const std::string& b) {
      return NumericKey(a) < NumericKey(b);
    });
    hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
    if (hosts.empty()) {
      return absl::UnavailableError(absl::StrCat("'", target.host, "' resolves to no address"));
    }
    for (const std::string& host : hosts) {
      const bool v6 = host.find(':') != std::string::npos;
      for (int i = 0; i < target.workers_per_host; ++i) {
        workers.push_back(absl::StrCat(v6 ? "[" : "", host, v6 ? "]" : "", ":", target.port + i));
      }
    }
  }
  return workers;
}

WorkerSetWatcher::WorkerSetWatcher(std::vector<std::string> current, int confirmations)
    : current_(std::move(current)), confirmations_(std::max(confirmations, 1)) {}

std::optional<std::vector<std::string>> WorkerSetWatcher::Observe(
    const absl::StatusOr<std::vector<std::string>>& resolved) {
  if (!resolved.ok() || *resolved == current_) {
    // A DNS hiccup is no reason to drop workers; a return to the current set cancels a switch.
    if (resolved.ok()) candidate_seen_ = 0;
    return std::nullopt;
  }
  if (candidate_seen_ > 0 && *resolved == candidate_) {
    ++candidate_seen_;
  } else {
    candidate_ = *resolved;
    candidate_seen_ = 1;
  }
  if (candidate_seen_ < confirmations_) return std::nullopt;
  current_ = std::move(candidate_);
  candidate_ = {};
  candidate_seen_ = 0;
  return current_;
}

}  // namespace flatfleet::coordinator
