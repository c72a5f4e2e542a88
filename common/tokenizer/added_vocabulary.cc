#include "common/tokenizer/added_vocabulary.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace flatfleet::tokenizer {
namespace {

bool IsSpaceByte(char c) { return absl::ascii_isspace(static_cast<unsigned char>(c)); }

// HF's single_word test looks at whether the neighbouring character is part of a word.
bool IsWordByte(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return absl::ascii_isalnum(byte) || c == '_' || byte >= 0x80;
}

}  // namespace

absl::StatusOr<AddedVocabulary> AddedVocabulary::FromJson(const Json& json,
                                                          std::string_view field) {
  AddedVocabulary vocabulary;
  vocabulary.candidates_by_first_byte_.resize(256);
  if (json.is_null()) return vocabulary;
  if (!json.is_array()) return FieldError(field, "expected an array");
  for (size_t i = 0; i < json.size(); ++i) {
    const std::string entry_field = SubField(field, i);
    const Json& entry = json[i];
    if (!entry.is_object()) return FieldError(entry_field, "expected an object");
    AddedToken token;
    FF_ASSIGN_OR_RETURN(const int64_t id, OptionalInt(entry, "id", entry_field, -1));
    if (id < 0 || id > INT32_MAX - 1) {
      return FieldError(SubField(entry_field, "id"), "expected a non-negative 32-bit id");
    }
    token.id = static_cast<int32_t>(id);
    FF_ASSIGN_OR_RETURN(token.content, RequireString(entry, "content", entry_field));
    if (token.content.empty()) return FieldError(SubField(entry_field, "content"), "is empty");
    FF_ASSIGN_OR_RETURN(token.special, OptionalBool(entry, "special", entry_field, false));
    FF_ASSIGN_OR_RETURN(token.lstrip, OptionalBool(entry, "lstrip", entry_field, false));
    FF_ASSIGN_OR_RETURN(token.rstrip, OptionalBool(entry, "rstrip", entry_field, false));
    FF_ASSIGN_OR_RETURN(token.single_word, OptionalBool(entry, "single_word", entry_field, false));
    FF_ASSIGN_OR_RETURN(token.normalized,
                        OptionalBool(entry, "normalized", entry_field, !token.special));
    vocabulary.has_normalized_tokens_ |= token.normalized;
    const size_t index = vocabulary.tokens_.size();
    vocabulary.index_by_id_[token.id] = index;
    vocabulary.index_by_content_[token.content] = index;
    vocabulary.candidates_by_first_byte_[static_cast<uint8_t>(token.content[0])].push_back(index);
    vocabulary.tokens_.push_back(std::move(token));
  }
  for (auto& candidates : vocabulary.candidates_by_first_byte_) {
    std::stable_sort(candidates.begin(), candidates.end(), [&](size_t a, size_t b) {
      return vocabulary.tokens_[a].content.size() > vocabulary.tokens_[b].content.size();
    });
  }
  return vocabulary;
}

std::vector<AddedTokenSplit> AddedVocabulary::Split(std::string_view text, bool normalized) const {
  std::vector<AddedTokenSplit> splits;
  size_t text_start = 0;  // start of the text not yet emitted
  for (size_t pos = 0; pos < text.size();) {
    const AddedToken* match = nullptr;
    for (size_t index : candidates_by_first_byte_[static_cast<uint8_t>(text[pos])]) {
      const AddedToken& token = tokens_[index];
      if (token.normalized != normalized || !text.substr(pos).starts_with(token.content)) continue;
      const size_t end = pos + token.content.size();
      if (token.single_word && ((pos > 0 && IsWordByte(text[pos - 1])) ||
                                (end < text.size() && IsWordByte(text[end])))) {
        continue;
      }
      match = &token;
      break;
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t begin = pos;
    size_t end = pos + match->content.size();
    if (match->lstrip) {
      while (begin > text_start && IsSpaceByte(text[begin - 1])) --begin;
    }
    if (match->rstrip) {
      while (end < text.size() && IsSpaceByte(text[end])) ++end;
    }
    if (begin > text_start) splits.push_back({text_start, begin, std::nullopt});
    splits.push_back({begin, end, match->id});
    text_start = pos = end;
  }
  if (text_start < text.size()) splits.push_back({text_start, text.size(), std::nullopt});
  return splits;
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::FindByContent(std::string_view content) const {
  auto it = index_by_content_.find(absl::string_view(content.data(), content.size()));
  return it == index_by_content_.end() ? nullptr : &tokens_[it->second];
}

}  // namespace flatfleet::tokenizer
