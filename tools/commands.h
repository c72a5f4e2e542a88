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
CommandRunner RegisterAccuracyCommand(CLI::App& app);
CommandRunner RegisterQuantizeCommand(CLI::App& app);
CommandRunner RegisterMakeCheckpointCommand(CLI::App& app);
CommandRunner RegisterEvalPplCommand(CLI::App& app);
CommandRunner RegisterBenchCommand(CLI::App& app);
CommandRunner RegisterServeWorkerCommand(CLI::App& serve);       // `serve worker`, under `serve`
CommandRunner RegisterServeCoordinatorCommand(CLI::App& serve);  // `serve coordinator`
// Clients of a coordinator (default address 127.0.0.1:7070), and the all-in-one demo.
CommandRunner RegisterSubmitCommand(CLI::App& app);
CommandRunner RegisterStatusCommand(CLI::App& app);
CommandRunner RegisterResultsCommand(CLI::App& app);
CommandRunner RegisterCancelCommand(CLI::App& app);
CommandRunner RegisterDemoCommand(CLI::App& app);

}  // namespace flatfleet::tools
