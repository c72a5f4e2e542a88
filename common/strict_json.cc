#include "common/strict_json.h"

#include <exception>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"

namespace flatfleet {

absl::StatusOr<nlohmann::json> ParseStrictJson(std::string_view text,
                                               std::string_view source_view) {
  const std::string source_name(source_view);
  // One key set per open object; arrays push nothing since they have no keys.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate_key;
  auto reject_duplicates = [&](int /*depth*/, nlohmann::json::parse_event_t event,
                               nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty() && duplicate_key.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) duplicate_key = key;
    }
    return true;
  };
  try {
    nlohmann::json parsed = nlohmann::json::parse(text.begin(), text.end(), reject_duplicates,
                                                  /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      return absl::InvalidArgumentError(absl::StrCat(source_name, ": malformed JSON"));
    }
    if (!duplicate_key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source_name, ": duplicate JSON key '", duplicate_key, "'"));
    }
    return parsed;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": malformed JSON: ", e.what()));
  }
}

}  // namespace flatfleet
