// Each `flatfleet` subcommand registers itself on the CLI11 app. The returned callback runs
// after parsing when that subcommand was chosen and gives the process exit code.
#pragma once

#include <functional>

#include "CLI/CLI.hpp"

namespace flatfleet::tools {

using CommandRunner = std::function<int()>;

CommandRunner RegisterTokenizeCommand(CLI::App& app);
CommandRunner RegisterGenerateCommand(CLI::App& app);
CommandRunner RegisterScoreCommand(CLI::App& app);

}  // namespace flatfleet::tools
