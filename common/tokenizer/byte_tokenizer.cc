#include "common/tokenizer/byte_tokenizer.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "common/tokenizer/absl_string_view.h"
#include "common/tokenizer/utf8.h"

namespace flatfleet::tokenizer {
namespace {

constexpr std::string_view kSpecialNames[] = {"<bos>", "<eos>", "<pad>"};

}  // namespace

absl::StatusOr<std::vector<int32_t>> ByteTokenizer::Encode(std::string_view text,
                                                           bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 1);
  if (add_special_tokens) ids.push_back(kBosId);
  for (char c : text) ids.push_back(static_cast<uint8_t>(c));
  return ids;
}

std::string ByteTokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  std::string out;
  for (int32_t id : ids) {
    if (id >= 0 && id < 256) {
      bytes.push_back(static_cast<char>(id));
    } else if (IsSpecial(id) && !skip_special_tokens) {
      out += Utf8Lossy(bytes);
      bytes.clear();
      out += kSpecialNames[id - kBosId];
    }
  }
  return out + Utf8Lossy(bytes);
}

std::optional<int32_t> ByteTokenizer::TokenToId(std::string_view token) const {
  for (int32_t i = 0; i < 3; ++i) {
    if (token == kSpecialNames[i]) return kBosId + i;
  }
  int value = 0;
  if (token.size() == 6 && token.starts_with("<0x") && token.ends_with(">") &&
      absl::SimpleHexAtoi(AbslView(token.substr(3, 2)), &value)) {
    return value;
  }
  return std::nullopt;
}

std::string ByteTokenizer::IdToToken(int32_t id) const {
  if (id >= 0 && id < 256) return absl::StrFormat("<0x%02X>", id);
  if (IsSpecial(id)) return std::string(kSpecialNames[id - kBosId]);
  return "";
}

}  // namespace flatfleet::tokenizer
