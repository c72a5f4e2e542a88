#include "common/tokenizer/bpe_tokenizer.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/tokenizer/utf8.h"

namespace flatfleet::tokenizer {
namespace {

constexpr std::string_view kBosNames[] = {"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>"};
constexpr std::string_view kEosNames[] = {"</s>",          "<|end_of_text|>", "<|eot_id|>",
                                          "<|endoftext|>", "<eos>",           "<|im_end|>"};

absl::Status WithSource(const absl::Status& status, std::string_view source_name) {
  return absl::Status(status.code(), absl::StrCat(AbslView(source_name), ": ", status.message()));
}

const Json& MemberOrNull(const Json& json, std::string_view key) {
  static const Json* const null_json = new Json(nullptr);
  auto it = json.find(key);
  return it == json.end() ? *null_json : *it;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromFile(
    const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open"));
  std::ostringstream contents;
  contents << in.rdbuf();
  return FromJsonText(contents.str(), path.string());
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromJsonText(
    std::string_view json_text, std::string_view source_name) {
  Json json = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(AbslView(source_name), ": malformed JSON"));
  }
  absl::StatusOr<std::unique_ptr<BpeTokenizer>> tokenizer;
  try {
    tokenizer = FromJson(json);
  } catch (const Json::exception& e) {  // a type mismatch the field checks did not anticipate
    tokenizer = absl::InvalidArgumentError(e.what());
  }
  if (!tokenizer.ok()) return WithSource(tokenizer.status(), source_name);
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromJson(const Json& json) {
  if (!json.is_object()) return FieldError("(top level)", "expected an object");
  auto tokenizer = std::unique_ptr<BpeTokenizer>(new BpeTokenizer());
  const Json& model = MemberOrNull(json, "model");
  if (!model.is_object()) return FieldError("model", "missing or not an object");
  FF_ASSIGN_OR_RETURN(tokenizer->model_, BpeModel::FromJson(model, "model"));
  FF_ASSIGN_OR_RETURN(tokenizer->added_, AddedVocabulary::FromJson(
                                             MemberOrNull(json, "added_tokens"), "added_tokens"));
  if (const Json& normalizer = MemberOrNull(json, "normalizer"); !normalizer.is_null()) {
    FF_ASSIGN_OR_RETURN(tokenizer->normalizer_, ParseNormalizer(normalizer, "normalizer"));
  }
  if (const Json& pre_tokenizer = MemberOrNull(json, "pre_tokenizer"); !pre_tokenizer.is_null()) {
    FF_ASSIGN_OR_RETURN(tokenizer->pre_tokenizer_,
                        ParsePreTokenizer(pre_tokenizer, "pre_tokenizer"));
  }
  FF_ASSIGN_OR_RETURN(tokenizer->special_frame_,
                      ParsePostProcessor(MemberOrNull(json, "post_processor"), "post_processor"));
  if (const Json& decoder = MemberOrNull(json, "decoder"); !decoder.is_null()) {
    FF_ASSIGN_OR_RETURN(tokenizer->decoder_, ParseDecoder(decoder, "decoder"));
  }

  int64_t max_id = tokenizer->model_->max_id();
  for (const AddedToken& token : tokenizer->added_.tokens()) {
    max_id = std::max<int64_t>(max_id, token.id);
  }
  tokenizer->vocab_size_ = max_id + 1;
  for (const auto* frame_ids :
       {&tokenizer->special_frame_.prefix, &tokenizer->special_frame_.suffix}) {
    for (int32_t id : *frame_ids) {
      if (id > max_id) {
        return FieldError("post_processor", absl::StrCat("id ", id, " is not in the vocabulary"));
      }
    }
  }
  if (!tokenizer->special_frame_.prefix.empty()) {
    tokenizer->bos_id_ = tokenizer->special_frame_.prefix.front();
  } else {
    for (std::string_view name : kBosNames) {
      if ((tokenizer->bos_id_ = tokenizer->TokenToId(name))) break;
    }
  }
  for (std::string_view name : kEosNames) {
    if (auto id = tokenizer->TokenToId(name)) tokenizer->eos_ids_.push_back(*id);
  }
  return tokenizer;
}

absl::Status BpeTokenizer::EncodeText(std::string text, bool at_input_start,
                                      std::vector<int32_t>& ids) const {
  std::vector<PreToken> pieces;
  pieces.push_back({std::move(text), at_input_start});
  if (pre_tokenizer_ != nullptr) FF_RETURN_IF_ERROR(pre_tokenizer_->Apply(pieces));
  for (const PreToken& piece : pieces) model_->Tokenize(piece.text, ids);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::Encode(std::string_view text,
                                                          bool add_special_tokens) const {
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("text is not valid UTF-8");
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = special_frame_.prefix;
  // Tokens matched on the raw input come first; the rest is normalized and may still contain
  // tokens that are matched after normalization.
  for (const AddedTokenSplit& split : added_.Split(text, /*normalized=*/false)) {
    if (split.token_id.has_value()) {
      ids.push_back(*split.token_id);
      continue;
    }
    std::string piece(text.substr(split.begin, split.end - split.begin));
    const bool at_input_start = split.begin == 0;
    if (normalizer_ != nullptr) {
      FF_ASSIGN_OR_RETURN(piece, normalizer_->Normalize(std::move(piece)));
    }
    if (!added_.has_normalized_tokens()) {
      FF_RETURN_IF_ERROR(EncodeText(std::move(piece), at_input_start, ids));
      continue;
    }
    for (const AddedTokenSplit& inner : added_.Split(piece, /*normalized=*/true)) {
      if (inner.token_id.has_value()) {
        ids.push_back(*inner.token_id);
      } else {
        FF_RETURN_IF_ERROR(EncodeText(piece.substr(inner.begin, inner.end - inner.begin),
                                      at_input_start && inner.begin == 0, ids));
      }
    }
  }
  if (add_special_tokens) {
    ids.insert(ids.end(), special_frame_.suffix.begin(), special_frame_.suffix.end());
  }
  return ids;
}

std::string BpeTokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (skip_special_tokens && IsSpecial(id)) continue;
    if (const AddedToken* added = added_.FindById(id)) {
      tokens.push_back(added->content);
    } else if (const std::string* token = model_->IdToToken(id)) {
      tokens.push_back(*token);
    }
  }
  if (decoder_ == nullptr) return absl::StrJoin(tokens, " ");
  decoder_->DecodeChain(tokens);
  return absl::StrJoin(tokens, "");
}

std::optional<int32_t> BpeTokenizer::TokenToId(std::string_view token) const {
  if (const AddedToken* added = added_.FindByContent(token)) return added->id;
  return model_->TokenToId(token);
}

std::string BpeTokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* added = added_.FindById(id)) return added->content;
  const std::string* token = model_->IdToToken(id);
  return token == nullptr ? "" : *token;
}

bool BpeTokenizer::IsSpecial(int32_t id) const {
  const AddedToken* added = added_.FindById(id);
  return added != nullptr && added->special;
}

}  // namespace flatfleet::tokenizer
