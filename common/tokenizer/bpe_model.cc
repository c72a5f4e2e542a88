#include "common/tokenizer/bpe_model.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/tokenizer/utf8.h"

namespace flatfleet::tokenizer {
namespace {

constexpr size_t kMaxCacheEntries = 1 << 16;
constexpr size_t kMaxCachedWordBytes = 256;

// One symbol of a word being merged; a doubly linked list over the word's symbols.
struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  size_t byte_length;  // 0 once merged into its left neighbour
};

struct MergeCandidate {
  int32_t rank;
  int32_t position;
  int32_t merged_id;
  // Lowest rank first, then leftmost, as HF's merge heap orders them.
  bool operator>(const MergeCandidate& other) const {
    return rank != other.rank ? rank > other.rank : position > other.position;
  }
};

absl::StatusOr<std::pair<std::string, std::string>> ParseMergeEntry(const Json& entry,
                                                                    std::string_view field) {
  if (entry.is_string()) {
    const std::string& line = entry.get_ref<const std::string&>();
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      return FieldError(field, absl::StrCat("expected \"left right\", got \"", line, "\""));
    }
    return std::make_pair(line.substr(0, space), line.substr(space + 1));
  }
  if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
    return std::make_pair(entry[0].get<std::string>(), entry[1].get<std::string>());
  }
  return FieldError(field, "expected \"left right\" or [\"left\", \"right\"]");
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const Json& json,
                                                             std::string_view field) {
  auto model = std::unique_ptr<BpeModel>(new BpeModel());
  FF_ASSIGN_OR_RETURN(const std::string type, OptionalString(json, "type", field, "BPE"));
  if (type != "BPE") {
    return FieldError(SubField(field, "type"),
                      absl::StrCat("unsupported model type '", type, "' (supported: BPE)"));
  }
  if (json.contains("dropout") && !json["dropout"].is_null()) {
    const Json& dropout = json["dropout"];
    if (!dropout.is_number() || dropout.get<double>() != 0.0) {
      return FieldError(SubField(field, "dropout"), "BPE dropout is not supported");
    }
  }

  const std::string vocab_field = SubField(field, "vocab");
  if (!json.contains("vocab") || !json["vocab"].is_object()) {
    return FieldError(vocab_field, "expected an object of token -> id");
  }
  for (const auto& item : json["vocab"].items()) {
    const std::string& token = item.key();
    const Json& id_json = item.value();
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 ||
        id_json.get<int64_t>() > INT32_MAX - 1) {
      return FieldError(SubField(vocab_field, token), "expected a non-negative 32-bit id");
    }
    const auto id = static_cast<int32_t>(id_json.get<int64_t>());
    model->token_to_id_[token] = id;
    model->id_to_token_[id] = token;
    model->max_id_ = std::max(model->max_id_, id);
  }

  FF_ASSIGN_OR_RETURN(model->continuing_subword_prefix_,
                      OptionalString(json, "continuing_subword_prefix", field, ""));
  FF_ASSIGN_OR_RETURN(model->end_of_word_suffix_,
                      OptionalString(json, "end_of_word_suffix", field, ""));
  FF_ASSIGN_OR_RETURN(model->fuse_unk_, OptionalBool(json, "fuse_unk", field, false));
  FF_ASSIGN_OR_RETURN(model->byte_fallback_, OptionalBool(json, "byte_fallback", field, false));
  FF_ASSIGN_OR_RETURN(model->ignore_merges_, OptionalBool(json, "ignore_merges", field, false));
  FF_ASSIGN_OR_RETURN(const std::string unk_token, OptionalString(json, "unk_token", field, ""));
  if (!unk_token.empty()) {
    auto unk = model->TokenToId(unk_token);
    if (!unk.has_value()) {
      return FieldError(SubField(field, "unk_token"),
                        absl::StrCat("'", unk_token, "' is not in the vocab"));
    }
    model->unk_id_ = unk;
  }
  model->byte_token_ids_.resize(256);
  for (int b = 0; b < 256; ++b) {
    model->byte_token_ids_[b] = model->TokenToId(absl::StrFormat("<0x%02X>", b));
  }

  const std::string merges_field = SubField(field, "merges");
  const Json empty = Json::array();
  const Json* merges = &empty;
  if (json.contains("merges") && !json["merges"].is_null()) {
    FF_ASSIGN_OR_RETURN(merges, RequireArray(json, "merges", field));
  }
  const size_t prefix_length = model->continuing_subword_prefix_.size();
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const std::string entry_field = SubField(merges_field, rank);
    FF_ASSIGN_OR_RETURN(auto pair, ParseMergeEntry((*merges)[rank], entry_field));
    const auto& [left, right] = pair;
    const auto left_id = model->TokenToId(left);
    const auto right_id = model->TokenToId(right);
    if (!left_id || !right_id) {
      return FieldError(entry_field,
                        absl::StrCat("refers to unknown token '", left_id ? right : left, "'"));
    }
    std::string merged = left;
    merged +=
        prefix_length > 0 && std::string_view(right).starts_with(model->continuing_subword_prefix_)
            ? right.substr(prefix_length)
            : right;
    const auto merged_id = model->TokenToId(merged);
    if (!merged_id) {
      return FieldError(entry_field,
                        absl::StrCat("merged token '", merged, "' is not in the vocab"));
    }
    // Later duplicates win, as in HF's map construction.
    model->merges_[std::make_pair(*left_id, *right_id)] =
        Merge{static_cast<int32_t>(rank), *merged_id};
  }
  return model;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = token_to_id_.find(absl::string_view(token.data(), token.size()));
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  auto it = id_to_token_.find(id);
  return it == id_to_token_.end() ? nullptr : &it->second;
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto id = TokenToId(word)) {
      ids.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(absl::string_view(word.data(), word.size()));
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> word_ids = MergeWord(word);
  ids.insert(ids.end(), word_ids.begin(), word_ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(word, std::move(word_ids));
  }
}

std::vector<int32_t> BpeModel::MergeWord(std::string_view word) const {
  std::vector<Symbol> symbols;
  // An unknown-character run waiting to be emitted (so that fuse_unk can extend it).
  bool has_pending_unk = false;
  size_t pending_unk_length = 0;
  const auto add = [&](int32_t id, size_t byte_length) {
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1, byte_length});
    if (index > 0) symbols[index - 1].next = index;
  };
  for (size_t pos = 0; pos < word.size();) {
    size_t length = Utf8SequenceLength(word, pos);
    if (length == 0) length = 1;  // not reached for valid UTF-8 input
    const bool is_first = pos == 0;
    const bool is_last = pos + length == word.size();
    std::string piece;
    if (!is_first) piece += continuing_subword_prefix_;
    piece.append(word.substr(pos, length));
    if (is_last) piece += end_of_word_suffix_;
    pos += length;

    if (auto id = TokenToId(piece)) {
      if (has_pending_unk) add(*unk_id_, pending_unk_length);
      has_pending_unk = false;
      add(*id, length);
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes_known = true;
      for (char c : piece) all_bytes_known &= byte_token_ids_[static_cast<uint8_t>(c)].has_value();
      if (all_bytes_known) {
        // Like HF, a pending unk is only flushed by the next in-vocab character.
        for (char c : piece) add(*byte_token_ids_[static_cast<uint8_t>(c)], 1);
        continue;
      }
    }
    if (unk_id_) {
      if (has_pending_unk && fuse_unk_) {
        pending_unk_length += length;
      } else {
        if (has_pending_unk) add(*unk_id_, pending_unk_length);
        has_pending_unk = true;
        pending_unk_length = length;
      }
    }
  }
  if (has_pending_unk) add(*unk_id_, pending_unk_length);

  std::priority_queue<MergeCandidate, std::vector<MergeCandidate>, std::greater<>> queue;
  const auto consider = [&](int32_t position) {
    const int32_t next = symbols[position].next;
    if (next < 0) return;
    auto it = merges_.find(std::make_pair(symbols[position].id, symbols[next].id));
    if (it != merges_.end()) queue.push({it->second.rank, position, it->second.merged_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    const MergeCandidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.position];
    if (left.byte_length == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    auto it = merges_.find(std::make_pair(left.id, right.id));
    if (it == merges_.end() || it->second.merged_id != top.merged_id) continue;  // stale
    left.id = top.merged_id;
    left.byte_length += right.byte_length;
    right.byte_length = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.position;
    if (left.prev >= 0) consider(left.prev);
    consider(top.position);
  }
  std::vector<int32_t> ids;
  for (const Symbol& symbol : symbols) {
    if (symbol.byte_length > 0) ids.push_back(symbol.id);
  }
  return ids;
}

}  // namespace flatfleet::tokenizer
