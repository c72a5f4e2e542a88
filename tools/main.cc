// `flatfleet`: the command-line entry point. Subcommands live in cmd_*.cc.
#include <cstdio>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"flatfleet: serve and evaluate weight-and-activation-quantized LLMs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "flatfleet 0.1.0");

  std::vector<std::pair<CLI::App*, flatfleet::tools::CommandRunner>> commands;
  auto add = [&](flatfleet::tools::CommandRunner (*register_fn)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    auto runner = register_fn(app);
    auto subcommands = app.get_subcommands({});
    if (subcommands.size() > before) commands.emplace_back(subcommands.back(), std::move(runner));
  };
  add(flatfleet::tools::RegisterGenerateCommand);
  add(flatfleet::tools::RegisterScoreCommand);
  add(flatfleet::tools::RegisterTokenizeCommand);
  add(flatfleet::tools::RegisterAccuracyCommand);
  add(flatfleet::tools::RegisterQuantizeCommand);
  add(flatfleet::tools::RegisterMakeCheckpointCommand);
  add(flatfleet::tools::RegisterEvalPplCommand);
  add(flatfleet::tools::RegisterBenchCommand);
  add(flatfleet::tools::RegisterSubmitCommand);
  add(flatfleet::tools::RegisterStatusCommand);
  add(flatfleet::tools::RegisterResultsCommand);
  add(flatfleet::tools::RegisterCancelCommand);
  add(flatfleet::tools::RegisterDemoCommand);

  // `serve` groups the long-running processes; each registers itself under it.
  CLI::App* serve = app.add_subcommand("serve", "Run a coordinator or a worker process");
  serve->require_subcommand(1);
  auto add_serve = [&](flatfleet::tools::CommandRunner (*register_fn)(CLI::App&)) {
    size_t before = serve->get_subcommands({}).size();
    auto runner = register_fn(*serve);
    auto subcommands = serve->get_subcommands({});
    if (subcommands.size() > before) commands.emplace_back(subcommands.back(), std::move(runner));
  };
  add_serve(flatfleet::tools::RegisterServeCoordinatorCommand);
  add_serve(flatfleet::tools::RegisterServeWorkerCommand);

  CLI11_PARSE(app, argc, argv);
  for (auto& [subcommand, runner] : commands) {
    if (subcommand->parsed()) return runner();
  }
  std::fprintf(stderr, "flatfleet: no command given (see --help)\n");
  return 2;
}
