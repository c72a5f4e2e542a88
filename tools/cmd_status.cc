// `flatfleet status BATCH`: a batch's state, request counts and progress.
#include <cstdio>
#include <memory>
#include <string>

#include "coordinator/server/batch_client.h"
#include "tools/commands.h"
#include "tools/security_options.h"

namespace flatfleet::tools {
namespace {

struct StatusOptions {
  std::string batch_id;
  std::string coordinator = coordinator::kDefaultCoordinatorAddress;
  security::ApiClientFlags security;
};

int RunStatus(const StatusOptions& options) {
  auto client = ConnectToCoordinator(options.coordinator, options.security);
  if (!client.ok()) {
    std::fprintf(stderr, "flatfleet status: %s\n", std::string(client.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<v1::Batch> batch = (*client)->Get(options.batch_id);
  if (!batch.ok()) {
    std::fprintf(stderr, "flatfleet status: %s\n", std::string(batch.status().message()).c_str());
    return 1;
  }
  const v1::RequestCounts& counts = batch->request_counts();
  const uint64_t done = counts.completed() + counts.failed() + counts.cancelled();
  std::printf("batch:     %s\nmodel:     %s\nstate:     %s\n", batch->id().c_str(),
              batch->model().c_str(), coordinator::BatchStateName(batch->state()).c_str());
  std::printf("requests:  %llu total, %llu completed, %llu failed",
              static_cast<unsigned long long>(counts.total()),
              static_cast<unsigned long long>(counts.completed()),
              static_cast<unsigned long long>(counts.failed()));
  if (counts.invalid() > 0) {
    std::printf(" (%llu invalid lines)", static_cast<unsigned long long>(counts.invalid()));
  }
  if (counts.cancelled() > 0) {
    std::printf(", %llu cancelled", static_cast<unsigned long long>(counts.cancelled()));
  }
  std::printf("\n");
  std::printf("progress:  %.1f%%\n",
              counts.total() == 0 ? 100.0 : 100.0 * static_cast<double>(done) / counts.total());
  if (!batch->error().empty()) std::printf("error:     %s\n", batch->error().c_str());
  return 0;
}

}  // namespace

CommandRunner RegisterStatusCommand(CLI::App& app) {
  auto options = std::make_shared<StatusOptions>();
  CLI::App* cmd = app.add_subcommand("status", "Show a batch's state, counts and progress");
  cmd->add_option("batch", options->batch_id, "Batch id (from `flatfleet submit`)")->required();
  cmd->add_option("--coordinator", options->coordinator, "Coordinator address HOST:PORT")
      ->capture_default_str();
  AddApiClientOptions(cmd, &options->security);
  return [options] { return RunStatus(*options); };
}

}  // namespace flatfleet::tools
