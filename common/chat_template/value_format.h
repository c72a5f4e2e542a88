// str() and repr() of template values, as Python prints them: {{ x }} writes str(x), and
// containers print their items' repr ({'role': 'user'}, [1, 2.5, None, True]).
#pragma once

#include <string>

#include "common/chat_template/value.h"

namespace flatfleet::chat_template {

// str(value); undefined prints as the empty string.
std::string ToPythonStr(const Value& value);
std::string PythonRepr(const Value& value);
// repr() of a str: quoted, with Python's escapes of non-printable code points.
std::string PythonStringRepr(const std::string& text);

}  // namespace flatfleet::chat_template
