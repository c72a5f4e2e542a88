// `flatfleet cancel BATCH`: cancels pending requests and stops running ones.
#include <cstdio>
#include <memory>
#include <string>

#include "coordinator/server/batch_client.h"
#include "tools/commands.h"
#include "tools/security_options.h"

namespace flatfleet::tools {
namespace {

struct CancelOptions {
  std::string batch_id;
  std::string coordinator = coordinator::kDefaultCoordinatorAddress;
  security::ApiClientFlags security;
};

int RunCancel(const CancelOptions& options) {
  auto client = ConnectToCoordinator(options.coordinator, options.security);
  if (!client.ok()) {
    std::fprintf(stderr, "flatfleet cancel: %s\n", std::string(client.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<v1::Batch> batch = (*client)->Cancel(options.batch_id);
  if (!batch.ok()) {
    std::fprintf(stderr, "flatfleet cancel: %s\n", std::string(batch.status().message()).c_str());
    return 1;
  }
  std::printf("%s %s\n", batch->id().c_str(), coordinator::BatchStateName(batch->state()).c_str());
  return 0;
}

}  // namespace

CommandRunner RegisterCancelCommand(CLI::App& app) {
  auto options = std::make_shared<CancelOptions>();
  CLI::App* cmd = app.add_subcommand(
      "cancel", "Cancel a batch: pending requests at once, running ones are stopped");
  cmd->add_option("batch", options->batch_id, "Batch id")->required();
  cmd->add_option("--coordinator", options->coordinator, "Coordinator address HOST:PORT")
      ->capture_default_str();
  AddApiClientOptions(cmd, &options->security);
  return [options] { return RunCancel(*options); };
}

}  // namespace flatfleet::tools
