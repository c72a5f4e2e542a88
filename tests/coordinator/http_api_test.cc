// The OpenAI-compatible HTTP API's handlers against a real job store and file directory, with
// the scheduler replaced by callbacks: status codes and error shapes, files, batches (objects,
// pagination, cancel, expiry, result files), models and interactive calls (SSE included).
#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "coordinator/http/file_store.h"
#include "coordinator/http/multipart_form.h"
#include "coordinator/http/openai_api.h"
#include "coordinator/job_store.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator::http {
namespace {

using nlohmann::json;

constexpr char kBoundary[] = "----flatfleet-test-boundary";

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

std::string Multipart(std::string_view purpose, std::string_view content) {
  std::string body;
  body += std::string("--") + kBoundary + "\r\n";
  body += "Content-Disposition: form-data; name=\"purpose\"\r\n\r\n";
  body += std::string(purpose) + "\r\n";
  body += std::string("--") + kBoundary + "\r\n";
  body += "Content-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n";
  body += "Content-Type: application/jsonl\r\n\r\n";
  body += std::string(content) + "\r\n";
  body += std::string("--") + kBoundary + "--\r\n";
  return body;
}

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("flatfleet-http-api-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    JobStoreOptions store_options;
    store_options.clock_ms = [this] { return now_s_.load() * 1000; };
    store_ = *JobStore::Open((dir_ / "jobs.db").string(), store_options);
    files_ = *FileStore::Open((dir_ / "files").string());
    OpenAiApiOptions options;
    options.model = "demo";
    options.max_file_bytes = 4096;
    options.max_page_size = 10;
    OpenAiApiBackend backend;
    backend.store = store_.get();
    backend.files = files_.get();
    backend.now_s = [this] { return now_s_.load(); };
    backend.wake = [this] { ++wakes_; };
    backend.stop_job = [this](const std::string& job, const std::vector<RequestKey>&) {
      stopped_.push_back(job);
    };
    backend.generate = [this](const v1::RequestBody& body,
                              absl::Duration) -> absl::StatusOr<v1::Response> {
      last_body_ = body;
      if (!generate_status_.ok()) return generate_status_;
      v1::Response response;
      response.set_text("hello world");
      response.set_finish_reason(v1::FINISH_REASON_LENGTH);
      response.mutable_usage()->set_prompt_tokens(3);
      response.mutable_usage()->set_completion_tokens(2);
      response.mutable_usage()->set_total_tokens(5);
      return response;
    };
    api_ = std::make_unique<OpenAiApi>(options, backend);
  }
  void TearDown() override {
    api_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  HttpResponse Call(std::string method, std::string path, std::string body = "",
                    std::string query = "") {
    HttpRequest request;
    request.method = std::move(method);
    request.path = std::move(path);
    request.query = std::move(query);
    request.body = std::move(body);
    request.headers["content-type"] = "application/json";
    return api_->Handle(request);
  }
  json CallJson(std::string method, std::string path, std::string body = "", std::string query = "",
                int expected_status = 200) {
    HttpResponse response = Call(method, path, body, query);
    EXPECT_EQ(response.status, expected_status) << method << " " << path << ": " << response.body;
    return json::parse(response.body);
  }
  std::string Upload(std::string_view content) {
    HttpRequest request;
    request.method = "POST";
    request.path = "/v1/files";
    request.headers["content-type"] = std::string("multipart/form-data; boundary=") + kBoundary;
    request.body = Multipart("batch", content);
    HttpResponse response = api_->Handle(request);
    EXPECT_EQ(response.status, 200) << response.body;
    return json::parse(response.body).value("id", "");
  }
  json CreateBatch(const std::string& file_id, std::string endpoint = "/v1/completions",
                   std::string window = "24h") {
    return CallJson("POST", "/v1/batches",
                    json{{"input_file_id", file_id},
                         {"endpoint", endpoint},
                         {"completion_window", window},
                         {"metadata", {{"k", "v"}}}}
                        .dump());
  }
  // Finishes every pending request of the store as a worker would.
  void RunPending(bool succeed = true) {
    absl::StatusOr<std::vector<ClaimedRequest>> claimed =
        store_->ClaimPending("demo", 1000, "test-worker", 60'000);
    ASSERT_TRUE(claimed.ok()) << claimed.status();
    for (const ClaimedRequest& request : *claimed) {
      ResultRecord result;
      if (succeed) {
        result.output_line =
            R"({"custom_id":")" + request.custom_id +
            R"(","response":{"status_code":200,"body":{"object":"text_completion","created":5,"model":"demo","choices":[{"index":0,"text":"x","finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}},"error":null})";
      } else {
        result.outcome = ResultOutcome::kFailed;
        result.output_line = R"({"custom_id":")" + request.custom_id +
                             R"(","response":null,"error":{"code":"internal","message":"boom"}})";
      }
      ASSERT_TRUE(store_->RecordResult(request.key, result).ok());
    }
  }

  static void ExpectErrorShape(const json& body) {
    ASSERT_TRUE(body.contains("error")) << body;
    const json& error = body["error"];
    EXPECT_TRUE(error["message"].is_string()) << body;
    EXPECT_TRUE(error["type"].is_string()) << body;
    EXPECT_TRUE(error.contains("param")) << body;
    EXPECT_TRUE(error.contains("code")) << body;
  }

  std::filesystem::path dir_;
  std::atomic<int64_t> now_s_{1'800'000'000};
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<FileStore> files_;
  std::unique_ptr<OpenAiApi> api_;
  int wakes_ = 0;
  std::vector<std::string> stopped_;
  v1::RequestBody last_body_;
  absl::Status generate_status_;
};

const char kTwoLines[] =
    R"({"custom_id":"a","method":"POST","url":"/v1/completions","body":{"model":"demo","prompt":"p","max_tokens":4}})"
    "\n"
    R"({"custom_id":"b","method":"POST","url":"/v1/completions","body":{"model":"demo","prompt":"q","max_tokens":4,"frequency_penalty":0,"logprobs":null}})"
    "\n";

TEST_F(HttpApiTest, MalformedRequestsGetOpenAiErrorsWithTheRightStatus) {
  struct Case {
    std::string method, path, body;
    int status;
    std::string param;
  };
  const std::vector<Case> cases = {
      {"POST", "/v1/chat/completions", "{not json", 400, ""},
      {"POST", "/v1/chat/completions", "[1]", 400, ""},
      {"POST", "/v1/chat/completions", R"({"messages":[]})", 400, "model"},
      {"POST", "/v1/chat/completions", R"({"model":"other","messages":[]})", 404, "model"},
      {"POST", "/v1/chat/completions", R"({"model":"demo"})", 400, "messages"},
      {"POST", "/v1/completions", R"({"model":"demo","prompt":"x","max_tokens":"9"})", 400,
       "max_tokens"},
      {"POST", "/v1/completions", R"({"model":"demo","prompt":"x","stream":"yes"})", 400, "stream"},
      {"POST", "/v1/completions", R"({"model":"demo","prompt":"x","tools":[]})", 400, "tools"},
      {"GET", "/v1/completions", "", 405, ""},
      {"DELETE", "/v1/batches", "", 405, ""},
      {"PUT", "/v1/files/file-000000000000000000000000", "", 405, ""},
      {"GET", "/v1/batches/batch_missing", "", 404, ""},
      {"POST", "/v1/batches/batch_missing/cancel", "", 404, ""},
      {"GET", "/v1/files/file-000000000000000000000000", "", 404, ""},
      {"GET", "/v1/files/../../etc/passwd/content", "", 404, ""},
      {"DELETE", "/v1/files/file-000000000000000000000000", "", 404, ""},
      {"GET", "/v1/models/other", "", 404, "model"},
      {"GET", "/v2/anything", "", 404, ""},
      {"POST", "/v1/batches", R"({"endpoint":"/v1/completions","completion_window":"24h"})", 400,
       "input_file_id"},
      {"POST", "/v1/batches",
       R"({"input_file_id":"file-000000000000000000000000","endpoint":"/v1/embeddings","completion_window":"24h"})",
       400, "endpoint"},
      {"POST", "/v1/batches",
       R"({"input_file_id":"file-000000000000000000000000","endpoint":"/v1/completions","completion_window":"soon"})",
       400, "completion_window"},
      {"POST", "/v1/batches",
       R"({"input_file_id":"file-000000000000000000000000","endpoint":"/v1/completions","completion_window":"24h"})",
       404, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.method + " " + c.path + " " + c.body);
    HttpResponse response = Call(c.method, c.path, c.body);
    EXPECT_EQ(response.status, c.status) << response.body;
    EXPECT_EQ(response.content_type, "application/json");
    const json body = json::parse(response.body);
    ExpectErrorShape(body);
    if (!c.param.empty()) {
      EXPECT_EQ(body["error"]["param"], c.param);
    }
    if (c.status == 405) {
      EXPECT_FALSE(response.headers.at("Allow").empty());
    }
  }
}

TEST_F(HttpApiTest, UploadsAreLimitedAndValidatedBeforeTheyAreStored) {
  HttpRequest request;
  request.method = "POST";
  request.path = "/v1/files";
  request.headers["content-type"] = std::string("multipart/form-data; boundary=") + kBoundary;
  request.body = Multipart("batch", std::string(4097, 'x'));  // The limit is 4096.
  HttpResponse response = api_->Handle(request);
  EXPECT_EQ(response.status, 413) << response.body;
  ExpectErrorShape(json::parse(response.body));
  EXPECT_EQ(json::parse(response.body)["error"]["code"], "file_too_large");
  request.body = Multipart("fine-tune", "{}");
  EXPECT_EQ(api_->Handle(request).status, 400);
  request.headers["content-type"] = "application/json";
  EXPECT_EQ(api_->Handle(request).status, 400);
  request.headers["content-type"] = std::string("multipart/form-data; boundary=") + kBoundary;
  request.body = Multipart("batch", "{}").substr(0, 100);  // Truncated.
  EXPECT_EQ(api_->Handle(request).status, 400);
  EXPECT_TRUE(CallJson("GET", "/v1/files")["data"].empty());  // Nothing was stored.

  const std::string id = Upload(std::string(4096, 'x'));  // At the limit: accepted.
  EXPECT_TRUE(FileStore::IsUploadId(id)) << id;
  const json file = CallJson("GET", "/v1/files/" + id);
  EXPECT_EQ(file["object"], "file");
  EXPECT_EQ(file["bytes"], 4096);
  EXPECT_EQ(file["filename"], "in.jsonl");
  EXPECT_EQ(file["purpose"], "batch");
  EXPECT_EQ(file["created_at"], now_s_.load());
  EXPECT_EQ(Call("GET", "/v1/files/" + id + "/content").body, std::string(4096, 'x'));
  EXPECT_EQ(CallJson("DELETE", "/v1/files/" + id),
            json({{"id", id}, {"object", "file"}, {"deleted", true}}));
  EXPECT_EQ(Call("GET", "/v1/files/" + id).status, 404);
  EXPECT_EQ(Call("GET", "/v1/files/" + id + "/content").status, 404);
}

TEST_F(HttpApiTest, BatchObjectResultFilesAndCancel) {
  const std::string input =
      Upload(std::string(kTwoLines) + R"({"custom_id":"c","body":{"prompt":5}})" + "\n" +
             R"({"custom_id":"d","body":{"messages":[{"role":"user","content":"x"}]}})" + "\n");
  json batch = CreateBatch(input);
  EXPECT_EQ(wakes_, 1);
  for (const char* key : {"id",
                          "object",
                          "endpoint",
                          "errors",
                          "input_file_id",
                          "completion_window",
                          "status",
                          "output_file_id",
                          "error_file_id",
                          "created_at",
                          "in_progress_at",
                          "expires_at",
                          "finalizing_at",
                          "completed_at",
                          "failed_at",
                          "expired_at",
                          "cancelling_at",
                          "cancelled_at",
                          "request_counts",
                          "metadata"}) {
    EXPECT_TRUE(batch.contains(key)) << key << " in " << batch;
  }
  EXPECT_EQ(batch["object"], "batch");
  EXPECT_EQ(batch["endpoint"], "/v1/completions");
  EXPECT_EQ(batch["input_file_id"], input);
  EXPECT_EQ(batch["status"], "in_progress");
  EXPECT_EQ(batch["created_at"], now_s_.load());
  EXPECT_EQ(batch["expires_at"], now_s_.load() + 24 * 3600);
  EXPECT_TRUE(batch["output_file_id"].is_null());
  EXPECT_EQ(batch["metadata"], json({{"k", "v"}}));
  // c is invalid; d calls the other endpoint.
  EXPECT_EQ(batch["request_counts"], json({{"total", 4}, {"completed", 0}, {"failed", 2}}));
  const std::string id = batch["id"];
  // Result files exist once the batch has ended.
  EXPECT_EQ(Call("GET", "/v1/files/file-" + id + "-output/content").status, 404);

  now_s_ += 10;
  RunPending();
  batch = CallJson("GET", "/v1/batches/" + id);
  EXPECT_EQ(batch["status"], "completed");
  EXPECT_EQ(batch["completed_at"], now_s_.load());
  EXPECT_EQ(batch["request_counts"], json({{"total", 4}, {"completed", 2}, {"failed", 2}}));
  const std::string output =
      Call("GET", "/v1/files/" + batch["output_file_id"].get<std::string>() + "/content").body;
  std::vector<json> lines;
  for (const std::string& line : Lines(output)) {
    lines.push_back(json::parse(line));
  }
  ASSERT_EQ(lines.size(), 2u) << output;
  for (const json& line : lines) {
    EXPECT_TRUE(line["id"].get<std::string>().starts_with("batch_req_")) << line;
    EXPECT_TRUE(line["response"]["request_id"].get<std::string>().starts_with("req_")) << line;
    EXPECT_EQ(line["response"]["status_code"], 200);
    EXPECT_TRUE(line["response"]["body"]["id"].get<std::string>().starts_with("cmpl-")) << line;
    EXPECT_TRUE(line["error"].is_null());
  }
  const std::string errors =
      Call("GET", "/v1/files/" + batch["error_file_id"].get<std::string>() + "/content").body;
  std::vector<json> error_lines;
  for (const std::string& line : Lines(errors)) {
    error_lines.push_back(json::parse(line));
  }
  ASSERT_EQ(error_lines.size(), 2u) << errors;
  EXPECT_EQ(error_lines[0]["custom_id"], "c");
  EXPECT_EQ(error_lines[0]["response"]["status_code"], 400);
  EXPECT_EQ(error_lines[0]["response"]["body"]["error"]["code"], "invalid_request");
  EXPECT_EQ(error_lines[1]["custom_id"], "d");
  EXPECT_NE(error_lines[1]["response"]["body"]["error"]["message"].get<std::string>().find(
                "the batch's endpoint is /v1/completions"),
            std::string::npos);
  const json output_file =
      CallJson("GET", "/v1/files/" + batch["output_file_id"].get<std::string>());
  EXPECT_EQ(output_file["bytes"], output.size());
  EXPECT_EQ(output_file["purpose"], "batch_output");
  EXPECT_EQ(Call("DELETE", "/v1/files/" + batch["output_file_id"].get<std::string>()).status, 400);

  // A completed batch cannot be cancelled; a running one can, and its requests get lines.
  EXPECT_EQ(Call("POST", "/v1/batches/" + id + "/cancel").status, 409);
  const json second = CreateBatch(Upload(kTwoLines));
  const json cancelled =
      CallJson("POST", "/v1/batches/" + second["id"].get<std::string>() + "/cancel");
  EXPECT_EQ(cancelled["status"], "cancelled");
  EXPECT_EQ(cancelled["cancelled_at"], now_s_.load());
  EXPECT_TRUE(cancelled["output_file_id"].is_null());
  const std::string cancelled_errors =
      Call("GET", "/v1/files/" + cancelled["error_file_id"].get<std::string>() + "/content").body;
  for (const std::string& text : Lines(cancelled_errors)) {
    const json line = json::parse(text);
    EXPECT_TRUE(line["response"].is_null());
    EXPECT_EQ(line["error"]["code"], "batch_cancelled");
  }
  EXPECT_EQ(std::count(cancelled_errors.begin(), cancelled_errors.end(), '\n'), 2);
}

TEST_F(HttpApiTest, CompletionWindowExpiresUnfinishedRequests) {
  EXPECT_EQ(Call("POST", "/v1/batches",
                 json{{"input_file_id", Upload(kTwoLines)},
                      {"endpoint", "/v1/completions"},
                      {"completion_window", "0s"}}
                     .dump())
                .status,
            400);
  const json batch = CreateBatch(Upload(kTwoLines), "/v1/completions", "30s");
  const std::string id = batch["id"];
  EXPECT_EQ(batch["expires_at"], now_s_.load() + 30);
  // One request finishes in time; the other is still running when the window ends.
  absl::StatusOr<std::vector<ClaimedRequest>> claimed =
      store_->ClaimPending("demo", 2, "test-worker", 600'000);
  ASSERT_TRUE(claimed.ok() && claimed->size() == 2);
  ResultRecord result;
  result.output_line =
      R"({"custom_id":"a","response":{"status_code":200,"body":{"object":"text_completion","choices":[]}},"error":null})";
  ASSERT_TRUE(store_->RecordResult((*claimed)[0].key, result).ok());
  now_s_ += 29;
  api_->ExpireDueBatches();
  EXPECT_EQ(CallJson("GET", "/v1/batches/" + id)["status"], "in_progress");
  now_s_ += 1;
  api_->ExpireDueBatches();
  EXPECT_EQ(stopped_, std::vector<std::string>{id});
  EXPECT_EQ(CallJson("GET", "/v1/batches/" + id)["status"], "finalizing");  // b still stops.
  // The worker answers the stopped request "cancelled"; the session releases it, as it does.
  ASSERT_TRUE(store_->ReleaseInFlight((*claimed)[1].key, "cancelled").ok());
  const json expired = CallJson("GET", "/v1/batches/" + id);
  EXPECT_EQ(expired["status"], "expired") << expired;
  EXPECT_EQ(expired["expired_at"], now_s_.load());
  EXPECT_TRUE(expired["cancelled_at"].is_null());
  const json errors = json::parse(
      Call("GET", "/v1/files/" + expired["error_file_id"].get<std::string>() + "/content").body);
  EXPECT_EQ(errors["custom_id"], "b");
  EXPECT_EQ(errors["error"]["code"], "batch_expired");
  EXPECT_TRUE(errors["response"].is_null());
  EXPECT_NE(Call("GET", "/v1/files/" + expired["output_file_id"].get<std::string>() + "/content")
                .body.find("\"custom_id\":\"a\""),
            std::string::npos);
  api_->ExpireDueBatches();  // Nothing more to do.
  EXPECT_EQ(stopped_.size(), 1u);
}

TEST_F(HttpApiTest, BatchFieldsAndExpirySurviveAStoreReopen) {
  const std::string input = Upload(kTwoLines);
  const std::string id = CreateBatch(input, "/v1/completions", "2m")["id"];
  now_s_ += 120;
  api_->ExpireDueBatches();
  api_.reset();
  store_.reset();
  store_ = *JobStore::Open((dir_ / "jobs.db").string());
  absl::StatusOr<JobRecord> job = store_->GetJob(id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->options.endpoint, "/v1/completions");
  EXPECT_EQ(job->options.input_file_id, input);
  EXPECT_EQ(job->options.completion_window, "2m");
  EXPECT_EQ(job->options.expires_at_ms, job->created_at_ms + 120'000);
  EXPECT_EQ(job->expired_at_ms, job->created_at_ms + 120'000);
  EXPECT_EQ(job->state, JobState::kCancelled);
  EXPECT_EQ(job->counts.cancelled, 2);
  EXPECT_TRUE(store_->ListJobsPastExpiry()->empty());
}

TEST_F(HttpApiTest, ListBatchesPagesNewestFirstWithAfter) {
  const std::string input = Upload(kTwoLines);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(CreateBatch(input)["id"]);
  json page = CallJson("GET", "/v1/batches", "", "limit=2");
  EXPECT_EQ(page["object"], "list");
  ASSERT_EQ(page["data"].size(), 2u);
  EXPECT_EQ(page["data"][0]["id"], ids[4]);
  EXPECT_EQ(page["data"][1]["id"], ids[3]);
  EXPECT_EQ(page["first_id"], ids[4]);
  EXPECT_EQ(page["last_id"], ids[3]);
  EXPECT_EQ(page["has_more"], true);
  page = CallJson("GET", "/v1/batches", "", "limit=2&after=" + ids[3]);
  EXPECT_EQ(page["data"][0]["id"], ids[2]);
  EXPECT_EQ(page["has_more"], true);
  page = CallJson("GET", "/v1/batches", "", "after=" + ids[1]);
  ASSERT_EQ(page["data"].size(), 1u);
  EXPECT_EQ(page["data"][0]["id"], ids[0]);
  EXPECT_EQ(page["has_more"], false);
  EXPECT_EQ(Call("GET", "/v1/batches", "", "limit=0").status, 400);
  EXPECT_EQ(Call("GET", "/v1/batches", "", "limit=11").status, 400);
  EXPECT_EQ(Call("GET", "/v1/batches", "", "limit=x").status, 400);
  EXPECT_EQ(Call("GET", "/v1/batches", "", "after=batch_nope").status, 404);
}

TEST_F(HttpApiTest, InteractiveCallsPlainAndStreamed) {
  const json models = CallJson("GET", "/v1/models");
  EXPECT_EQ(models["data"][0]["id"], "demo");
  EXPECT_EQ(CallJson("GET", "/v1/models/demo")["object"], "model");

  json chat = CallJson("POST", "/v1/chat/completions",
                       R"({"model":"demo","messages":[{"role":"user","content":"hi"}],
                           "max_tokens":7,"temperature":0,"n":1,"logprobs":false})");
  EXPECT_EQ(last_body_.messages().messages(0).content(), "hi");
  EXPECT_EQ(last_body_.sampling().max_tokens(), 7u);
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_TRUE(chat["id"].get<std::string>().starts_with("chatcmpl-"));
  EXPECT_EQ(chat["created"], now_s_.load());
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "hello world");
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(chat["usage"]["total_tokens"], 5);

  HttpResponse streamed = Call("POST", "/v1/chat/completions",
                               R"({"model":"demo","messages":[{"role":"user","content":"hi"}],
                                   "stream":true,"stream_options":{"include_usage":true}})");
  EXPECT_EQ(streamed.status, 200);
  EXPECT_EQ(streamed.content_type, "text/event-stream");
  std::string content;
  std::string finish;
  json usage;
  std::vector<std::string> events = absl::StrSplit(streamed.body, "\n\n", absl::SkipEmpty());

  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back(), "data: [DONE]");
  events.pop_back();
  for (const std::string& event : events) {
    ASSERT_TRUE(event.starts_with("data: ")) << event;
    const json chunk = json::parse(event.substr(6));
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    if (chunk["usage"].is_object()) usage = chunk["usage"];
    for (const json& choice : chunk["choices"]) {
      content += choice["delta"].value("content", "");
      if (choice["finish_reason"].is_string()) finish = choice["finish_reason"];
    }
  }
  EXPECT_EQ(content, "hello world");
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(usage["completion_tokens"], 2);

  const json completion =
      CallJson("POST", "/v1/completions", R"({"model":"demo","prompt":"p","stop":["x"]})");
  EXPECT_EQ(completion["object"], "text_completion");
  EXPECT_EQ(completion["choices"][0]["text"], "hello world");
  EXPECT_EQ(last_body_.prompt(), "p");
  EXPECT_EQ(last_body_.sampling().stop(0), "x");

  generate_status_ = absl::UnavailableError("no worker group is connected");
  HttpResponse unavailable = Call("POST", "/v1/completions", R"({"model":"demo","prompt":"p"})");
  EXPECT_EQ(unavailable.status, 503);
  ExpectErrorShape(json::parse(unavailable.body));
}

// GET /v1/files pages as OpenAI defines: newest first unless order=asc, `limit` files after the
// id `after`, first_id/last_id/has_more, an optional purpose filter, 400 naming a bad value.
TEST_F(HttpApiTest, FileListPagesWithAfterLimitAndOrder) {
  std::vector<std::string> ids;  // oldest first
  for (int i = 0; i < 5; ++i) {
    ids.push_back(Upload(R"({"custom_id":"a","body":{"prompt":"p"}})"));
    now_s_ += 1;
  }
  const auto page_ids = [](const json& page) {
    std::vector<std::string> out;
    for (const json& file : page["data"]) out.push_back(file["id"]);
    return out;
  };
  const json all = CallJson("GET", "/v1/files");
  EXPECT_EQ(page_ids(all), (std::vector<std::string>{ids[4], ids[3], ids[2], ids[1], ids[0]}));
  EXPECT_EQ(all["has_more"], false);
  EXPECT_EQ(all["first_id"], ids[4]);
  EXPECT_EQ(all["last_id"], ids[0]);

  const json first = CallJson("GET", "/v1/files", "", "limit=2");
  EXPECT_EQ(page_ids(first), (std::vector<std::string>{ids[4], ids[3]}));
  EXPECT_EQ(first["has_more"], true);
  EXPECT_EQ(first["last_id"], ids[3]);
  const json second = CallJson("GET", "/v1/files", "", "limit=2&after=" + ids[3]);
  EXPECT_EQ(page_ids(second), (std::vector<std::string>{ids[2], ids[1]}));
  EXPECT_EQ(second["has_more"], true);
  const json last = CallJson("GET", "/v1/files", "", "limit=2&after=" + ids[1]);
  EXPECT_EQ(page_ids(last), (std::vector<std::string>{ids[0]}));
  EXPECT_EQ(last["has_more"], false);
  const json past_end = CallJson("GET", "/v1/files", "", "after=" + ids[0]);
  EXPECT_TRUE(past_end["data"].empty());
  EXPECT_TRUE(past_end["first_id"].is_null());
  EXPECT_EQ(past_end["has_more"], false);

  const json ascending = CallJson("GET", "/v1/files", "", "order=asc&limit=3&after=" + ids[0]);
  EXPECT_EQ(page_ids(ascending), (std::vector<std::string>{ids[1], ids[2], ids[3]}));
  EXPECT_EQ(ascending["has_more"], true);
  EXPECT_EQ(page_ids(CallJson("GET", "/v1/files", "", "order=desc&limit=1")),
            (std::vector<std::string>{ids[4]}));
  EXPECT_EQ(CallJson("GET", "/v1/files", "", "purpose=batch")["data"].size(), 5u);
  EXPECT_TRUE(CallJson("GET", "/v1/files", "", "purpose=fine-tune")["data"].empty());

  for (const auto& [query, param] : std::vector<std::pair<std::string, std::string>>{
           {"limit=0", "limit"},
           {"limit=10001", "limit"},
           {"limit=two", "limit"},
           {"limit=-1", "limit"},
           {"order=newest", "order"},
           {"order=", "order"},
           {"after=file-000000000000000000000000", "after"},
           {"after=../etc", "after"}}) {
    SCOPED_TRACE(query);
    const json error = CallJson("GET", "/v1/files", "", query, 400);
    ExpectErrorShape(error);
    EXPECT_EQ(error["error"]["param"], param);
  }
  EXPECT_EQ(page_ids(CallJson("GET", "/v1/files", "", "limit=10000")).size(), 5u);
}

// With a streaming backend, each piece of text is its own event as it arrives, the text held
// back until the end follows in one more, and an error before the first piece keeps its status.
TEST_F(HttpApiTest, StreamedCallsSendAnEventPerPiece) {
  OpenAiApiOptions options;
  options.model = "demo";
  std::vector<std::string> pieces = {"hel", "lo", " wor"};
  absl::Status status = absl::OkStatus();
  bool fail_after_pieces = false;
  std::vector<std::string> written;  // What the server sent, write by write.
  OpenAiApiBackend backend;
  backend.store = store_.get();
  backend.files = files_.get();
  backend.stream_generate =
      [&](const v1::RequestBody&, absl::Duration,
          const std::function<void(const std::string&)>& on_text) -> absl::StatusOr<v1::Response> {
    for (const std::string& piece : pieces) {
      on_text(piece);
      // The piece went out before the next one was produced.
      EXPECT_NE(written.back().find(nlohmann::json(piece).dump()), std::string::npos);
    }
    if (fail_after_pieces || !status.ok()) return status;
    v1::Response response;
    response.set_text("hello world");
    response.set_finish_reason(v1::FINISH_REASON_STOP);
    return response;
  };
  OpenAiApi api(options, backend);
  const auto call = [&](const std::string& path, const std::string& body) {
    written.clear();
    HttpRequest request;
    request.method = "POST";
    request.path = path;
    request.body = body;
    HttpResponse response = api.Handle(request);
    if (!response.stream) return response;
    HttpResponse instead = response.stream([&](std::string_view bytes) {
      written.emplace_back(bytes);
      return true;
    });
    if (written.empty()) return instead;
    for (const std::string& bytes : written) response.body += bytes;
    return response;
  };
  for (const bool chat : {false, true}) {
    SCOPED_TRACE(chat ? "chat" : "completions");
    const std::string body =
        chat ? R"({"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true})"
             : R"({"model":"demo","prompt":"p","stream":true})";
    HttpResponse streamed = call(chat ? "/v1/chat/completions" : "/v1/completions", body);
    EXPECT_EQ(streamed.status, 200);
    EXPECT_EQ(streamed.content_type, "text/event-stream");
    std::vector<std::string> events = absl::StrSplit(streamed.body, "\n\n", absl::SkipEmpty());
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back(), "data: [DONE]");
    events.pop_back();
    std::vector<std::string> texts;
    std::string finish;
    for (const std::string& event : events) {
      ASSERT_TRUE(event.starts_with("data: ")) << event;
      const json chunk = json::parse(event.substr(6));
      for (const json& choice : chunk["choices"]) {
        const std::string text =
            chat ? choice["delta"].value("content", "") : choice.value("text", "");
        if (!text.empty()) texts.push_back(text);
        if (choice["finish_reason"].is_string()) finish = choice["finish_reason"];
      }
    }
    EXPECT_EQ(texts, (std::vector<std::string>{"hel", "lo", " wor", "ld"}));
    EXPECT_EQ(finish, "stop");
  }

  status = absl::UnavailableError("no worker group is connected");
  pieces.clear();
  HttpResponse refused = call("/v1/completions", R"({"model":"demo","prompt":"p","stream":true})");
  EXPECT_EQ(refused.status, 503);
  ExpectErrorShape(json::parse(refused.body));

  // Once events went out the status line is gone: the error comes as an event.
  pieces = {"partial"};
  fail_after_pieces = true;
  status = absl::InternalError("worker error");
  HttpResponse broken = call("/v1/completions", R"({"model":"demo","prompt":"p","stream":true})");
  EXPECT_EQ(broken.status, 200);
  std::vector<std::string> events = absl::StrSplit(broken.body, "\n\n", absl::SkipEmpty());
  ASSERT_EQ(events.size(), 2u) << broken.body;
  ExpectErrorShape(json::parse(events[1].substr(6)));
}

TEST(MultipartFormTest, ReadsPartsAndRefusesMalformedBodies) {
  const std::string body = Multipart("batch", "line1\r\nline2");
  absl::StatusOr<std::vector<FormPart>> parts =
      ParseMultipartForm(std::string("multipart/form-data; boundary=\"") + kBoundary + "\"", body);
  ASSERT_TRUE(parts.ok()) << parts.status();
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ((*parts)[0].name, "purpose");
  EXPECT_EQ((*parts)[0].content, "batch");
  EXPECT_FALSE((*parts)[0].filename.has_value());
  EXPECT_EQ((*parts)[1].name, "file");
  EXPECT_EQ((*parts)[1].filename, "in.jsonl");
  EXPECT_EQ((*parts)[1].content, "line1\r\nline2");
  const std::string type = std::string("multipart/form-data; boundary=") + kBoundary;
  EXPECT_FALSE(ParseMultipartForm("text/plain", body).ok());
  EXPECT_FALSE(ParseMultipartForm("multipart/form-data", body).ok());
  EXPECT_FALSE(ParseMultipartForm(type, "").ok());
  EXPECT_FALSE(ParseMultipartForm(type, body.substr(0, body.size() - 30)).ok());
  EXPECT_FALSE(
      ParseMultipartForm(type, std::string("--") + kBoundary + "\r\nNoColon\r\n\r\nx").ok());
}

}  // namespace
}  // namespace flatfleet::coordinator::http
