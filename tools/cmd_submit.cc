// `flatfleet submit FILE --model NAME`: uploads an OpenAI-Batch JSONL file to the coordinator
// and prints the batch id. Invalid lines are listed on stderr; they become failed results while
// the valid lines run. Exit 1 when no batch was created or it failed (every line invalid).
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/server/batch_client.h"
#include "tools/commands.h"
#include "tools/security_options.h"

namespace flatfleet::tools {
namespace {

struct SubmitOptions {
  std::string file;
  std::string model;
  std::string coordinator = coordinator::kDefaultCoordinatorAddress;
  security::ApiClientFlags security;
  std::map<std::string, std::string> metadata;
  std::string idempotency_key;
  uint32_t max_attempts = 0;
};

int RunSubmit(const SubmitOptions& options) {
  absl::StatusOr<std::vector<std::string>> lines = coordinator::ReadJsonlLines(options.file);
  if (!lines.ok()) {
    std::fprintf(stderr, "flatfleet submit: %s\n", std::string(lines.status().message()).c_str());
    return 1;
  }
  auto client = ConnectToCoordinator(options.coordinator, options.security);
  if (!client.ok()) {
    std::fprintf(stderr, "flatfleet submit: %s\n", std::string(client.status().message()).c_str());
    return 1;
  }
  v1::BatchOptions batch_options;
  batch_options.set_model(options.model);
  batch_options.set_max_attempts(options.max_attempts);
  batch_options.mutable_metadata()->insert(options.metadata.begin(), options.metadata.end());
  batch_options.set_idempotency_key(options.idempotency_key);
  absl::StatusOr<v1::CreateBatchResponse> response = (*client)->Submit(batch_options, *lines);
  if (!response.ok()) {
    std::fprintf(stderr, "flatfleet submit: %s\n",
                 std::string(response.status().message()).c_str());
    return 1;
  }
  for (const v1::LineError& error : response->errors()) {
    std::fprintf(stderr, "%s:%llu: %s%s%s\n", options.file.c_str(),
                 static_cast<unsigned long long>(error.line()), error.field().c_str(),
                 error.field().empty() ? "" : ": ", error.message().c_str());
  }
  if (response->errors_omitted() > 0) {
    std::fprintf(stderr, "... and %llu more invalid lines\n",
                 static_cast<unsigned long long>(response->errors_omitted()));
  }
  if (!response->has_batch()) {
    std::fprintf(stderr, "flatfleet submit: no batch created\n");
    return 1;
  }
  const v1::Batch& batch = response->batch();
  if (batch.request_counts().invalid() > 0) {
    std::fprintf(stderr, "flatfleet submit: %llu invalid line(s) will be failed results\n",
                 static_cast<unsigned long long>(batch.request_counts().invalid()));
  }
  std::printf("%s\n", batch.id().c_str());
  if (batch.state() == v1::BATCH_STATE_FAILED) {
    std::fprintf(stderr, "flatfleet submit: batch failed: %s\n", batch.error().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

CommandRunner RegisterSubmitCommand(CLI::App& app) {
  auto options = std::make_shared<SubmitOptions>();
  CLI::App* cmd = app.add_subcommand(
      "submit",
      "Upload a batch (OpenAI Batch JSONL) and print its id; invalid lines are listed and "
      "become failed results while the valid lines run");
  cmd->add_option("file", options->file, "JSONL input, one request per line")->required();
  cmd->add_option("--model", options->model, "Model name the coordinator serves")->required();
  cmd->add_option("--coordinator", options->coordinator, "Coordinator address HOST:PORT")
      ->capture_default_str();
  AddApiClientOptions(cmd, &options->security);
  cmd->add_option("--metadata", options->metadata, "KEY=VALUE pairs kept with the batch")
      ->delimiter(',');
  cmd->add_option("--idempotency-key", options->idempotency_key,
                  "A key of your choosing (at most 256 bytes): submitting again with the same key "
                  "returns the batch the first submission created, so a submit whose outcome is "
                  "unknown (a broken connection) can be retried safely");
  cmd->add_option("--max-attempts", options->max_attempts,
                  "Dispatches per request before it fails (0: the server default)");
  return [options] { return RunSubmit(*options); };
}

}  // namespace flatfleet::tools
