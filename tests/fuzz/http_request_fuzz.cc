// Fuzzes the OpenAI-compatible HTTP API's request handling: routing, JSON bodies, multipart
// uploads and the batch files they create. The input is "METHOD\nPATH\nQUERY\nCONTENT-TYPE\n"
// then the body. Any request must be answered (never a crash or an exception) with a status
// from 200 to 599; every JSON answer must parse, and every failure must carry OpenAI's error
// object.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "coordinator/http/file_store.h"
#include "coordinator/http/multipart_form.h"
#include "coordinator/http/openai_api.h"
#include "coordinator/job_store.h"
#include "nlohmann/json.hpp"

namespace {

using flatfleet::coordinator::JobStore;
using namespace flatfleet::coordinator::http;

struct Fixture {
  std::unique_ptr<JobStore> store;
  std::unique_ptr<FileStore> files;
  std::unique_ptr<OpenAiApi> api;
};

Fixture& GetFixture() {
  static Fixture* fixture = [] {
    auto* made = new Fixture;
    const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                      ("flatfleet-http-fuzz-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    made->store = *JobStore::Open((dir / "jobs.db").string());
    made->files = *FileStore::Open((dir / "files").string());
    OpenAiApiOptions options;
    options.model = "demo";
    options.max_file_bytes = 1 << 16;
    OpenAiApiBackend backend;
    backend.store = made->store.get();
    backend.files = made->files.get();
    backend.generate = [](const flatfleet::v1::RequestBody& body,
                          absl::Duration) -> absl::StatusOr<flatfleet::v1::Response> {
      flatfleet::v1::Response response;
      response.set_text(body.has_messages() ? "chat" : body.prompt().substr(0, 8));
      return response;
    };
    // Streams the same text in pieces of 3 bytes.
    backend.stream_generate = [](const flatfleet::v1::RequestBody& body, absl::Duration,
                                 const std::function<bool(const std::string&)>& on_text)
        -> absl::StatusOr<flatfleet::v1::Response> {
      flatfleet::v1::Response response;
      response.set_text(body.has_messages() ? "chat" : body.prompt().substr(0, 8));
      for (size_t at = 0; at < response.text().size(); at += 3) {
        on_text(response.text().substr(at, 3));
      }
      return response;
    };
    made->api = std::make_unique<OpenAiApi>(options, backend);
    return made;
  }();
  return *fixture;
}

// The next '\n'-terminated field of `input`, consumed.
std::string_view Field(std::string_view& input) {
  const size_t end = input.find('\n');
  const std::string_view field = input.substr(0, end);
  input.remove_prefix(end == std::string_view::npos ? input.size() : end + 1);
  return field;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  HttpRequest request;
  request.method = std::string(Field(input));
  request.path = std::string(Field(input));
  request.query = std::string(Field(input));
  request.headers["content-type"] = std::string(Field(input));
  request.body = std::string(input);

  // The multipart parser alone: parts must lie inside the body.
  absl::StatusOr<std::vector<FormPart>> parts =
      ParseMultipartForm(request.headers["content-type"], request.body);
  if (parts.ok()) {
    for (const FormPart& part : *parts) {
      if (part.content.data() < request.body.data() ||
          part.content.data() + part.content.size() > request.body.data() + request.body.size()) {
        std::abort();
      }
    }
  }

  Fixture& fixture = GetFixture();
  HttpResponse response = fixture.api->Handle(request);
  if (response.stream) {
    // Server-sent events: each a JSON object, the last [DONE].
    std::string events;
    HttpResponse instead = response.stream([&](std::string_view bytes) {
      events.append(bytes);
      return true;
    });
    if (events.empty()) {
      response = std::move(instead);
    } else {
      if (!events.ends_with("data: [DONE]\n\n")) std::abort();
      for (size_t at = 0; at < events.size();) {
        const size_t end = events.find("\n\n", at);
        if (end == std::string::npos || events.compare(at, 6, "data: ") != 0) std::abort();
        const std::string data = events.substr(at + 6, end - at - 6);
        if (data != "[DONE]" && !nlohmann::json::parse(data, nullptr, false).is_object()) {
          std::abort();
        }
        at = end + 2;
      }
    }
  }
  if (response.status < 200 || response.status > 599) std::abort();
  if (response.content_type == "application/json") {
    const nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
    if (body.is_discarded()) std::abort();
    if (response.status >= 400) {
      if (!body.is_object() || !body.contains("error") || !body["error"].is_object() ||
          !body["error"].contains("message") || !body["error"]["message"].is_string()) {
        std::abort();
      }
    }
  }
  // Batches the input created run nowhere; expiring them exercises the store's sweep.
  fixture.api->ExpireDueBatches();
  return 0;
}
