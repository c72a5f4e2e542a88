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

  CLI11_PARSE(app, argc, argv);
  for (auto& [subcommand, runner] : commands) {
    if (subcommand->parsed()) return runner();
  }
  std::fprintf(stderr, "flatfleet: no command given (see --help)\n");
  return 2;
}
