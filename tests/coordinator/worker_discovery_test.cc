// Worker discovery through DNS: parsing --worker-dns, turning resolved addresses into an ordered
// worker list, and when a re-resolved set replaces the current one.
#include "coordinator/server/worker_discovery.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flatfleet::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

HostResolver FakeResolver(absl::flat_hash_map<std::string, std::vector<std::string>> records) {
  return [records](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
    auto found = records.find(host);
    if (found == records.end()) return absl::UnavailableError("no such host " + host);
    return found->second;
  };
}

TEST(ParseDnsWorkerTarget, AcceptsNamesAndLiterals) {
  absl::StatusOr<DnsWorkerTarget> name =
      ParseDnsWorkerTarget("flatfleet-worker.flatfleet.svc.cluster.local:7071", 8);
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(name->host, "flatfleet-worker.flatfleet.svc.cluster.local");
  EXPECT_EQ(name->port, 7071);
  EXPECT_EQ(name->workers_per_host, 8);
  absl::StatusOr<DnsWorkerTarget> v6 = ParseDnsWorkerTarget("[::1]:7071", 1);
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
}

TEST(ParseDnsWorkerTarget, RefusesBadSpecsNamingThem) {
  for (const char* spec : {"no-port", "host:", ":7071", "host:0", "host:65536", "host:x"}) {
    absl::StatusOr<DnsWorkerTarget> target = ParseDnsWorkerTarget(spec, 1);
    EXPECT_FALSE(target.ok()) << spec;
    EXPECT_THAT(target.status().message(), HasSubstr(spec));
  }
  EXPECT_FALSE(ParseDnsWorkerTarget("host:7071", 0).ok());
  EXPECT_FALSE(ParseDnsWorkerTarget("host:65535", 2).ok());  // The second port would overflow.
  EXPECT_TRUE(ParseDnsWorkerTarget("host:65534", 2).ok());
}

TEST(ResolveWorkers, OrdersAddressesNumericallyAndKeepsAHostsPortsTogether) {
  const HostResolver resolver =
      FakeResolver({{"workers", {"10.0.0.10", "10.0.0.9", "fd00::2", "10.0.0.9", "10.0.1.1"}}});
  absl::StatusOr<std::vector<std::string>> workers =
      ResolveWorkers({DnsWorkerTarget{"workers", 7071, 2}}, resolver);
  ASSERT_TRUE(workers.ok()) << workers.status();
  EXPECT_THAT(*workers,
              ElementsAre("10.0.0.9:7071", "10.0.0.9:7072", "10.0.0.10:7071", "10.0.0.10:7072",
                          "10.0.1.1:7071", "10.0.1.1:7072", "[fd00::2]:7071", "[fd00::2]:7072"));
}

TEST(ResolveWorkers, ConcatenatesTargetsInTheirOrder) {
  const HostResolver resolver = FakeResolver({{"b", {"10.0.0.1"}}, {"a", {"10.0.0.2"}}});
  absl::StatusOr<std::vector<std::string>> workers =
      ResolveWorkers({DnsWorkerTarget{"b", 7071, 1}, DnsWorkerTarget{"a", 8000, 1}}, resolver);
  ASSERT_TRUE(workers.ok()) << workers.status();
  EXPECT_THAT(*workers, ElementsAre("10.0.0.1:7071", "10.0.0.2:8000"));
}

TEST(ResolveWorkers, FailsOnAnEmptyOrUnresolvableName) {
  const HostResolver resolver = FakeResolver({{"empty", {}}});
  absl::StatusOr<std::vector<std::string>> empty =
      ResolveWorkers({DnsWorkerTarget{"empty", 7071, 1}}, resolver);
  EXPECT_FALSE(empty.ok());
  EXPECT_THAT(empty.status().message(), HasSubstr("'empty' resolves to no address"));
  absl::StatusOr<std::vector<std::string>> missing =
      ResolveWorkers({DnsWorkerTarget{"missing", 7071, 1}}, resolver);
  EXPECT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("missing"));
}

TEST(ResolveHostAddresses, ResolvesLocalhostThroughTheSystemResolver) {
  absl::StatusOr<std::vector<std::string>> addresses = ResolveHostAddresses("localhost");
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  bool loopback = false;
  for (const std::string& address : *addresses) {
    loopback = loopback || address == "127.0.0.1" || address == "::1";
  }
  EXPECT_TRUE(loopback) << "localhost resolved to " << addresses->size() << " addresses";
  absl::StatusOr<std::vector<std::string>> invalid =
      ResolveHostAddresses("no-such-host.invalid");  // RFC 6761: never resolves.
  EXPECT_FALSE(invalid.ok());
  EXPECT_THAT(invalid.status().message(), HasSubstr("no-such-host.invalid"));
}

TEST(WorkerSetWatcher, SwitchesOnlyToASetSeenOnConsecutiveResolutions) {
  const std::vector<std::string> two = {"10.0.0.1:7071", "10.0.0.2:7071"};
  const std::vector<std::string> three = {"10.0.0.1:7071", "10.0.0.2:7071", "10.0.0.3:7071"};
  const std::vector<std::string> one = {"10.0.0.1:7071"};
  WorkerSetWatcher watcher(two, /*confirmations=*/2);
  EXPECT_EQ(watcher.Observe(two), std::nullopt);
  EXPECT_EQ(watcher.Observe(three), std::nullopt);  // Seen once.
  EXPECT_EQ(watcher.Observe(one), std::nullopt);    // A different change restarts the count.
  EXPECT_EQ(watcher.Observe(three), std::nullopt);
  EXPECT_THAT(watcher.Observe(three), Optional(three));
  EXPECT_EQ(watcher.current(), three);
  EXPECT_EQ(watcher.Observe(three), std::nullopt);  // Already current.
}

TEST(WorkerSetWatcher, KeepsTheSetThroughResolutionFailuresAndCancelledChanges) {
  const std::vector<std::string> two = {"10.0.0.1:7071", "10.0.0.2:7071"};
  const std::vector<std::string> one = {"10.0.0.1:7071"};
  WorkerSetWatcher watcher(two, /*confirmations=*/2);
  EXPECT_EQ(watcher.Observe(absl::UnavailableError("dns down")), std::nullopt);
  EXPECT_EQ(watcher.Observe(one), std::nullopt);
  EXPECT_EQ(watcher.Observe(two), std::nullopt);  // Back to the current set: change dropped.
  EXPECT_EQ(watcher.Observe(one), std::nullopt);  // Counting starts over.
  EXPECT_EQ(watcher.current(), two);
  EXPECT_THAT(watcher.Observe(one), Optional(one));
}

TEST(WorkerSetWatcher, OneConfirmationSwitchesAtOnce) {
  WorkerSetWatcher watcher({"10.0.0.1:7071"}, /*confirmations=*/1);
  EXPECT_THAT(watcher.Observe(std::vector<std::string>{"10.0.0.2:7071"}),
              Optional(std::vector<std::string>{"10.0.0.2:7071"}));
}

}  // namespace
}  // namespace flatfleet::coordinator
