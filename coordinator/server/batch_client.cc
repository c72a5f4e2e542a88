#include "coordinator/server/batch_client.h"

#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "coordinator/batch_output_line.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "security/secure_channel.h"

namespace flatfleet::coordinator {
namespace {

constexpr auto kCallTimeout = std::chrono::seconds(60);

absl::Status FromGrpc(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

void LimitCall(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchClient>> BatchClient::Connect(const std::string& address,
                                                                  absl::Duration connect_timeout) {
  return Connect(address, security::ChannelSecurity(), connect_timeout);
}

absl::StatusOr<std::unique_ptr<BatchClient>> BatchClient::Connect(
    const std::string& address, const security::ChannelSecurity& security,
    absl::Duration connect_timeout) {
  grpc::ChannelArguments arguments;
  // Results as large as the coordinator sends (its --max-message-bytes, 16 MiB by default).
  arguments.SetMaxReceiveMessageSize(kClientMaxReceiveBytes);
  std::shared_ptr<grpc::Channel> channel =
      security::MakeSecureChannel(address, security, arguments);
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + connect_timeout))) {
    if (security.server_ca_pem.has_value()) {
      // A failed handshake looks the same as no server from here.
      return absl::UnavailableError(absl::StrCat(
          "no coordinator answers over TLS at ", address,
          " (or its certificate is not signed by --tls-ca, or does not name the host: see "
          "--tls-server-name)"));
    }
    return absl::UnavailableError(absl::StrCat("no coordinator answers at ", address));
  }
  return std::unique_ptr<BatchClient>(new BatchClient(v1::BatchService::NewStub(channel)));
}

absl::StatusOr<v1::CreateBatchResponse> BatchClient::Submit(const v1::BatchOptions& options,
                                                            const std::vector<std::string>& lines) {
  grpc::ClientContext context;
  LimitCall(context);
  v1::CreateBatchResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::CreateBatchRequest>> writer =
      stub_->CreateBatch(&context, &response);
  v1::CreateBatchRequest first;
  *first.mutable_options() = options;
  bool open = writer->Write(first);
  // Messages of about 1 MiB: well under gRPC's default 4 MiB limit.
  constexpr size_t kBytesPerMessage = 1 << 20;
  v1::CreateBatchRequest chunk;
  size_t chunk_bytes = 0;
  const auto flush = [&] {
    if (open && chunk.has_lines()) open = writer->Write(chunk);
    chunk.Clear();
    chunk_bytes = 0;
  };
  for (size_t i = 0; open && i < lines.size(); ++i) {
    if (lines[i].size() > kMaxUploadLineBytes) {
      // Too long for any message the server accepts: sent by size, it becomes this line's
      // failed result instead of refusing the whole upload.
      flush();
      v1::CreateBatchRequest oversized;
      oversized.mutable_oversized_line()->set_bytes(lines[i].size());
      if (open) open = writer->Write(oversized);
      continue;
    }
    chunk.mutable_lines()->add_lines(lines[i]);
    chunk_bytes += lines[i].size();
    if (chunk_bytes >= kBytesPerMessage) flush();
  }
  flush();
  v1::CreateBatchRequest end;
  end.mutable_end()->set_line_count(lines.size());
  if (open) open = writer->Write(end);
  if (open) writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) return FromGrpc(status, "CreateBatch");
  return response;
}

absl::StatusOr<v1::Batch> BatchClient::Get(const std::string& batch_id) {
  grpc::ClientContext context;
  LimitCall(context);
  v1::GetBatchRequest request;
  request.set_batch_id(batch_id);
  v1::Batch batch;
  grpc::Status status = stub_->GetBatch(&context, request, &batch);
  if (!status.ok()) return FromGrpc(status, "GetBatch");
  return batch;
}

absl::StatusOr<v1::Batch> BatchClient::Cancel(const std::string& batch_id) {
  grpc::ClientContext context;
  LimitCall(context);
  v1::CancelBatchRequest request;
  request.set_batch_id(batch_id);
  v1::Batch batch;
  grpc::Status status = stub_->CancelBatch(&context, request, &batch);
  if (!status.ok()) return FromGrpc(status, "CancelBatch");
  return batch;
}

absl::Status BatchClient::StreamResults(
    const std::string& batch_id, uint64_t start_sequence, bool follow,
    const std::function<bool(const v1::BatchResult&)>& on_result) {
  grpc::ClientContext context;  // No deadline when following: a batch may run for hours.
  if (!follow) LimitCall(context);
  v1::StreamResultsRequest request;
  request.set_batch_id(batch_id);
  request.set_start_sequence(start_sequence);
  request.set_follow(follow);
  std::unique_ptr<grpc::ClientReader<v1::BatchResult>> reader =
      stub_->StreamResults(&context, request);
  v1::BatchResult result;
  while (reader->Read(&result)) {
    if (!on_result(result)) {
      context.TryCancel();
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (status.error_code() == grpc::StatusCode::CANCELLED) return absl::OkStatus();
  return FromGrpc(status, "StreamResults");
}

absl::StatusOr<std::vector<std::string>> ReadJsonlLines(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(file, line)) lines.push_back(std::move(line));
  if (file.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return lines;
}

std::string FormatBatchResultLine(const v1::BatchResult& result, const std::string& model) {
  // Servers since output_line send the line as OpenAI's files show it; older ones do not.
  if (!result.output_line().empty()) return result.output_line();
  if (result.has_error()) {
    // An empty custom_id is an invalid input line's missing one: null, as the server stores it.
    std::optional<std::string_view> custom_id;
    if (!result.custom_id().empty()) custom_id = result.custom_id();
    return FormatErrorLine(custom_id, result.error().code(), result.error().message());
  }
  const v1::Response& response = result.response();
  const char* finish = response.finish_reason() == v1::FINISH_REASON_LENGTH ? "length" : "stop";
  nlohmann::json body = {
      {"object", "text_completion"},
      {"model", model},
      {"choices",
       nlohmann::json::array({{{"index", 0},
                               {"text", response.text()},
                               {"finish_reason", finish},
                               {"token_ids", std::vector<uint32_t>(response.token_ids().begin(),
                                                                   response.token_ids().end())}}})},
      {"usage",
       {{"prompt_tokens", response.usage().prompt_tokens()},
        {"completion_tokens", response.usage().completion_tokens()},
        {"total_tokens", response.usage().total_tokens()}}}};
  return FormatResponseLine(result.custom_id(), body);
}

std::string BatchStateName(v1::BatchState state) {
  std::string name = v1::BatchState_Name(state);
  constexpr std::string_view kPrefix = "BATCH_STATE_";
  if (name.rfind(kPrefix, 0) == 0) name = name.substr(kPrefix.size());
  return absl::AsciiStrToLower(name);
}

}  // namespace flatfleet::coordinator
