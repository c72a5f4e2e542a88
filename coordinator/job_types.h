// The records the job store keeps and hands out.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flatfleet::coordinator {

// As in the OpenAI Batch API (and batch.proto's BatchState).
enum class JobState {
  kValidating,
  kInProgress,
  kFinalizing,
  kCompleted,
  kFailed,
  kCancelling,
  kCancelled,
};
std::string_view JobStateName(JobState state);  // "in_progress", ...
std::optional<JobState> ParseJobState(std::string_view name);
bool IsTerminal(JobState state);

// pending -> in_flight -> succeeded | failed, or back to pending (requeued); pending or
// in_flight -> cancelled.
enum class RequestState { kPending, kInFlight, kSucceeded, kFailed, kCancelled };
std::string_view RequestStateName(RequestState state);

struct JobOptions {
  std::string model;
  int max_attempts = 3;  // Dispatches of one request before it fails.
  std::map<std::string, std::string> metadata;
  // When set, CreateJob with a key it has seen returns that job instead of creating another.
  std::string idempotency_key;
  // What the OpenAI HTTP API records with a batch (empty/0 for batches made over gRPC): its
  // endpoint URL, the uploaded file it came from, and when its completion window ends (at
  // which point its unfinished requests expire).
  std::string endpoint;
  std::string input_file_id;
  std::string completion_window;
  int64_t expires_at_ms = 0;
};

// Derived from the requests' states whenever read, so never out of step with them.
struct RequestCounts {
  int64_t total = 0;
  int64_t completed = 0;  // Succeeded.
  int64_t failed = 0;     // Including the invalid lines.
  int64_t invalid = 0;    // Lines rejected at upload: failed from the start, never dispatched.
  int64_t cancelled = 0;
  int64_t pending = 0;
  int64_t in_flight = 0;
};

struct JobRecord {
  std::string id;
  int64_t position = 0;  // Creation order; ListJobs pages by it.
  JobState state = JobState::kInProgress;
  JobOptions options;
  RequestCounts counts;
  std::string error;  // Why the job failed as a whole; empty otherwise.
  // When ExpireJob cancelled it because its completion window passed; 0 if it never expired.
  int64_t expired_at_ms = 0;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
};

struct RequestKey {
  std::string job_id;
  int64_t line_number = 0;
  bool operator==(const RequestKey&) const = default;
};

struct ClaimedRequest {
  RequestKey key;
  std::string custom_id;
  std::string body_json;
  int attempt = 0;  // 1 for the first dispatch.
};

enum class ResultOutcome { kSucceeded, kFailed };

struct ResultRecord {
  ResultOutcome outcome = ResultOutcome::kSucceeded;
  std::string output_line;  // One line of the job's JSONL output, without '\n'.
};

struct StoredResult {
  int64_t sequence = 0;  // Dense from 0 within a job, in recording order.
  int64_t line_number = 0;
  std::string custom_id;
  ResultOutcome outcome = ResultOutcome::kSucceeded;
  std::string output_line;
};

// Where JobStore::ClaimPendingRoundRobin left off: the position of the job it served last.
struct RoundRobinCursor {
  int64_t last_job_position = 0;
};

struct CancelReport {
  JobRecord job;
  // Running requests the caller should stop; their results (or requeue) finish the cancel.
  std::vector<RequestKey> in_flight;
};

struct RequeueReport {
  int64_t requeued = 0;   // Back to pending.
  int64_t failed = 0;     // Out of attempts: failed with an error result.
  int64_t cancelled = 0;  // Their job is being cancelled.
};

}  // namespace flatfleet::coordinator
