#include "common/tokenizer/unicode_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/tokenizer/absl_string_view.h"

namespace flatfleet::tokenizer {
namespace {

// Bounds backtracking so hostile patterns from a tokenizer.json cannot hang encoding.
constexpr uint32_t kMatchLimit = 10'000'000;
// \C could split a character and break the UTF-8 invariant later stages rely on.
constexpr uint32_t kCompileOptions = PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C;

struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};

}  // namespace

struct UnicodeRegex::Compiled {
  pcre2_code* code = nullptr;
  pcre2_match_context* context = nullptr;
  ~Compiled() {
    pcre2_match_context_free(context);
    pcre2_code_free(code);
  }
};

absl::StatusOr<UnicodeRegex> UnicodeRegex::Compile(std::string_view pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   kCompileOptions, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("invalid regex '", AbslView(pattern),
                                                   "' at offset ", error_offset, ": ",
                                                   reinterpret_cast<const char*>(message)));
  }
  auto compiled = std::make_shared<Compiled>();
  compiled->code = code;
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; interpreted if it fails
  compiled->context = pcre2_match_context_create(nullptr);
  if (compiled->context == nullptr) return absl::ResourceExhaustedError("pcre2 context");
  pcre2_set_match_limit(compiled->context, kMatchLimit);
  return UnicodeRegex(std::string(pattern), std::move(compiled));
}

absl::StatusOr<UnicodeRegex> UnicodeRegex::Literal(std::string_view literal) {
  if (literal.empty()) return absl::InvalidArgumentError("empty String pattern");
  std::string quoted;
  for (char c : literal) {
    // Escaping every ASCII punctuation character keeps \Q...\E corner cases out of the way.
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x80 && !std::isalnum(byte)) quoted.push_back('\\');
    quoted.push_back(c);
  }
  return Compile(quoted);
}

absl::StatusOr<std::vector<std::pair<size_t, size_t>>> UnicodeRegex::FindAll(
    std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> data(
      pcre2_match_data_create_from_pattern(compiled_->code, nullptr));
  if (data == nullptr) return absl::ResourceExhaustedError("pcre2 match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    const int rc = pcre2_match(compiled_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                               data.get(), compiled_->context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      return absl::ResourceExhaustedError(
          absl::StrCat("regex '", pattern_, "' failed: ", reinterpret_cast<const char*>(message)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    size_t begin = ovector[0], end = ovector[1];
    if (end < begin) break;  // \K tricks can produce such ranges; treat as the end
    if (end > begin) {
      matches.emplace_back(begin, end);
      start = end;
    } else {
      // Empty match: step over one whole character (Oniguruma-style find_iter).
      if (begin >= text.size()) break;
      size_t next = begin + 1;
      while (next < text.size() && (static_cast<uint8_t>(text[next]) & 0xC0) == 0x80) ++next;
      start = next;
    }
  }
  return matches;
}

}  // namespace flatfleet::tokenizer
