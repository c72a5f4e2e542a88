// `flatfleet results BATCH [-o FILE] [--errors-file FILE] [--follow]`: writes a batch's output as
// OpenAI-Batch JSONL, in completion order; with --errors-file the failed, cancelled and expired
// requests' lines go there instead (as OpenAI's output and error files split them). With --follow
// it waits for results until the batch ends, resuming the stream where it broke if the connection
// drops.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "coordinator/server/batch_client.h"
#include "tools/commands.h"
#include "tools/security_options.h"

namespace flatfleet::tools {
namespace {

struct ResultsOptions {
  std::string batch_id;
  std::string output;       // stdout when empty
  std::string errors_file;  // with the output when empty
  bool follow = false;
  uint64_t start = 0;
  std::string coordinator = coordinator::kDefaultCoordinatorAddress;
  security::ApiClientFlags security;
};

int RunResults(const ResultsOptions& options) {
  auto client = ConnectToCoordinator(options.coordinator, options.security);
  if (!client.ok()) {
    std::fprintf(stderr, "flatfleet results: %s\n", std::string(client.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<v1::Batch> batch = (*client)->Get(options.batch_id);
  if (!batch.ok()) {
    std::fprintf(stderr, "flatfleet results: %s\n", std::string(batch.status().message()).c_str());
    return 1;
  }
  FILE* out = stdout;
  if (!options.output.empty()) {
    out = std::fopen(options.output.c_str(), "wb");
    if (out == nullptr) {
      std::fprintf(stderr, "flatfleet results: cannot write %s\n", options.output.c_str());
      return 1;
    }
  }
  FILE* errors_out = out;
  if (!options.errors_file.empty()) {
    errors_out = std::fopen(options.errors_file.c_str(), "wb");
    if (errors_out == nullptr) {
      std::fprintf(stderr, "flatfleet results: cannot write %s\n", options.errors_file.c_str());
      if (out != stdout) std::fclose(out);
      return 1;
    }
  }
  uint64_t next = options.start;
  bool write_failed = false;
  auto write = [&](const v1::BatchResult& result) {
    const std::string line = coordinator::FormatBatchResultLine(result, batch->model()) + "\n";
    FILE* destination = result.has_error() ? errors_out : out;
    if (std::fwrite(line.data(), 1, line.size(), destination) != line.size()) {
      write_failed = true;
      return false;
    }
    next = result.sequence() + 1;
    return true;
  };
  absl::Status status = (*client)->StreamResults(options.batch_id, next, options.follow, write);
  // A following stream that broke (say, the coordinator restarted) resumes a bounded number of
  // times from the last result written.
  for (int retry = 0; options.follow && !write_failed && !status.ok() && retry < 30; ++retry) {
    absl::SleepFor(absl::Seconds(1));
    auto again = ConnectToCoordinator(options.coordinator, options.security);
    if (!again.ok()) continue;
    status = (*again)->StreamResults(options.batch_id, next, true, write);
  }
  if (errors_out != out && std::fclose(errors_out) != 0) write_failed = true;
  if (out != stdout && std::fclose(out) != 0) write_failed = true;
  if (write_failed) {
    std::fprintf(stderr, "flatfleet results: write error\n");
    return 1;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "flatfleet results: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace

CommandRunner RegisterResultsCommand(CLI::App& app) {
  auto options = std::make_shared<ResultsOptions>();
  CLI::App* cmd = app.add_subcommand(
      "results", "Write a batch's results as OpenAI Batch output JSONL (completion order)");
  cmd->add_option("batch", options->batch_id, "Batch id")->required();
  cmd->add_option("-o,--output", options->output, "Output file (default: stdout)");
  cmd->add_option("--errors-file", options->errors_file,
                  "Write failed, cancelled and expired requests' lines here instead of the output");
  cmd->add_flag("--follow", options->follow, "Keep writing new results until the batch ends");
  cmd->add_option("--start", options->start, "First result sequence number (to resume)");
  cmd->add_option("--coordinator", options->coordinator, "Coordinator address HOST:PORT")
      ->capture_default_str();
  AddApiClientOptions(cmd, &options->security);
  return [options] { return RunResults(*options); };
}

}  // namespace flatfleet::tools
