// A thin client of the coordinator's BatchService, for the CLI and the demo.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flatfleet/v1/batch.grpc.pb.h"
#include "security/transport_security.h"

namespace flatfleet::coordinator {

// Where the CLI looks for a coordinator unless told otherwise (docs: `serve coordinator`).
inline constexpr char kDefaultCoordinatorAddress[] = "127.0.0.1:7070";

// Longest line Submit sends; a longer one is sent by size only and becomes a failed result.
inline constexpr size_t kMaxUploadLineBytes = size_t{8} << 20;
// Largest message the client receives (a result line with its text and token ids): above the
// coordinator's default --max-message-bytes, so the server's limit is the one that applies.
inline constexpr int kClientMaxReceiveBytes = 64 << 20;

class BatchClient {
 public:
  // Fails when no coordinator answers at `address` within `connect_timeout`.
  static absl::StatusOr<std::unique_ptr<BatchClient>> Connect(
      const std::string& address, absl::Duration connect_timeout = absl::Seconds(5));
  // The same over TLS and/or with a bearer token, as `security` says.
  static absl::StatusOr<std::unique_ptr<BatchClient>> Connect(
      const std::string& address, const security::ChannelSecurity& security,
      absl::Duration connect_timeout = absl::Seconds(5));

  // Uploads the lines. Invalid lines are listed in the response's errors and become failed
  // results of the batch; the batch is unset only when the upload was refused as a whole.
  absl::StatusOr<v1::CreateBatchResponse> Submit(const v1::BatchOptions& options,
                                                 const std::vector<std::string>& lines);
  absl::StatusOr<v1::Batch> Get(const std::string& batch_id);
  absl::StatusOr<v1::Batch> Cancel(const std::string& batch_id);
  // Calls `on_result` for each result from `start_sequence` on; with `follow`, until the
  // batch ends. A false return from `on_result` stops early.
  absl::Status StreamResults(const std::string& batch_id, uint64_t start_sequence, bool follow,
                             const std::function<bool(const v1::BatchResult&)>& on_result);

 private:
  explicit BatchClient(std::unique_ptr<v1::BatchService::Stub> stub) : stub_(std::move(stub)) {}

  std::unique_ptr<v1::BatchService::Stub> stub_;
};

// Reads a JSONL file into lines (without '\n').
absl::StatusOr<std::vector<std::string>> ReadJsonlLines(const std::string& path);

// One line of OpenAI-Batch output JSONL for a streamed result (see docs/API.md): the server's
// output_line, or (from a server that sends none) a line rebuilt from the result.
std::string FormatBatchResultLine(const v1::BatchResult& result, const std::string& model);

// "completed", "in_progress", ... as in the OpenAI Batch API.
std::string BatchStateName(v1::BatchState state);

}  // namespace flatfleet::coordinator
