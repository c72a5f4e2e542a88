// Python's string semantics on UTF-8 text, as Jinja2 templates observe them: code points (len,
// indexing, slicing), str.isspace() whitespace (what |trim and .strip() remove), case
// conversions and float repr.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace flatfleet::chat_template {

// The text split into code points, each as its UTF-8 bytes. A byte that starts no well-formed
// sequence counts as one code point of its own (templates and content are not validated).
std::vector<std::string_view> CodePoints(std::string_view text);
size_t CodePointCount(std::string_view text);

// str.isspace() on the code point starting at text[pos]; `length` receives its byte length.
bool IsPythonWhitespaceAt(std::string_view text, size_t pos, size_t* length);

// str.strip() / lstrip() / rstrip(): without `chars`, Unicode whitespace; otherwise the code
// points in `chars`.
std::string_view PythonStrip(std::string_view text, bool left, bool right);
std::string_view PythonStripChars(std::string_view text, std::string_view chars, bool left,
                                  bool right);

// Case conversions of ASCII and Latin-1/Greek/Cyrillic letters (the scripts templates case-map
// in practice); other code points are kept.
std::string PythonUpper(std::string_view text);
std::string PythonLower(std::string_view text);
std::string PythonTitle(std::string_view text);       // str.title()
std::string PythonCapitalize(std::string_view text);  // str.capitalize()

// repr(float): the shortest digits that round-trip, fixed notation for exponents in [-4, 16).
std::string PythonFloatRepr(double value);

}  // namespace flatfleet::chat_template
