#include "common/tokenizer/tokenizer.h"

#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/tokenizer/bpe_tokenizer.h"
#include "common/tokenizer/byte_tokenizer.h"
#include "common/tokenizer/sentencepiece_tokenizer.h"

namespace flatfleet::tokenizer {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::filesystem::path& dir_or_file) {
  std::error_code error;
  std::filesystem::path file = dir_or_file;
  if (std::filesystem::is_directory(dir_or_file, error)) {
    file = dir_or_file / "tokenizer.json";
    if (!std::filesystem::exists(file, error)) file = dir_or_file / "tokenizer.model";
    if (!std::filesystem::exists(file, error)) {
      return absl::NotFoundError(
          absl::StrCat(dir_or_file.string(), ": no tokenizer.json or tokenizer.model found"));
    }
  } else if (!std::filesystem::exists(file, error)) {
    return absl::NotFoundError(absl::StrCat(file.string(), ": no such file or directory"));
  }
  if (file.extension() == ".model") {
    auto tokenizer = SentencePieceTokenizer::FromFile(file);
    if (!tokenizer.ok()) return tokenizer.status();
    return std::unique_ptr<Tokenizer>(std::move(*tokenizer));
  }
  auto tokenizer = BpeTokenizer::FromFile(file);
  if (!tokenizer.ok()) return tokenizer.status();
  return std::unique_ptr<Tokenizer>(std::move(*tokenizer));
}

std::unique_ptr<Tokenizer> MakeByteTokenizer() { return std::make_unique<ByteTokenizer>(); }

}  // namespace flatfleet::tokenizer
