// A whole file read into memory, with errors that name it (NotFound: cannot open; DataLoss: a
// read error). For the small text files of a checkpoint: config.json, index and manifest JSON.
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"

namespace flatfleet {

absl::StatusOr<std::string> ReadWholeFile(const std::filesystem::path& path);

}  // namespace flatfleet
