// `flatfleet score`: placeholder until the command is written.
#include "tools/commands.h"

namespace flatfleet::tools {

CommandRunner RegisterScoreCommand(CLI::App& app) { return [] { return 2; }; }

}  // namespace flatfleet::tools
