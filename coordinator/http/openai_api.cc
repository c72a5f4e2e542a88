#include "coordinator/http/openai_api.h"

#include <charconv>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "coordinator/batch_input_parser.h"
#include "coordinator/batch_output_line.h"
#include "coordinator/http/multipart_form.h"
#include "coordinator/http/openai_error.h"
#include "coordinator/random_id.h"
#include "coordinator/server/work_conversion.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator::http {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kOutputSuffix = "-output";
constexpr std::string_view kErrorsSuffix = "-errors";
constexpr size_t kMaxMetadataKeys = 16;
constexpr size_t kMaxMetadataKeyBytes = 64;
constexpr size_t kMaxMetadataValueBytes = 512;

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

HttpResponse JsonResponse(const Json& json, int status = 200) {
  HttpResponse response;
  response.status = status;
  response.body = Dump(json);
  return response;
}

HttpResponse MethodNotAllowed(const HttpRequest& request, std::string_view allowed) {
  HttpResponse response =
      ErrorResponse(405,
                    absl::StrCat("method ", request.method, " is not allowed on ", request.path,
                                 " (allowed: ", std::string(allowed), ")"),
                    "", "method_not_allowed");
  response.headers["Allow"] = std::string(allowed);
  return response;
}

HttpResponse NotFound(std::string_view what, std::string_view id) {
  return ErrorResponse(
      404, absl::StrCat("No ", std::string(what), " found with id '", std::string(id), "'."), "",
      "not_found");
}

// (Debian's absl has its own string_view, so these work on std::string_view directly.)
std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> pieces;
  while (true) {
    const size_t at = text.find(separator);
    pieces.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return pieces;
    text.remove_prefix(at + 1);
  }
}

// A whole decimal number (no sign, no spaces), or nothing.
template <typename Int>
std::optional<Int> ParseDecimal(std::string_view text) {
  Int value{};
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || text[0] == '-') {
    return std::nullopt;
  }
  return value;
}

// The value of `key` in an application/x-www-form-urlencoded query (no decoding needed for
// the ids and numbers read from it; '+' and '%' are not valid in them).
std::optional<std::string> QueryValue(std::string_view query, std::string_view key) {
  for (std::string_view pair : Split(query, '&')) {
    const size_t equals = pair.find('=');
    if (pair.substr(0, equals) == key) {
      return std::string(equals == std::string_view::npos ? "" : pair.substr(equals + 1));
    }
  }
  return std::nullopt;
}

// The result files of a batch are not stored: their ids name the batch and which half.
std::string ResultFileId(std::string_view job_id, bool errors) {
  return absl::StrCat("file-", std::string(job_id),
                      std::string(errors ? kErrorsSuffix : kOutputSuffix));
}

struct ResultFileName {
  std::string job_id;
  bool errors = false;
};

std::optional<ResultFileName> ParseResultFileId(std::string_view id) {
  if (!id.starts_with("file-batch_")) return std::nullopt;
  id.remove_prefix(5);
  for (const bool errors : {false, true}) {
    const std::string_view suffix = errors ? kErrorsSuffix : kOutputSuffix;
    if (id.ends_with(suffix)) {
      return ResultFileName{std::string(id.substr(0, id.size() - suffix.size())), errors};
    }
  }
  return std::nullopt;
}

Json FileObject(std::string_view id, int64_t bytes, int64_t created_at_s, std::string_view filename,
                std::string_view purpose) {
  Json file;
  file["id"] = std::string(id);
  file["object"] = "file";
  file["bytes"] = bytes;
  file["created_at"] = created_at_s;
  file["filename"] = std::string(filename);
  file["purpose"] = std::string(purpose);
  return file;
}

// A completion window: a positive count of hours, minutes or seconds ("24h" is what OpenAI
// accepts; shorter ones are for tests and short-lived batches). At most 7 days.
std::optional<int64_t> ParseCompletionWindowSeconds(std::string_view window) {
  if (window.size() < 2) return std::nullopt;
  const char unit = window.back();
  const std::optional<int64_t> parsed = ParseDecimal<int64_t>(window.substr(0, window.size() - 1));
  if (!parsed || *parsed <= 0) return std::nullopt;
  const int64_t count = *parsed;
  const int64_t scale = unit == 'h' ? 3600 : unit == 'm' ? 60 : unit == 's' ? 1 : 0;
  if (scale == 0 || count > 7 * 24 * 3600 / scale) return std::nullopt;
  return count * scale;
}

Json NullOrSeconds(int64_t ms) {
  if (ms <= 0) return nullptr;
  return ms / 1000;
}

Json BatchObject(const JobRecord& job) {
  const bool expired = job.expired_at_ms > 0;
  const bool terminal = IsTerminal(job.state);
  std::string status;
  switch (job.state) {
    case JobState::kValidating:
      status = "validating";
      break;
    case JobState::kInProgress:
      status = "in_progress";
      break;
    case JobState::kFinalizing:
      status = "finalizing";
      break;
    case JobState::kCompleted:
      status = "completed";
      break;
    case JobState::kFailed:
      status = "failed";
      break;
    case JobState::kCancelling:
      // An expired batch stops its running requests before it shows as expired.
      status = expired ? "finalizing" : "cancelling";
      break;
    case JobState::kCancelled:
      status = expired ? "expired" : "cancelled";
      break;
  }
  const int64_t failed = job.counts.failed + job.counts.cancelled;
  Json batch;
  batch["id"] = job.id;
  batch["object"] = "batch";
  batch["endpoint"] = job.options.endpoint.empty() ? Json() : Json(job.options.endpoint);
  if (job.state == JobState::kFailed && !job.error.empty()) {
    Json error = {{"code", kInvalidRequestCode},
                  {"message", job.error},
                  {"param", nullptr},
                  {"line", nullptr}};
    batch["errors"] = {{"object", "list"}, {"data", Json::array({error})}};
  } else {
    batch["errors"] = nullptr;
  }
  batch["input_file_id"] =
      job.options.input_file_id.empty() ? Json() : Json(job.options.input_file_id);
  batch["completion_window"] =
      job.options.completion_window.empty() ? Json("24h") : Json(job.options.completion_window);
  batch["status"] = status;
  batch["output_file_id"] =
      terminal && job.counts.completed > 0 ? Json(ResultFileId(job.id, false)) : Json();
  batch["error_file_id"] = terminal && failed > 0 ? Json(ResultFileId(job.id, true)) : Json();
  batch["created_at"] = job.created_at_ms / 1000;
  batch["in_progress_at"] =
      job.state == JobState::kFailed ? Json() : Json(job.created_at_ms / 1000);
  batch["expires_at"] = NullOrSeconds(job.options.expires_at_ms);
  batch["finalizing_at"] = nullptr;
  batch["completed_at"] =
      job.state == JobState::kCompleted ? NullOrSeconds(job.updated_at_ms) : Json();
  batch["failed_at"] = job.state == JobState::kFailed ? NullOrSeconds(job.updated_at_ms) : Json();
  batch["expired_at"] = NullOrSeconds(job.expired_at_ms);
  batch["cancelling_at"] = (job.state == JobState::kCancelling || job.state == JobState::kCancelled)
                               ? NullOrSeconds(expired ? job.expired_at_ms : job.updated_at_ms)
                               : Json();
  batch["cancelled_at"] =
      job.state == JobState::kCancelled && !expired ? NullOrSeconds(job.updated_at_ms) : Json();
  batch["request_counts"] = {
      {"total", job.counts.total}, {"completed", job.counts.completed}, {"failed", failed}};
  batch["metadata"] = job.options.metadata.empty() ? Json() : Json(job.options.metadata);
  batch["model"] = job.options.model;
  return batch;
}

// A JSON request body that must be an object; the error names what is wrong.
absl::StatusOr<nlohmann::json> ParseJsonObject(std::string_view body) {
  nlohmann::json json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload.)");
  }
  if (!json.is_object())
    return absl::InvalidArgumentError("the request body must be a JSON object");
  return json;
}

Json Usage(const v1::Response& response) {
  return {{"prompt_tokens", response.usage().prompt_tokens()},
          {"completion_tokens", response.usage().completion_tokens()},
          {"total_tokens", response.usage().total_tokens()}};
}

std::string FinishReason(const v1::Response& response) {
  return response.finish_reason() == v1::FINISH_REASON_LENGTH ? "length" : "stop";
}

// OpenAI's streamed chunk shapes, one server-sent event each.
class StreamChunks {
 public:
  StreamChunks(std::string id, std::string model, bool chat, int64_t created, bool include_usage)
      : id_(std::move(id)),
        model_(std::move(model)),
        chat_(chat),
        created_(created),
        include_usage_(include_usage) {}

  // Chat streams open with the assistant's role; completion streams have no opening event.
  const std::string& id() const { return id_; }
  std::string Opening() const {
    if (!chat_) return "";
    return Event(Chunk({{"index", 0},
                        {"delta", {{"role", "assistant"}, {"content", ""}}},
                        {"logprobs", nullptr},
                        {"finish_reason", nullptr}}));
  }
  std::string Text(const std::string& text) const {
    if (chat_) {
      return Event(Chunk({{"index", 0},
                          {"delta", {{"content", text}}},
                          {"logprobs", nullptr},
                          {"finish_reason", nullptr}}));
    }
    return Event(
        Chunk({{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", nullptr}}));
  }
  // The finish reason, the usage chunk when asked for, and [DONE].
  std::string Closing(const v1::Response& response) const {
    std::string events;
    if (chat_) {
      events = Event(Chunk({{"index", 0},
                            {"delta", Json::object()},
                            {"logprobs", nullptr},
                            {"finish_reason", FinishReason(response)}}));
    } else {
      events = Event(Chunk({{"index", 0},
                            {"text", ""},
                            {"logprobs", nullptr},
                            {"finish_reason", FinishReason(response)}}));
    }
    if (include_usage_) {
      Json last = Chunk(nullptr);
      last["usage"] = Usage(response);
      events += Event(last);
    }
    return events + "data: [DONE]\n\n";
  }

 private:
  static std::string Event(const Json& chunk) {
    return absl::StrCat("data: ", Dump(chunk), "\n\n");
  }
  Json Chunk(Json choice) const {
    Json out;
    out["id"] = id_;
    out["object"] = chat_ ? "chat.completion.chunk" : "text_completion";
    out["created"] = created_;
    out["model"] = model_;
    out["choices"] = choice.is_null() ? Json::array() : Json::array({std::move(choice)});
    if (include_usage_) out["usage"] = nullptr;
    return out;
  }

  const std::string id_;
  const std::string model_;
  const bool chat_;
  const int64_t created_;
  const bool include_usage_;
};

// Streams one interactive request's events as the worker releases its text. Returns the error
// response to send instead when it fails before anything was written.
HttpResponse StreamCompletion(const OpenAiApiBackend::StreamGenerate& generate,
                              absl::Duration timeout, const v1::RequestBody& request_body,
                              const StreamChunks& chunks, const BodyWriter& write) {
  bool started = false;
  bool client_open = true;
  std::string sent;  // The text streamed so far.
  const auto send = [&](const std::string& events) {
    if (client_open && !events.empty()) client_open = write(events);
  };
  const auto start = [&] {
    if (started) return;
    started = true;
    send(chunks.Opening());
  };
  absl::StatusOr<v1::Response> response =
      generate(request_body, timeout, [&](const std::string& text) {
        start();
        sent += text;
        send(chunks.Text(text));
        return client_open;  // false: the client is gone, cancel the request
      });
  if (!client_open) return {};  // nobody to tell how it ended
  if (!response.ok()) {
    const int status = HttpStatusFor(response.status().code());
    HttpResponse error = ErrorResponse(status, std::string(response.status().message()));
    if (!started) return error;  // Nothing sent yet: a plain error with its status.
    // The status line is gone: the error object as an event, as OpenAI sends one mid-stream.
    send(absl::StrCat("data: ", error.body, "\n\n"));
    return {};
  }
  start();
  // The worker sends text only once it is final, so what was streamed is a prefix of the
  // response's text; the rest (text held back at the end, or an engine that does not stream)
  // goes out now.
  if (response->text().starts_with(sent)) {
    const std::string rest = response->text().substr(sent.size());
    if (!rest.empty()) send(chunks.Text(rest));
  } else {
    std::fprintf(stderr, "coordinator: streamed text of %s is not a prefix of its result\n",
                 chunks.id().c_str());
  }
  send(chunks.Closing(*response));
  return {};
}

// Server-sent events of a finished response when the backend cannot stream: the whole text in
// one content chunk.
std::string StreamEvents(const StreamChunks& chunks, const v1::Response& response) {
  return absl::StrCat(chunks.Opening(), chunks.Text(response.text()), chunks.Closing(response));
}

}  // namespace

OpenAiApi::OpenAiApi(OpenAiApiOptions options, OpenAiApiBackend backend)
    : options_(std::move(options)), backend_(std::move(backend)) {}

int64_t OpenAiApi::NowS() const {
  return backend_.now_s ? backend_.now_s() : absl::ToUnixSeconds(absl::Now());
}

HttpResponse OpenAiApi::Handle(const HttpRequest& request) {
  try {
    return Route(request);
  } catch (const std::exception& error) {
    // Nothing here should throw; a bug must not take the coordinator down with it.
    return ErrorResponse(500, absl::StrCat("internal error: ", error.what()));
  }
}

HttpResponse OpenAiApi::Route(const HttpRequest& request) {
  std::string_view path = request.path;
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  std::vector<std::string> parts;
  for (std::string_view part : Split(path, '/')) {
    if (!part.empty()) parts.emplace_back(part);
  }
  const std::string& method = request.method;
  const bool get = method == "GET" || method == "HEAD";
  const bool post = method == "POST";
  if (parts.empty() || parts[0] != "v1") {
    return ErrorResponse(404, absl::StrCat("Invalid URL (", method, " ", request.path, ")"), "",
                         "unknown_url");
  }
  const size_t n = parts.size();
  if (n == 2 && parts[1] == "files") {
    if (post) return UploadFile(request);
    if (get) return ListFiles(request);
    return MethodNotAllowed(request, "GET, POST");
  }
  if (n == 3 && parts[1] == "files") {
    if (get) return GetFile(parts[2]);
    if (method == "DELETE") return DeleteFile(parts[2]);
    return MethodNotAllowed(request, "GET, DELETE");
  }
  if (n == 4 && parts[1] == "files" && parts[3] == "content") {
    if (get) return GetFileContent(parts[2]);
    return MethodNotAllowed(request, "GET");
  }
  if (n == 2 && parts[1] == "batches") {
    if (post) return CreateBatch(request);
    if (get) return ListBatches(request);
    return MethodNotAllowed(request, "GET, POST");
  }
  if (n == 3 && parts[1] == "batches") {
    if (get) return GetBatch(parts[2]);
    return MethodNotAllowed(request, "GET");
  }
  if (n == 4 && parts[1] == "batches" && parts[3] == "cancel") {
    if (post) return CancelBatch(parts[2]);
    return MethodNotAllowed(request, "POST");
  }
  if (n == 2 && parts[1] == "models") {
    if (get) return ListModels();
    return MethodNotAllowed(request, "GET");
  }
  if (n == 3 && parts[1] == "models") {
    if (get) return GetModel(parts[2]);
    return MethodNotAllowed(request, "GET");
  }
  if (n == 2 && parts[1] == "completions") {
    if (post) return Complete(request, /*chat=*/false);
    return MethodNotAllowed(request, "POST");
  }
  if (n == 3 && parts[1] == "chat" && parts[2] == "completions") {
    if (post) return Complete(request, /*chat=*/true);
    return MethodNotAllowed(request, "POST");
  }
  return ErrorResponse(404, absl::StrCat("Invalid URL (", method, " ", request.path, ")"), "",
                       "unknown_url");
}

HttpResponse OpenAiApi::UploadFile(const HttpRequest& request) {
  // The server refused bodies over the limit before reading them; this catches the file part
  // (and bodies of unknown length that the server bounded while reading).
  if (request.body.size() > options_.max_file_bytes + (64 << 10)) {
    return ErrorResponse(413,
                         absl::StrCat("the upload exceeds the coordinator's limit of ",
                                      options_.max_file_bytes, " bytes per file"),
                         "file", "file_too_large");
  }
  auto content_type = request.headers.find("content-type");
  absl::StatusOr<std::vector<FormPart>> parts = ParseMultipartForm(
      content_type == request.headers.end() ? "" : content_type->second, request.body);
  if (!parts.ok()) return ErrorResponse(400, std::string(parts.status().message()));
  const FormPart* file = nullptr;
  std::optional<std::string_view> purpose;
  for (const FormPart& part : *parts) {
    if (part.name == "file") file = &part;
    if (part.name == "purpose") purpose = part.content;
  }
  if (!purpose) return ErrorResponse(400, "Missing required parameter: 'purpose'.", "purpose");
  if (*purpose != "batch") {
    return ErrorResponse(400,
                         absl::StrCat("'", std::string(*purpose),
                                      "' is not a supported purpose; this server accepts "
                                      "'batch'"),
                         "purpose");
  }
  if (file == nullptr) return ErrorResponse(400, "Missing required parameter: 'file'.", "file");
  if (file->content.size() > options_.max_file_bytes) {
    return ErrorResponse(
        413,
        absl::StrCat("the file is ", file->content.size(), " bytes; the coordinator's limit is ",
                     options_.max_file_bytes, " bytes per file"),
        "file", "file_too_large");
  }
  absl::StatusOr<StoredFile> stored = backend_.files->Create(
      file->filename.value_or("upload.jsonl"), *purpose, file->content, NowS());
  if (!stored.ok()) return ErrorResponse(stored.status());
  return JsonResponse(FileObject(stored->id, stored->bytes, stored->created_at_s, stored->filename,
                                 stored->purpose));
}

// OpenAI's file list: `order` by creation (desc by default), a page of `limit` files after the
// file id `after`, optionally only those of one `purpose`.
HttpResponse OpenAiApi::ListFiles(const HttpRequest& request) {
  uint32_t limit = options_.max_file_page_size;
  if (std::optional<std::string> text = QueryValue(request.query, "limit")) {
    const std::optional<uint32_t> parsed = ParseDecimal<uint32_t>(*text);
    if (parsed) limit = *parsed;
    if (!parsed || limit < 1 || limit > options_.max_file_page_size) {
      return ErrorResponse(
          400, absl::StrCat("limit must be an integer from 1 to ", options_.max_file_page_size),
          "limit");
    }
  }
  bool ascending = false;
  if (std::optional<std::string> order = QueryValue(request.query, "order")) {
    if (*order != "asc" && *order != "desc") {
      return ErrorResponse(400, absl::StrCat("order must be 'asc' or 'desc', got '", *order, "'"),
                           "order");
    }
    ascending = *order == "asc";
  }
  const std::optional<std::string> purpose = QueryValue(request.query, "purpose");
  absl::StatusOr<std::vector<StoredFile>> files = backend_.files->List();
  if (!files.ok()) return ErrorResponse(files.status());
  if (ascending) std::reverse(files->begin(), files->end());
  if (purpose) std::erase_if(*files, [&](const StoredFile& f) { return f.purpose != *purpose; });
  auto begin = files->begin();
  if (std::optional<std::string> after = QueryValue(request.query, "after");
      after && !after->empty()) {
    begin = std::find_if(files->begin(), files->end(),
                         [&](const StoredFile& f) { return f.id == *after; });
    if (begin == files->end()) {
      return ErrorResponse(
          400, absl::StrCat("after must be the id of a listed file; no file '", *after, "'"),
          "after");
    }
    ++begin;
  }
  const auto end =
      files->end() - begin > static_cast<std::ptrdiff_t>(limit) ? begin + limit : files->end();
  Json data = Json::array();
  for (auto file = begin; file != end; ++file) {
    data.push_back(
        FileObject(file->id, file->bytes, file->created_at_s, file->filename, file->purpose));
  }
  Json page;
  page["object"] = "list";
  page["data"] = std::move(data);
  page["first_id"] = begin == end ? Json() : Json(begin->id);
  page["last_id"] = begin == end ? Json() : Json((end - 1)->id);
  page["has_more"] = end != files->end();
  return JsonResponse(page);
}

HttpResponse OpenAiApi::GetFile(const std::string& id) {
  if (std::optional<ResultFileName> result = ParseResultFileId(id)) {
    absl::StatusOr<JobRecord> job = backend_.store->GetJob(result->job_id);
    if (!job.ok() || !IsTerminal(job->state)) return NotFound("file", id);
    absl::StatusOr<std::string> content = RenderResultFile(*job, result->errors);
    if (!content.ok()) return ErrorResponse(content.status());
    return JsonResponse(FileObject(
        id, static_cast<int64_t>(content->size()), job->updated_at_ms / 1000,
        absl::StrCat(job->id, result->errors ? "_errors" : "_output", ".jsonl"), "batch_output"));
  }
  absl::StatusOr<StoredFile> file = backend_.files->Get(id);
  if (absl::IsNotFound(file.status())) return NotFound("file", id);
  if (!file.ok()) return ErrorResponse(file.status());
  return JsonResponse(
      FileObject(file->id, file->bytes, file->created_at_s, file->filename, file->purpose));
}

HttpResponse OpenAiApi::GetFileContent(const std::string& id) {
  absl::StatusOr<std::string> content;
  if (std::optional<ResultFileName> result = ParseResultFileId(id)) {
    absl::StatusOr<JobRecord> job = backend_.store->GetJob(result->job_id);
    if (!job.ok() || !IsTerminal(job->state)) return NotFound("file", id);
    content = RenderResultFile(*job, result->errors);
  } else {
    content = backend_.files->Content(id);
    if (absl::IsNotFound(content.status())) return NotFound("file", id);
  }
  if (!content.ok()) return ErrorResponse(content.status());
  HttpResponse response;
  response.content_type = "application/octet-stream";
  response.body = *std::move(content);
  return response;
}

HttpResponse OpenAiApi::DeleteFile(const std::string& id) {
  if (ParseResultFileId(id)) {
    return ErrorResponse(400,
                         "a batch's output and error files are kept as long as the batch and "
                         "cannot be deleted on their own",
                         "file_id");
  }
  absl::Status deleted = backend_.files->Delete(id);
  if (absl::IsNotFound(deleted)) return NotFound("file", id);
  if (!deleted.ok()) return ErrorResponse(deleted);
  return JsonResponse({{"id", id}, {"object", "file"}, {"deleted", true}});
}

absl::StatusOr<std::string> OpenAiApi::RenderResultFile(const JobRecord& job, bool errors) {
  constexpr int kResultsPerRead = 256;
  std::string content;
  int64_t next = 0;
  while (true) {
    absl::StatusOr<std::vector<StoredResult>> results =
        backend_.store->ReadResults(job.id, next, kResultsPerRead);
    if (!results.ok()) return results.status();
    for (const StoredResult& stored : *results) {
      next = stored.sequence + 1;
      if ((stored.outcome == ResultOutcome::kFailed) != errors) continue;
      absl::StatusOr<std::string> line = RenderOpenAiLine(job.id, stored, job.expired_at_ms > 0);
      if (!line.ok()) return line.status();
      absl::StrAppend(&content, *line, "\n");
    }
    if (results->size() < kResultsPerRead) return content;
  }
}

HttpResponse OpenAiApi::CreateBatch(const HttpRequest& request) {
  absl::StatusOr<nlohmann::json> body = ParseJsonObject(request.body);
  if (!body.ok()) return ErrorResponse(400, std::string(body.status().message()));
  const auto string_field = [&](const char* key) -> std::optional<std::string> {
    auto it = body->find(key);
    if (it == body->end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  for (const char* key : {"input_file_id", "endpoint", "completion_window"}) {
    if (!body->contains(key)) {
      return ErrorResponse(400, absl::StrCat("Missing required parameter: '", key, "'."), key);
    }
    if (!string_field(key)) {
      return ErrorResponse(400, absl::StrCat("'", key, "' must be a string"), key);
    }
  }
  for (const auto& [key, value] : body->items()) {
    if (key != "input_file_id" && key != "endpoint" && key != "completion_window" &&
        key != "metadata" && !(key == "output_expires_after" && value.is_null())) {
      return ErrorResponse(400, absl::StrCat("Unrecognized request argument supplied: ", key), key);
    }
  }
  const std::string input_file_id = *string_field("input_file_id");
  const std::string endpoint = *string_field("endpoint");
  const std::string window = *string_field("completion_window");
  if (endpoint != EndpointUrl(Endpoint::kCompletions) &&
      endpoint != EndpointUrl(Endpoint::kChatCompletions)) {
    return ErrorResponse(400,
                         absl::StrCat("unsupported endpoint '", endpoint,
                                      "'; supported: /v1/completions, /v1/chat/completions"),
                         "endpoint");
  }
  const std::optional<int64_t> window_s = ParseCompletionWindowSeconds(window);
  if (!window_s) {
    return ErrorResponse(400,
                         absl::StrCat("invalid completion_window '", window,
                                      "'; give hours, minutes or seconds such as '24h' (at most "
                                      "7 days)"),
                         "completion_window");
  }
  JobOptions job_options;
  if (auto it = body->find("metadata"); it != body->end() && !it->is_null()) {
    if (!it->is_object() || it->size() > kMaxMetadataKeys) {
      return ErrorResponse(
          400, absl::StrCat("metadata must be an object of at most ", kMaxMetadataKeys, " strings"),
          "metadata");
    }
    for (const auto& [key, value] : it->items()) {
      if (!value.is_string() || key.size() > kMaxMetadataKeyBytes ||
          value.get<std::string>().size() > kMaxMetadataValueBytes) {
        return ErrorResponse(400,
                             absl::StrCat("metadata.", key, " must be a string (keys of at most ",
                                          kMaxMetadataKeyBytes, " bytes, values of at most ",
                                          kMaxMetadataValueBytes, ")"),
                             absl::StrCat("metadata.", key));
      }
      job_options.metadata[key] = value.get<std::string>();
    }
  }
  absl::StatusOr<StoredFile> file = backend_.files->Get(input_file_id);
  if (absl::IsNotFound(file.status())) return NotFound("file", input_file_id);
  if (!file.ok()) return ErrorResponse(file.status());
  absl::StatusOr<std::string> content = backend_.files->Content(input_file_id);
  if (!content.ok()) return ErrorResponse(content.status());
  BatchInputLimits limits = options_.input_limits;
  limits.expected_model = options_.model;
  ParsedBatch parsed = ParseBatchInput(*content, limits);
  if (parsed.too_many_lines) {
    return ErrorResponse(400,
                         absl::StrCat("the file has more than ", limits.max_lines,
                                      " request lines; split it into several batches"),
                         "input_file_id");
  }
  // Every line must call the batch's endpoint (a line without "url" is read by its body).
  std::vector<BatchRequestLine> requests;
  std::vector<LineError> invalid = std::move(parsed.invalid_lines);
  for (BatchRequestLine& line : parsed.requests) {
    if (EndpointUrl(line.endpoint) == endpoint) {
      requests.push_back(std::move(line));
    } else {
      invalid.push_back(
          LineError{line.line_number, "url",
                    absl::StrCat("the line calls ", std::string(EndpointUrl(line.endpoint)),
                                 " but the batch's endpoint is ", endpoint),
                    line.custom_id});
    }
  }
  std::sort(invalid.begin(), invalid.end(),
            [](const LineError& a, const LineError& b) { return a.line_number < b.line_number; });
  if (requests.empty() && invalid.empty()) {
    return ErrorResponse(400, "the input file has no request lines", "input_file_id");
  }
  job_options.model = options_.model;
  job_options.max_attempts = options_.default_max_attempts;
  job_options.endpoint = endpoint;
  job_options.input_file_id = input_file_id;
  job_options.completion_window = window;
  job_options.expires_at_ms = (NowS() + *window_s) * 1000;
  absl::StatusOr<JobRecord> job = backend_.store->CreateJob(job_options, requests, invalid);
  if (!job.ok() && backend_.store->StorageFailure()) {
    return ErrorResponse(503,
                         absl::StrCat("the coordinator cannot store new batches now (job store "
                                      "full or failing); nothing was created, retry later: ",
                                      std::string(job.status().message())));
  }
  if (!job.ok()) return ErrorResponse(job.status());
  if (!requests.empty() && backend_.wake) backend_.wake();
  return JsonResponse(BatchObject(*job));
}

HttpResponse OpenAiApi::GetBatch(const std::string& id) {
  absl::StatusOr<JobRecord> job = backend_.store->GetJob(id);
  if (absl::IsNotFound(job.status())) return NotFound("batch", id);
  if (!job.ok()) return ErrorResponse(job.status());
  return JsonResponse(BatchObject(*job));
}

HttpResponse OpenAiApi::ListBatches(const HttpRequest& request) {
  uint32_t limit = options_.default_page_size;
  if (std::optional<std::string> text = QueryValue(request.query, "limit")) {
    const std::optional<uint32_t> parsed = ParseDecimal<uint32_t>(*text);
    if (parsed) limit = *parsed;
    if (!parsed || limit < 1 || limit > options_.max_page_size) {
      return ErrorResponse(
          400, absl::StrCat("limit must be an integer from 1 to ", options_.max_page_size),
          "limit");
    }
  }
  std::optional<int64_t> before;
  std::optional<std::string> after = QueryValue(request.query, "after");
  if (after && !after->empty()) {
    absl::StatusOr<JobRecord> cursor = backend_.store->GetJob(*after);
    if (absl::IsNotFound(cursor.status())) return NotFound("batch", *after);
    if (!cursor.ok()) return ErrorResponse(cursor.status());
    before = cursor->position;
  }
  // One more than asked, to tell whether another page follows.
  absl::StatusOr<std::vector<JobRecord>> jobs =
      backend_.store->ListJobs(static_cast<int>(limit) + 1, before);
  if (!jobs.ok()) return ErrorResponse(jobs.status());
  const bool has_more = jobs->size() > limit;
  if (has_more) jobs->resize(limit);
  Json data = Json::array();
  for (const JobRecord& job : *jobs) data.push_back(BatchObject(job));
  Json page;
  page["object"] = "list";
  page["data"] = std::move(data);
  page["first_id"] = jobs->empty() ? Json() : Json(jobs->front().id);
  page["last_id"] = jobs->empty() ? Json() : Json(jobs->back().id);
  page["has_more"] = has_more;
  return JsonResponse(page);
}

HttpResponse OpenAiApi::CancelBatch(const std::string& id) {
  absl::StatusOr<CancelReport> report = backend_.store->CancelJob(id);
  if (absl::IsNotFound(report.status())) return NotFound("batch", id);
  if (absl::IsFailedPrecondition(report.status())) {
    return ErrorResponse(
        409, absl::StrCat("Cannot cancel batch ", id, ": ", std::string(report.status().message())),
        "", "batch_not_cancellable");
  }
  if (!report.ok()) return ErrorResponse(report.status());
  if (backend_.stop_job) backend_.stop_job(id, report->in_flight);
  return JsonResponse(BatchObject(report->job));
}

void OpenAiApi::ExpireDueBatches() {
  absl::StatusOr<std::vector<std::string>> due = backend_.store->ListJobsPastExpiry();
  if (!due.ok()) return;  // The store counted the failure; the next sweep tries again.
  for (const std::string& id : *due) {
    absl::StatusOr<CancelReport> report = backend_.store->ExpireJob(id);
    if (!report.ok()) {
      std::fprintf(stderr, "coordinator: cannot expire %s: %s\n", id.c_str(),
                   std::string(report.status().message()).c_str());
      continue;
    }
    if (backend_.stop_job) backend_.stop_job(id, report->in_flight);
  }
}

HttpResponse OpenAiApi::ListModels() {
  Json model = {{"id", options_.model},
                {"object", "model"},
                {"created", options_.created_at_s},
                {"owned_by", "flatfleet"}};
  return JsonResponse({{"object", "list"}, {"data", Json::array({model})}});
}

HttpResponse OpenAiApi::GetModel(const std::string& id) {
  if (id != options_.model) {
    return ErrorResponse(404, absl::StrCat("The model '", id, "' does not exist"), "model",
                         "model_not_found");
  }
  return JsonResponse({{"id", options_.model},
                       {"object", "model"},
                       {"created", options_.created_at_s},
                       {"owned_by", "flatfleet"}});
}

HttpResponse OpenAiApi::Complete(const HttpRequest& request, bool chat) {
  absl::StatusOr<nlohmann::json> body = ParseJsonObject(request.body);
  if (!body.ok()) return ErrorResponse(400, std::string(body.status().message()));
  auto model = body->find("model");
  if (model == body->end())
    return ErrorResponse(400, "you must provide a model parameter", "model");
  if (!model->is_string()) return ErrorResponse(400, "model must be a string", "model");
  if (model->get<std::string>() != options_.model) {
    return ErrorResponse(
        404,
        absl::StrCat("The model '", model->get<std::string>(),
                     "' does not exist; this server serves '", options_.model, "'"),
        "model", "model_not_found");
  }
  const char* input = chat ? "messages" : "prompt";
  if (!body->contains(input)) {
    return ErrorResponse(400, absl::StrCat("Missing required parameter: '", input, "'."), input);
  }
  bool stream = false;
  bool include_usage = false;
  if (auto it = body->find("stream"); it != body->end()) {
    if (!it->is_boolean() && !it->is_null()) {
      return ErrorResponse(400, "stream must be a boolean", "stream");
    }
    stream = it->is_boolean() && it->get<bool>();
    body->erase(it);
  }
  if (auto it = body->find("stream_options"); it != body->end()) {
    if (it->is_object() && it->contains("include_usage")) {
      const nlohmann::json& usage = (*it)["include_usage"];
      if (!usage.is_boolean()) {
        return ErrorResponse(400, "stream_options.include_usage must be a boolean",
                             "stream_options.include_usage");
      }
      include_usage = usage.get<bool>();
    } else if (!it->is_null() && !it->is_object()) {
      return ErrorResponse(400, "stream_options must be an object", "stream_options");
    }
    body->erase(it);
  }
  // The same validation and defaults as a batch line of this endpoint.
  const Endpoint endpoint = chat ? Endpoint::kChatCompletions : Endpoint::kCompletions;
  nlohmann::json line = {{"custom_id", "interactive"},
                         {"method", "POST"},
                         {"url", std::string(EndpointUrl(endpoint))},
                         {"body", *body}};
  BatchInputLimits limits = options_.input_limits;
  limits.expected_model = options_.model;
  ParsedBatch parsed =
      ParseBatchInput(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), limits);
  if (!parsed.ok() || parsed.requests.size() != 1) {
    if (parsed.errors.empty()) return ErrorResponse(400, "invalid request");
    const LineError& error = parsed.errors[0];
    const std::string param =
        error.field.starts_with("body.") ? error.field.substr(5) : error.field;
    return ErrorResponse(
        400, param.empty() ? error.message : absl::StrCat(param, ": ", error.message), param);
  }
  // Streamed chunks carry one choice's text; several choices would interleave in one stream.
  if (stream && ToRequestBodyProto(parsed.requests[0]).sampling().n() > 1) {
    return ErrorResponse(400, "n > 1 is not supported with stream: true; set n to 1 or omit stream",
                         "n");
  }
  const std::string id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", RandomHexId());
  const int64_t created = NowS();
  if (stream && backend_.stream_generate) {
    HttpResponse events;
    events.content_type = "text/event-stream";
    events.headers["Cache-Control"] = "no-cache";
    events.stream = [this, request_body = ToRequestBodyProto(parsed.requests[0]),
                     chunks = StreamChunks(id, options_.model, chat, created, include_usage)](
                        const BodyWriter& write) {
      return StreamCompletion(backend_.stream_generate, options_.generate_timeout, request_body,
                              chunks, write);
    };
    return events;
  }
  if (!backend_.generate) return ErrorResponse(503, "no worker can serve requests");
  absl::StatusOr<v1::Response> response =
      backend_.generate(ToRequestBodyProto(parsed.requests[0]), options_.generate_timeout);
  if (!response.ok()) {
    const int status = HttpStatusFor(response.status().code());
    return ErrorResponse(status, std::string(response.status().message()));
  }
  if (stream) {
    HttpResponse events;
    events.content_type = "text/event-stream";
    events.headers["Cache-Control"] = "no-cache";
    events.body =
        StreamEvents(StreamChunks(id, options_.model, chat, created, include_usage), *response);
    return events;
  }
  HttpResponse out;
  out.body = CompletionBody(id, options_.model, endpoint, created, *response)
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return out;
}

}  // namespace flatfleet::coordinator::http
