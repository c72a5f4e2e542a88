#include "common/metrics/text_format.h"

#include <charconv>
#include <cmath>

namespace flatfleet::metrics {
namespace {

std::string Escape(std::string_view text, bool escape_quotes) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && escape_quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string EscapeHelp(std::string_view help) { return Escape(help, /*escape_quotes=*/false); }

std::string EscapeLabelValue(std::string_view value) {
  return Escape(value, /*escape_quotes=*/true);
}

std::string FormatSampleValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

}  // namespace flatfleet::metrics
