// Tuning of the scheduler that feeds worker groups.
#pragma once

#include <cstdint>

#include "absl/time/time.h"
#include "security/transport_security.h"

namespace flatfleet::coordinator {

struct SchedulerOptions {
  // Requests dispatched to one group and not yet answered; bounds memory and gives
  // backpressure, while keeping enough queued for the worker's continuous batching.
  int in_flight_window = 32;
  // Lease on claimed requests. A broken stream (or a coordinator restart) returns work at once;
  // the lease covers a worker that stalls without disconnecting: once it expires the sweeper
  // returns the request to pending (spending an attempt) and the session cancels it on the
  // worker. It must outlast the longest generation, which would otherwise be cut short.
  int64_t lease_ms = 30 * 60 * 1000;
  // A stream whose worker sends heartbeats (every second) is taken as lost when nothing arrives
  // on it for `liveness_timeout` (a stopped or hung process that keeps its connection), or
  // when its engine makes no progress for `progress_timeout` while it has work; its requests
  // are re-dispatched (an attempt spent) and the group waits a back-off (from
  // stall_backoff_initial, doubling to stall_backoff_max while it keeps stalling) before it
  // serves again. Streams of workers that send no heartbeats rely on the lease alone.
  absl::Duration liveness_timeout = absl::Seconds(10);
  absl::Duration progress_timeout = absl::Seconds(120);
  absl::Duration stall_backoff_initial = absl::Seconds(1);
  absl::Duration stall_backoff_max = absl::Seconds(60);
  // How often expired leases are looked for.
  absl::Duration lease_sweep_interval = absl::Seconds(5);
  // How often results the job store refused (disk full) are offered to it again; no new work is
  // claimed meanwhile.
  absl::Duration store_retry_interval = absl::Milliseconds(200);
  // How often an idle group looks for new work when nothing wakes it.
  absl::Duration poll_interval = absl::Milliseconds(50);
  absl::Duration reconnect_backoff_initial = absl::Milliseconds(50);
  absl::Duration reconnect_backoff_max = absl::Seconds(2);
  absl::Duration health_timeout = absl::Seconds(3);
  absl::Duration load_shard_timeout = absl::Minutes(10);
  // Tensor-parallel groups (tp > 1): INT8-compressed all-reduces (off: plain FP32, exact), and
  // how long a rank waits for its peers to join or answer a collective before the group fails.
  bool compress_all_reduce = true;
  absl::Duration group_timeout = absl::Seconds(30);
  // How often the queue-depth and jobs-by-state gauges are refreshed from the store.
  absl::Duration metrics_refresh_interval = absl::Seconds(1);
  // How channels to workers are secured (TLS, client certificate, cluster secret).
  security::ChannelSecurity worker_channel;
  // Largest gRPC message sent to or received from a worker (a result with long text and its
  // token ids); the serve command sets it to --max-message-bytes.
  int worker_max_message_bytes = 16 << 20;
};

}  // namespace flatfleet::coordinator
