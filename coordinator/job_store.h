// Durable state of batch jobs: jobs, their requests and their results, in SQLite (WAL mode,
// synchronous=FULL). Every operation is one transaction, so a crash at any point leaves either
// all or none of it. Several JobStore objects (threads or processes) may share one file; claims
// take SQLite's write lock, so no request is handed out twice.
//
// Every error is an absl::Status whose message names the operation and the job.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "coordinator/batch_request.h"
#include "coordinator/job_types.h"
#include "coordinator/sqlite_database.h"

namespace flatfleet::coordinator {

// Tuning and test hooks for JobStore::Open.
struct JobStoreOptions {
  int busy_timeout_ms = 10'000;  // How long to wait for another writer.
  // Milliseconds since the epoch; replaceable so tests control lease expiry.
  std::function<int64_t()> clock_ms;
  // Called with a point's name inside transactions ("create_job.requests_inserted",
  // "record_result.result_inserted", "claim.requests_marked"); crash tests exit there.
  std::function<void(std::string_view point)> fault_hook;
  // Return requests left in flight to pending on open. Right for the coordinator, which owns
  // the file; wrong for a second JobStore opened while the first one has work out.
  bool recover_in_flight = true;
  // PRAGMA quick_check on open: a damaged file is refused instead of served (it reads every
  // page once, about a second per GiB).
  bool check_integrity = true;
  // Called with the operation's name whenever a read or write fails in the storage itself (disk
  // full, I/O error), e.g. to count it in a metric.
  std::function<void(std::string_view operation)> on_storage_failure;
};

class JobStore {
 public:
  using Options = JobStoreOptions;

  // Refuses a damaged file (DATA_LOSS naming it; see check_integrity). Creates the schema if
  // needed (upgrading a file of an older schema version in place; a
  // newer version is an error), then recovers from a crash (unless disabled in `options`):
  // requests left in flight go back to pending without spending an attempt, since the
  // coordinator, not the request, failed.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& path,
                                                        Options options = {});

  // A new job in state in_progress with all `requests` pending, atomically. Each of
  // `invalid_lines` (input lines that did not validate) is stored as a failed request with an
  // "invalid_request" error result, in the given order, ahead of any other result. A job of
  // invalid lines only is created failed, with `error` saying why. With an idempotency key that
  // an earlier job of the same model holds, returns that job and stores nothing (another
  // model's: FAILED_PRECONDITION).
  absl::StatusOr<JobRecord> CreateJob(const JobOptions& options,
                                      absl::Span<const BatchRequestLine> requests,
                                      absl::Span<const LineError> invalid_lines = {});
  absl::StatusOr<JobRecord> GetJob(std::string_view job_id);
  // Newest first; `before_position` continues from a previous page's last job.
  absl::StatusOr<std::vector<JobRecord>> ListJobs(int limit,
                                                  std::optional<int64_t> before_position = {});

  // Up to `max_requests` pending requests of in-progress jobs running `model`, oldest job
  // first, marked in flight for `worker` until now + lease_ms.
  absl::StatusOr<std::vector<ClaimedRequest>> ClaimPending(std::string_view model, int max_requests,
                                                           std::string_view worker,
                                                           int64_t lease_ms);

  // Like ClaimPending, but takes requests from the in-progress jobs of `model` in turn, one each
  // per round, starting after the job `cursor` last served, so a large job cannot starve a
  // small one. Updates `cursor`.
  absl::StatusOr<std::vector<ClaimedRequest>> ClaimPendingRoundRobin(std::string_view model,
                                                                     int max_requests,
                                                                     std::string_view worker,
                                                                     int64_t lease_ms,
                                                                     RoundRobinCursor& cursor);

  // Gives one in-flight request back without spending an attempt, e.g. after its worker
  // reported it cancelled: it is cancelled if its job is being cancelled, else pending again.
  // Returns false when the request was not in flight.
  absl::StatusOr<bool> ReleaseInFlight(const RequestKey& request, std::string_view reason);

  // Stores a request's result exactly once. Returns false (and changes nothing) when the
  // request already has a result or was cancelled, e.g. a retry racing a late answer.
  absl::StatusOr<bool> RecordResult(const RequestKey& request, const ResultRecord& result);

  // Puts requests back after their worker died. A request that has used its attempts fails
  // with an error result instead; one whose job is being cancelled is cancelled.
  absl::StatusOr<RequeueReport> RequeueWorker(std::string_view worker, std::string_view reason);
  // The same for requests whose lease ran out (a worker that stalled without disconnecting);
  // the coordinator's sweeper calls it periodically.
  absl::StatusOr<RequeueReport> RequeueExpiredLeases(std::string_view reason);

  // Pending requests are cancelled; in-flight ones are reported for the caller to stop. The job
  // is cancelled at once when nothing runs, else cancelling until the last one ends. Cancelling
  // a cancelled or cancelling job is a no-op; a completed or failed one is an error.
  absl::StatusOr<CancelReport> CancelJob(std::string_view job_id);
  // CancelJob for a job whose completion window passed: records when it expired first, so its
  // cancelled requests are reported as expired (batch_expired) and the job as expired.
  absl::StatusOr<CancelReport> ExpireJob(std::string_view job_id);
  // Unfinished jobs whose options.expires_at_ms is at or before now.
  absl::StatusOr<std::vector<std::string>> ListJobsPastExpiry();

  // Results with sequence >= from_sequence, in sequence order, at most `limit`.
  absl::StatusOr<std::vector<StoredResult>> ReadResults(std::string_view job_id,
                                                        int64_t from_sequence, int limit);

  // Caps the file at about `max_bytes` (PRAGMA max_page_count; 0 lifts the cap): writes that
  // would grow it further fail as a full disk would. For tests of disk-full handling.
  absl::Status SetSizeLimit(int64_t max_bytes);

  // A consistent copy of the store in a new file at `path` (VACUUM INTO), while it serves.
  absl::Status BackupTo(const std::string& path);

  // The latest storage failure (disk full, I/O error) when no write has succeeded since; unset
  // while the store works. The coordinator reports itself not ready while it is set.
  std::optional<std::string> StorageFailure() const;

  // How many in-flight requests Open() returned to pending.
  int64_t recovered_on_open() const { return recovered_on_open_; }

 private:
  JobStore(std::unique_ptr<SqliteDatabase> db, Options options)
      : db_(std::move(db)), options_(std::move(options)) {}

  int64_t NowMs() const;
  void Checkpoint(std::string_view point) const;
  // Prefixes `status` with the operation and job; remembers storage failures.
  absl::Status NoteFailure(const absl::Status& status, std::string_view operation,
                           std::string_view job_id);
  // Commits; a successful commit clears the remembered storage failure.
  absl::Status Committed(SqliteTransaction& transaction);

  // Helpers that run inside the caller's transaction.
  absl::StatusOr<JobRecord> ReadJob(std::string_view job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::Status UpdateJobState(std::string_view job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::StatusOr<int64_t> AppendResult(std::string_view job_id, int64_t line_number,
                                       ResultOutcome outcome, std::string_view output_line)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Requeues in-flight requests matching `condition` (SQL over the requests table, with
  // parameters bound by `bind` from ?1). Without `spend_attempt` the claim's attempt is given
  // back and the attempt limit is not applied.
  absl::StatusOr<RequeueReport> RequeueWhere(std::string_view condition,
                                             const std::function<void(SqliteStatement&)>& bind,
                                             std::string_view reason, bool spend_attempt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  // Marks `requests` (read as pending in this transaction) in flight for `worker`.
  absl::Status MarkClaimed(const std::vector<ClaimedRequest>& requests, std::string_view worker,
                           int64_t lease_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  absl::Mutex mutex_;  // One SQLite connection: one transaction at a time.
  std::unique_ptr<SqliteDatabase> db_ ABSL_GUARDED_BY(mutex_);
  const Options options_;
  int64_t recovered_on_open_ = 0;
  mutable absl::Mutex health_mutex_;
  std::optional<std::string> last_storage_failure_ ABSL_GUARDED_BY(health_mutex_);
  int64_t storage_failures_ ABSL_GUARDED_BY(health_mutex_) = 0;
};

}  // namespace flatfleet::coordinator
