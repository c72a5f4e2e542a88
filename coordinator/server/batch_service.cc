#include "coordinator/server/batch_service.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/batch_input_parser.h"
#include "coordinator/batch_output_line.h"
#include "coordinator/bounded_line_reader.h"
#include "coordinator/server/api_input_checks.h"
#include "coordinator/server/work_conversion.h"

namespace flatfleet::coordinator {
namespace {

grpc::Status UploadTooLarge(uint64_t limit) {
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      absl::StrCat("the batch input exceeds the coordinator's limit of ", limit,
                                   " bytes (--max-upload-bytes); split it into several batches"));
}

v1::BatchState ToBatchState(JobState state) {
  switch (state) {
    case JobState::kValidating:
      return v1::BATCH_STATE_VALIDATING;
    case JobState::kInProgress:
      return v1::BATCH_STATE_IN_PROGRESS;
    case JobState::kFinalizing:
      return v1::BATCH_STATE_FINALIZING;
    case JobState::kCompleted:
      return v1::BATCH_STATE_COMPLETED;
    case JobState::kFailed:
      return v1::BATCH_STATE_FAILED;
    case JobState::kCancelling:
      return v1::BATCH_STATE_CANCELLING;
    case JobState::kCancelled:
      return v1::BATCH_STATE_CANCELLED;
  }
  return v1::BATCH_STATE_UNSPECIFIED;
}

// True when `path` is `dir` or lies below it (both already canonical).
bool IsInside(const std::filesystem::path& path, const std::filesystem::path& dir) {
  auto [dir_end, path_it] = std::mismatch(dir.begin(), dir.end(), path.begin(), path.end());
  return dir_end == dir.end();
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

v1::Batch ToBatchProto(const JobRecord& job) {
  v1::Batch batch;
  batch.set_id(job.id);
  batch.set_model(job.options.model);
  batch.set_state(ToBatchState(job.state));
  batch.mutable_request_counts()->set_total(static_cast<uint64_t>(job.counts.total));
  batch.mutable_request_counts()->set_completed(static_cast<uint64_t>(job.counts.completed));
  batch.mutable_request_counts()->set_failed(static_cast<uint64_t>(job.counts.failed));
  batch.mutable_request_counts()->set_invalid(static_cast<uint64_t>(job.counts.invalid));
  batch.mutable_request_counts()->set_cancelled(static_cast<uint64_t>(job.counts.cancelled));
  batch.set_error(job.error);
  batch.set_created_at_unix_ms(job.created_at_ms);
  batch.set_updated_at_unix_ms(job.updated_at_ms);
  for (const auto& [key, value] : job.options.metadata) (*batch.mutable_metadata())[key] = value;
  return batch;
}

BatchServiceImpl::BatchServiceImpl(JobStore* store, Scheduler* scheduler,
                                   BatchServiceOptions options)
    : store_(store), scheduler_(scheduler), options_(std::move(options)) {}

absl::StatusOr<std::string> BatchServiceImpl::ResolveInputPath(const std::string& path) const {
  namespace fs = std::filesystem;
  std::error_code error;
  // Canonical paths resolve "..", and symlinks, before the containment check.
  const fs::path file = fs::weakly_canonical(fs::path(path), error);
  if (!error && fs::path(path).is_absolute()) {
    for (const std::string& dir : options_.input_dirs) {
      const fs::path root = fs::weakly_canonical(fs::path(dir), error);
      if (!error && IsInside(file, root)) return file.string();
    }
  }
  return absl::PermissionDeniedError(
      absl::StrCat("input_path must be an absolute path inside the coordinator's input "
                   "directories (--input-dir): ",
                   path));
}

grpc::Status BatchServiceImpl::CreateBatch(grpc::ServerContext* context,
                                           grpc::ServerReader<v1::CreateBatchRequest>* reader,
                                           v1::CreateBatchResponse* response) {
  v1::CreateBatchRequest message;
  if (!reader->Read(&message) || !message.has_options()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first CreateBatch message must carry options");
  }
  const v1::BatchOptions options = message.options();
  if (absl::Status checked = CheckBatchOptions(options); !checked.ok()) {
    return ToGrpcStatus(checked);
  }
  if (options.model() != scheduler_->model().name) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("unknown model '", options.model(), "'; this coordinator serves '",
                     scheduler_->model().name, "'"));
  }
  BatchInputLimits limits = options_.input_limits;
  limits.expected_model = options.model();
  BatchInputParser parser(limits);
  if (!options.input_path().empty()) {
    absl::StatusOr<std::string> path = ResolveInputPath(options.input_path());
    if (!path.ok()) return ToGrpcStatus(path.status());
    std::ifstream file(*path, std::ios::binary);
    if (!file) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("cannot read input_path ", options.input_path()));
    }
    std::error_code size_error;
    const uintmax_t size = std::filesystem::file_size(*path, size_error);
    if (!size_error && size > options_.max_upload_bytes) {
      return UploadTooLarge(options_.max_upload_bytes);
    }
    // Lines over the limit are skipped to their end, never held whole.
    BoundedLineReader reader_of_file(file, limits.max_line_bytes);
    BoundedLine line;
    uint64_t read_bytes = 0;
    while (reader_of_file.Next(line)) {
      read_bytes += line.bytes + 1;
      if (read_bytes > options_.max_upload_bytes + 1)
        return UploadTooLarge(options_.max_upload_bytes);
      if (line.oversized) {
        parser.AddOversizedLine(line.bytes);
      } else {
        parser.AddLine(line.text);
      }
    }
    if (reader_of_file.failed()) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS,
                          absl::StrCat("error reading input_path ", options.input_path()));
    }
    // Only an end message announcing no lines may follow.
    while (reader->Read(&message)) {
      if (!message.has_end() || message.end().line_count() != 0) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "no lines may follow options that name an input_path");
      }
    }
  } else {
    uint64_t upload_bytes = 0;
    uint64_t lines_received = 0;
    std::optional<uint64_t> lines_announced;
    while (reader->Read(&message)) {
      if (lines_announced) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "nothing may follow the CreateBatch end message");
      }
      switch (message.part_case()) {
        case v1::CreateBatchRequest::kLines:
          for (const std::string& line : message.lines().lines()) {
            upload_bytes += line.size() + 1;  // As a file: with its newline.
            if (upload_bytes > options_.max_upload_bytes) {
              return UploadTooLarge(options_.max_upload_bytes);
            }
            ++lines_received;
            parser.AddLine(line);
          }
          break;
        case v1::CreateBatchRequest::kOversizedLine:
          ++lines_received;
          parser.AddOversizedLine(message.oversized_line().bytes());
          break;
        case v1::CreateBatchRequest::kEnd:
          lines_announced = message.end().line_count();
          break;
        default:
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "only the first CreateBatch message may carry options");
      }
    }
    // Read() is false both at the end of the upload and when a message could not be received;
    // a client that sent `end` tells the two apart, so a batch never silently loses lines.
    if (lines_announced && *lines_announced != lines_received) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS,
                          absl::StrCat("the upload announced ", *lines_announced, " lines but ",
                                       lines_received, " arrived; no batch was created"));
    }
  }
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "upload cancelled");
  ParsedBatch parsed = std::move(parser).Finish();
  // Every invalid line is reported (up to the cap); unless the upload as a whole is refused,
  // each also becomes a failed result of the job while the valid lines run (docs/API.md).
  for (const LineError& error : parsed.errors) {
    v1::LineError* out = response->add_errors();
    out->set_line(static_cast<uint64_t>(error.line_number));
    out->set_field(error.field);
    out->set_message(error.message);
  }
  response->set_errors_omitted(parsed.error_count - parsed.errors.size());
  if (parsed.too_many_lines) return grpc::Status::OK;  // No batch: over the line limit.
  if (parsed.requests.empty() && parsed.invalid_lines.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the batch has no request lines");
  }
  JobOptions job_options;
  job_options.model = options.model();
  job_options.max_attempts = options.max_attempts() > 0 ? static_cast<int>(options.max_attempts())
                                                        : options_.default_max_attempts;
  job_options.metadata.insert(options.metadata().begin(), options.metadata().end());
  job_options.idempotency_key = options.idempotency_key();
  absl::StatusOr<JobRecord> job =
      store_->CreateJob(job_options, parsed.requests, parsed.invalid_lines);
  if (!job.ok() && store_->StorageFailure()) {
    // Retryable: nothing was stored (one transaction), and the disk may be freed.
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("the coordinator cannot store new batches now (job store "
                                     "full or failing); nothing was created, retry later: ",
                                     job.status().message()));
  }
  if (!job.ok()) return ToGrpcStatus(job.status());
  if (!parsed.requests.empty()) scheduler_->WakeAll();
  *response->mutable_batch() = ToBatchProto(*job);
  return grpc::Status::OK;
}

grpc::Status BatchServiceImpl::GetBatch(grpc::ServerContext* context,
                                        const v1::GetBatchRequest* request, v1::Batch* response) {
  absl::StatusOr<JobRecord> job = store_->GetJob(request->batch_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = ToBatchProto(*job);
  return grpc::Status::OK;
}

grpc::Status BatchServiceImpl::ListBatches(grpc::ServerContext* context,
                                           const v1::ListBatchesRequest* request,
                                           v1::ListBatchesResponse* response) {
  uint32_t page_size = request->page_size() == 0
                           ? options_.default_page_size
                           : std::min(request->page_size(), options_.max_page_size);
  std::optional<int64_t> before;
  if (!request->page_token().empty()) {
    const std::string& token = request->page_token();
    int64_t position = 0;
    auto [end, error] = std::from_chars(token.data(), token.data() + token.size(), position);
    if (error != std::errc() || end != token.data() + token.size()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "invalid page_token");
    }
    before = position;
  }
  absl::StatusOr<std::vector<JobRecord>> jobs =
      store_->ListJobs(static_cast<int>(page_size), before);
  if (!jobs.ok()) return ToGrpcStatus(jobs.status());
  for (const JobRecord& job : *jobs) *response->add_batches() = ToBatchProto(job);
  if (jobs->size() == page_size) {
    response->set_next_page_token(absl::StrCat(jobs->back().position));
  }
  return grpc::Status::OK;
}

grpc::Status BatchServiceImpl::CancelBatch(grpc::ServerContext* context,
                                           const v1::CancelBatchRequest* request,
                                           v1::Batch* response) {
  absl::StatusOr<CancelReport> report = store_->CancelJob(request->batch_id());
  if (!report.ok()) return ToGrpcStatus(report.status());
  scheduler_->StopJob(request->batch_id(), report->in_flight);
  *response = ToBatchProto(report->job);
  return grpc::Status::OK;
}

grpc::Status BatchServiceImpl::StreamResults(grpc::ServerContext* context,
                                             const v1::StreamResultsRequest* request,
                                             grpc::ServerWriter<v1::BatchResult>* writer) {
  constexpr int kResultsPerRead = 256;
  if (absl::Status checked = CheckStartSequence(request->start_sequence()); !checked.ok()) {
    return ToGrpcStatus(checked);
  }
  absl::StatusOr<JobRecord> job = store_->GetJob(request->batch_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  int64_t next = static_cast<int64_t>(request->start_sequence());
  while (true) {
    // Read the state before the results, so that a job seen finished has all its results.
    absl::StatusOr<JobRecord> state = store_->GetJob(request->batch_id());
    if (!state.ok()) return ToGrpcStatus(state.status());
    const bool finished = IsTerminal(state->state);
    while (true) {
      absl::StatusOr<std::vector<StoredResult>> results =
          store_->ReadResults(request->batch_id(), next, kResultsPerRead);
      if (!results.ok()) return ToGrpcStatus(results.status());
      for (const StoredResult& stored : *results) {
        absl::StatusOr<v1::BatchResult> result = ToBatchResultProto(stored);
        if (!result.ok()) return ToGrpcStatus(result.status());
        absl::StatusOr<std::string> line =
            RenderOpenAiLine(request->batch_id(), stored, state->expired_at_ms > 0);
        if (!line.ok()) return ToGrpcStatus(line.status());
        result->set_output_line(*std::move(line));
        if (!writer->Write(*result)) {
          return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
        }
        next = stored.sequence + 1;
      }
      if (results->size() < kResultsPerRead) break;
    }
    if (!request->follow() || finished) return grpc::Status::OK;
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    if (shutting_down_) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator shutting down; resume later");
    }
    absl::SleepFor(options_.follow_poll_interval);
  }
}

grpc::Status BatchServiceImpl::Generate(grpc::ServerContext* context,
                                        const v1::GenerateRequest* request,
                                        v1::GenerateResponse* response) {
  if (request->model() != scheduler_->model().name) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("unknown model '", request->model(), "'"));
  }
  if (absl::Status checked = CheckSamplingNumbers(request->body().sampling()); !checked.ok()) {
    return ToGrpcStatus(checked);
  }
  // The same validation and defaults as a batch line.
  absl::StatusOr<BatchRequestLine> line = ParseStoredBody(RequestBodyToJson(request->body()));
  if (!line.ok()) return ToGrpcStatus(line.status());
  absl::Duration timeout = options_.generate_timeout;
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    timeout = std::min(timeout, absl::FromChrono(context->deadline()) - absl::Now());
  }
  absl::StatusOr<v1::Response> generated = scheduler_->Generate(ToRequestBodyProto(*line), timeout);
  if (!generated.ok()) return ToGrpcStatus(generated.status());
  *response->mutable_response() = *std::move(generated);
  return grpc::Status::OK;
}

}  // namespace flatfleet::coordinator
