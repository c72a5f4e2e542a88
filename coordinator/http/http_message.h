// One HTTP request and its answer as the OpenAI-compatible API's handlers see them, apart from
// the server library that carries them, so that the handlers can be tested and fuzzed directly.
#pragma once

#include <map>
#include <string>

namespace flatfleet::coordinator::http {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // Decoded, without the query string: "/v1/batches/batch_1".
  std::string query;   // As sent, without '?': "limit=2&after=batch_1".
  // Header names in lower case. Only the ones the handlers read are kept.
  std::map<std::string, std::string> headers;
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra header lines, e.g. {"Allow", "GET, POST"}.
  std::map<std::string, std::string> headers;
};

}  // namespace flatfleet::coordinator::http
