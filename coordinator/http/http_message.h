// One HTTP request and its answer as the OpenAI-compatible API's handlers see them, apart from
// the server library that carries them, so that the handlers can be tested and fuzzed directly.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace flatfleet::coordinator::http {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // Decoded, without the query string: "/v1/batches/batch_1".
  std::string query;   // As sent, without '?': "limit=2&after=batch_1".
  // Header names in lower case. Only the ones the handlers read are kept.
  std::map<std::string, std::string> headers;
  std::string body;
};

struct HttpResponse;
// Sends part of a streamed body; false once the client has gone.
using BodyWriter = std::function<bool(std::string_view bytes)>;

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra header lines, e.g. {"Allow", "GET, POST"}.
  std::map<std::string, std::string> headers;
  // When set, the body is produced while it is sent (server-sent events): the server calls it
  // with a writer that sends the status line and headers above before the first bytes. If it
  // writes nothing, the response it returns is sent instead (an error found before the first
  // event keeps its status).
  std::function<HttpResponse(const BodyWriter& write)> stream;
};

}  // namespace flatfleet::coordinator::http
