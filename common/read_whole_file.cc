#include "common/read_whole_file.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace flatfleet {

absl::StatusOr<std::string> ReadWholeFile(const std::filesystem::path& path) {
  std::FILE* stream = std::fopen(path.c_str(), "rb");
  if (stream == nullptr) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open"));
  std::string contents;
  char buffer[1 << 16];
  size_t read;
  while ((read = std::fread(buffer, 1, sizeof(buffer), stream)) > 0) contents.append(buffer, read);
  const bool failed = std::ferror(stream) != 0;
  std::fclose(stream);
  if (failed) return absl::DataLossError(absl::StrCat(path.string(), ": read error"));
  return contents;
}

}  // namespace flatfleet
