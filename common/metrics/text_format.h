// Pieces of the Prometheus text exposition format 0.0.4.
#pragma once

#include <string>
#include <string_view>

namespace flatfleet::metrics {

// HELP text: backslash and newline are escaped.
std::string EscapeHelp(std::string_view help);

// Label values: backslash, double quote and newline are escaped.
std::string EscapeLabelValue(std::string_view value);

// Sample values and bucket bounds: "+Inf", "-Inf", "NaN", else the shortest text that reads
// back as the same double ("1", "0.25", "1e+21").
std::string FormatSampleValue(double value);

}  // namespace flatfleet::metrics
