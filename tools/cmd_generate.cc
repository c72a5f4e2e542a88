// `flatfleet generate`: placeholder until the command is written.
#include "tools/commands.h"

namespace flatfleet::tools {

CommandRunner RegisterGenerateCommand(CLI::App& app) { return [] { return 2; }; }

}  // namespace flatfleet::tools
