#include "common/chat_template/python_text.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/tokenizer/utf8.h"

namespace flatfleet::chat_template {
namespace {

size_t SequenceLengthAt(std::string_view text, size_t pos) {
  size_t length = tokenizer::Utf8SequenceLength(text, pos);
  return length == 0 ? 1 : length;
}

char32_t CodePointAt(std::string_view text, size_t pos, size_t* length) {
  size_t valid = tokenizer::Utf8SequenceLength(text, pos);
  if (valid == 0) {
    *length = 1;
    return 0xFFFD;
  }
  *length = valid;
  return tokenizer::DecodeUtf8At(text, pos, valid);
}

bool IsPythonSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Simple one-to-one case pairs: ASCII, Latin-1, Latin Extended-A (alternating), Greek and
// Cyrillic basic blocks.
char32_t ToUpper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 &&
      c != 0x17F) {
    bool odd_is_lower = !((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E));
    if (odd_is_lower ? (c % 2 == 1) : (c % 2 == 0)) return c - 1;
    return c;
  }
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}

char32_t ToLower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 &&
      c != 0x17F) {
    bool odd_is_lower = !((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E));
    if (odd_is_lower ? (c % 2 == 0) : (c % 2 == 1)) return c + 1;
    return c;
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

bool IsCased(char32_t c) { return ToUpper(c) != c || ToLower(c) != c; }

template <typename MapFn>
std::string MapCodePoints(std::string_view text, MapFn map) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length;
    char32_t c = CodePointAt(text, pos, &length);
    char32_t mapped = map(c);
    if (mapped == c || tokenizer::Utf8SequenceLength(text, pos) == 0) {
      out.append(text.substr(pos, length));
    } else {
      tokenizer::AppendUtf8(mapped, out);
    }
    pos += length;
  }
  return out;
}

}  // namespace

std::vector<std::string_view> CodePoints(std::string_view text) {
  std::vector<std::string_view> points;
  for (size_t pos = 0; pos < text.size();) {
    size_t length = SequenceLengthAt(text, pos);
    points.push_back(text.substr(pos, length));
    pos += length;
  }
  return points;
}

size_t CodePointCount(std::string_view text) {
  size_t count = 0;
  for (size_t pos = 0; pos < text.size(); pos += SequenceLengthAt(text, pos)) ++count;
  return count;
}

bool IsPythonWhitespaceAt(std::string_view text, size_t pos, size_t* length) {
  char32_t c = CodePointAt(text, pos, length);
  return tokenizer::Utf8SequenceLength(text, pos) != 0 && IsPythonSpace(c);
}

std::string_view PythonStrip(std::string_view text, bool left, bool right) {
  std::vector<std::string_view> points = CodePoints(text);
  size_t begin = 0;
  size_t end = points.size();
  auto is_space = [](std::string_view point) {
    size_t length;
    return IsPythonWhitespaceAt(point, 0, &length) && length == point.size();
  };
  if (left) {
    while (begin < end && is_space(points[begin])) ++begin;
  }
  if (right) {
    while (end > begin && is_space(points[end - 1])) --end;
  }
  if (begin == end) return text.substr(0, 0);
  size_t first = points[begin].data() - text.data();
  size_t last = points[end - 1].data() + points[end - 1].size() - text.data();
  return text.substr(first, last - first);
}

std::string_view PythonStripChars(std::string_view text, std::string_view chars, bool left,
                                  bool right) {
  std::vector<std::string_view> points = CodePoints(text);
  std::vector<std::string_view> strip_set = CodePoints(chars);
  auto in_set = [&](std::string_view point) {
    for (std::string_view s : strip_set) {
      if (s == point) return true;
    }
    return false;
  };
  size_t begin = 0;
  size_t end = points.size();
  if (left) {
    while (begin < end && in_set(points[begin])) ++begin;
  }
  if (right) {
    while (end > begin && in_set(points[end - 1])) --end;
  }
  if (begin == end) return text.substr(0, 0);
  size_t first = points[begin].data() - text.data();
  size_t last = points[end - 1].data() + points[end - 1].size() - text.data();
  return text.substr(first, last - first);
}

std::string PythonUpper(std::string_view text) { return MapCodePoints(text, ToUpper); }
std::string PythonLower(std::string_view text) { return MapCodePoints(text, ToLower); }

std::string PythonTitle(std::string_view text) {
  bool previous_cased = false;
  return MapCodePoints(text, [&](char32_t c) {
    char32_t mapped = previous_cased ? ToLower(c) : ToUpper(c);
    previous_cased = IsCased(c);
    return mapped;
  });
}

std::string PythonCapitalize(std::string_view text) {
  bool first = true;
  return MapCodePoints(text, [&](char32_t c) {
    char32_t mapped = first ? ToUpper(c) : ToLower(c);
    first = false;
    return mapped;
  });
}

std::string PythonFloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  // Shortest round-trip digits in scientific form: [-]d[.ddd]e[+-]x.
  char buffer[64];
  auto result =
      std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string_view sci(buffer, result.ptr - buffer);
  bool negative = sci.front() == '-';
  if (negative) sci.remove_prefix(1);
  size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  int exponent = std::atoi(std::string(sci.substr(e + 1)).c_str());
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      absl::StrAppend(&out, "0.", std::string(-exponent - 1, '0'), digits);
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      absl::StrAppend(&out, digits, std::string(exponent + 1 - digits.size(), '0'), ".0");
    } else {
      absl::StrAppend(&out, digits.substr(0, exponent + 1), ".", digits.substr(exponent + 1));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) absl::StrAppend(&out, ".", digits.substr(1));
  char exponent_text[16];
  std::snprintf(exponent_text, sizeof(exponent_text), "e%c%02d", exponent < 0 ? '-' : '+',
                std::abs(exponent));
  out += exponent_text;
  return out;
}

}  // namespace flatfleet::chat_template
