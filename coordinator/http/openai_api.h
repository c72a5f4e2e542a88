// The OpenAI-compatible HTTP API's handlers: files, batches, models, completions and chat
// completions, over the job store and the scheduler (reached through callbacks, so tests and
// the fuzz target drive them without workers). docs/HTTP_API.md describes every route.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/batch_input_limits.h"
#include "coordinator/http/file_store.h"
#include "coordinator/http/http_message.h"
#include "coordinator/job_store.h"
#include "flatfleet/v1/batch.pb.h"

namespace flatfleet::coordinator::http {

struct OpenAiApiOptions {
  std::string model;  // The served model's name.
  BatchInputLimits input_limits;
  // Bytes of one uploaded file; a larger upload is refused (413) before anything is stored.
  uint64_t max_file_bytes = uint64_t{256} << 20;
  int default_max_attempts = 3;
  absl::Duration generate_timeout = absl::Minutes(5);
  uint32_t default_page_size = 20;
  uint32_t max_page_size = 100;
  // GET /v1/files: OpenAI's default and largest page.
  uint32_t max_file_page_size = 10000;
  int64_t created_at_s = 0;  // Reported as the model's "created".
};

struct OpenAiApiBackend {
  JobStore* store = nullptr;
  FileStore* files = nullptr;
  // Runs one interactive request (Scheduler::Generate).
  std::function<absl::StatusOr<v1::Response>(const v1::RequestBody&, absl::Duration)> generate;
  // Runs one interactive request, passing each piece of text the worker releases to the
  // callback (Scheduler::Generate with a TextCallback). Streaming calls use it when set, one
  // event per piece; otherwise they get the whole text in one event once it is done. The
  // callback returns false once the client has gone: the backend then cancels the request
  // (nothing more is generated for it) and returns Cancelled.
  using StreamGenerate = std::function<absl::StatusOr<v1::Response>(
      const v1::RequestBody&, absl::Duration, const std::function<bool(const std::string&)>&)>;
  StreamGenerate stream_generate;
  // New pending work exists (Scheduler::WakeAll).
  std::function<void()> wake;
  // Stops a cancelled or expired job's running requests (Scheduler::StopJob).
  std::function<void(const std::string&, const std::vector<RequestKey>&)> stop_job;
  std::function<int64_t()> now_s;  // Unix seconds; the real clock when unset.
};

class OpenAiApi {
 public:
  OpenAiApi(OpenAiApiOptions options, OpenAiApiBackend backend);

  // Answers one request (routing by method and path). Never throws.
  HttpResponse Handle(const HttpRequest& request);

  // Expires the batches whose completion window has passed: their unfinished requests get
  // batch_expired lines in the error file. Called periodically by the server.
  void ExpireDueBatches();

  const OpenAiApiOptions& options() const { return options_; }

 private:
  HttpResponse Route(const HttpRequest& request);
  HttpResponse UploadFile(const HttpRequest& request);
  HttpResponse ListFiles(const HttpRequest& request);
  HttpResponse GetFile(const std::string& id);
  HttpResponse GetFileContent(const std::string& id);
  HttpResponse DeleteFile(const std::string& id);
  HttpResponse CreateBatch(const HttpRequest& request);
  HttpResponse GetBatch(const std::string& id);
  HttpResponse ListBatches(const HttpRequest& request);
  HttpResponse CancelBatch(const std::string& id);
  HttpResponse ListModels();
  HttpResponse GetModel(const std::string& id);
  HttpResponse Complete(const HttpRequest& request, bool chat);

  // The JSONL of a batch's output (successes) or error file, rendered from its results.
  absl::StatusOr<std::string> RenderResultFile(const JobRecord& job, bool errors);
  int64_t NowS() const;

  const OpenAiApiOptions options_;
  const OpenAiApiBackend backend_;
};

}  // namespace flatfleet::coordinator::http
