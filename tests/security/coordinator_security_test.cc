// The coordinator's public API with TLS and bearer tokens, its size limits, and the
// confinement of server-side input paths (symlinks, "..", look-alike directories).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/server/batch_client.h"
#include "coordinator/server/coordinator_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "security/security_flags.h"
#include "tests/coordinator/coordinator_test_util.h"
#include "tests/coordinator/fake_worker.h"
#include "tests/security/test_certificates.h"
#include "tests/quant/test_random.h"

namespace flatfleet::coordinator {
namespace {

namespace fs = std::filesystem;
using security::testing_util::MakeTestCertificates;
using security::testing_util::RandomToken;
using ::testing::HasSubstr;
using testing_util::Client;
using testing_util::CompletionLines;
using testing_util::FakeWorker;
using testing_util::FreshDatabasePath;
using testing_util::TestCoordinatorOptions;

std::unique_ptr<CoordinatorServer> StartCoordinator(const CoordinatorOptions& options) {
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server = CoordinatorServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

std::string WriteFile(const fs::path& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary) << contents;
  return path.string();
}

TEST(CoordinatorSecurityTest, TlsAndBearerTokenThroughTheBatchClient) {
  const std::string certs = MakeTestCertificates();
  ASSERT_FALSE(certs.empty());
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 random(seed);
  const std::string token = RandomToken(random);
  const fs::path dir = fs::path(::testing::TempDir()) / absl::StrCat("api_tokens_", getpid());
  fs::create_directories(dir);
  const std::string token_file =
      WriteFile(dir / "server_tokens",
                absl::StrCat("# accepted tokens\n", RandomToken(random), "\n", token, "\n"));
  const std::string client_token_file = WriteFile(dir / "client_token", token + "\n");

  FakeWorker worker({});
  CoordinatorOptions options = TestCoordinatorOptions(FreshDatabasePath("tls_token"), {&worker});
  security::ApiServerFlags server_flags{certs + "/server.pem", certs + "/server.key", token_file};
  absl::StatusOr<security::ServerSecurity> server_security =
      security::LoadApiServerSecurity(server_flags);
  ASSERT_TRUE(server_security.ok()) << server_security.status();
  options.api_security = *server_security;
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);

  security::ApiClientFlags client_flags{certs + "/ca.pem", "", client_token_file};
  absl::StatusOr<security::ChannelSecurity> good =
      security::LoadApiClientSecurity(client_flags, nullptr);
  ASSERT_TRUE(good.ok()) << good.status();
  auto client = BatchClient::Connect(server->address(), *good, absl::Seconds(20));
  ASSERT_TRUE(client.ok()) << client.status();
  v1::BatchOptions batch_options;
  batch_options.set_model("demo");
  absl::StatusOr<v1::CreateBatchResponse> created =
      (*client)->Submit(batch_options, CompletionLines(7));
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(created->has_batch());
  absl::StatusOr<v1::Batch> batch = (*client)->Get(created->batch().id());
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->request_counts().total(), 7u);

  // The right CA but no token (and an environment token that is wrong).
  security::ApiClientFlags no_token{certs + "/ca.pem", "", ""};
  auto anonymous = BatchClient::Connect(
      server->address(), *security::LoadApiClientSecurity(no_token, nullptr), absl::Seconds(20));
  ASSERT_TRUE(anonymous.ok()) << anonymous.status();
  absl::StatusOr<v1::Batch> refused = (*anonymous)->Get(created->batch().id());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(refused.status().message(), HasSubstr("missing credentials"));
  const std::string wrong_token = RandomToken(random);
  auto impostor = BatchClient::Connect(
      server->address(), *security::LoadApiClientSecurity(no_token, wrong_token.c_str()),
      absl::Seconds(20));
  ASSERT_TRUE(impostor.ok()) << impostor.status();
  EXPECT_EQ((*impostor)->Cancel(created->batch().id()).status().code(),
            absl::StatusCode::kUnauthenticated);
  // A CA that did not sign the server's certificate: no connection at all.
  security::ApiClientFlags wrong_ca{certs + "/other-ca.pem", "", client_token_file};
  auto untrusting = BatchClient::Connect(
      server->address(), *security::LoadApiClientSecurity(wrong_ca, nullptr), absl::Seconds(3));
  EXPECT_EQ(untrusting.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(untrusting.status().message(), HasSubstr("--tls-ca"));
  // Plaintext against the TLS port fails too.
  auto plaintext = BatchClient::Connect(server->address(), absl::Seconds(3));
  EXPECT_FALSE(plaintext.ok());
}

TEST(CoordinatorSecurityTest, OversizeMessagesAndUploadsAreRefused) {
  FakeWorker worker({});
  CoordinatorOptions options = TestCoordinatorOptions(FreshDatabasePath("limits"), {&worker});
  options.max_message_bytes = 256 << 10;
  options.service.max_upload_bytes = 20'000;
  auto server = StartCoordinator(options);
  ASSERT_NE(server, nullptr);
  Client client(server->address());

  // One message over the gRPC limit.
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 random(seed);
  {
    grpc::ClientContext context;
    v1::CreateBatchResponse response;
    auto writer = client.stub().CreateBatch(&context, &response);
    v1::CreateBatchRequest first;
    first.mutable_options()->set_model("demo");
    writer->Write(first);
    v1::CreateBatchRequest big;
    big.mutable_lines()->add_lines(absl::StrCat(R"({"custom_id": "big", "body": {"prompt": ")",
                                                RandomToken(random, 300'000), R"("}})"));
    writer->Write(big);
    writer->WritesDone();
    const grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  }
  // Many small messages adding up to more than the upload limit (each line ~60 bytes).
  auto client_with_limit = BatchClient::Connect(server->address());
  ASSERT_TRUE(client_with_limit.ok());
  v1::BatchOptions batch_options;
  batch_options.set_model("demo");
  absl::StatusOr<v1::CreateBatchResponse> too_many =
      (*client_with_limit)->Submit(batch_options, CompletionLines(1000));
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_many.status().message(), HasSubstr("limit of 20000 bytes (--max-upload-bytes)"));
  // Under the limit it goes through, and nothing of the refused uploads was stored.
  absl::StatusOr<v1::CreateBatchResponse> small =
      (*client_with_limit)->Submit(batch_options, CompletionLines(10));
  ASSERT_TRUE(small.ok()) << small.status();
  ASSERT_TRUE(small->has_batch());
  grpc::ClientContext list_context;
  v1::ListBatchesResponse listed;
  ASSERT_TRUE(client.stub().ListBatches(&list_context, v1::ListBatchesRequest(), &listed).ok());
  EXPECT_EQ(listed.batches_size(), 1);
}

class InputPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            absl::StrCat("input_confinement_", getpid(), "_", std::random_device{}());
    inside_ = root_ / "inputs";
    outside_ = root_ / "private";
    fs::create_directories(inside_ / "sub");
    fs::create_directories(outside_);
    fs::create_directories(root_ / "inputs_evil");  // Shares the allowed name as a prefix.
    std::string lines;
    for (const std::string& line : CompletionLines(3)) lines += line + "\n";
    for (const fs::path& dir : {inside_, outside_, root_ / "inputs_evil"}) {
      WriteFile(dir / "batch.jsonl", lines);
    }
    WriteFile(inside_ / "big.jsonl", std::string(30'000, '\n'));
    options_ = TestCoordinatorOptions(FreshDatabasePath("input_paths"), {&worker_});
    options_.service.input_dirs = {inside_.string()};
    options_.service.max_upload_bytes = 20'000;
    server_ = StartCoordinator(options_);
    ASSERT_NE(server_, nullptr);
    client_ = std::make_unique<Client>(server_->address());
  }

  grpc::Status CreateFrom(const std::string& path) {
    grpc::ClientContext context;
    v1::CreateBatchResponse response;
    auto writer = client_->stub().CreateBatch(&context, &response);
    v1::CreateBatchRequest first;
    first.mutable_options()->set_model("demo");
    first.mutable_options()->set_input_path(path);
    writer->Write(first);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    if (status.ok()) EXPECT_EQ(response.batch().request_counts().total(), 3u);
    return status;
  }

  fs::path root_, inside_, outside_;
  FakeWorker worker_{{}};
  CoordinatorOptions options_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(InputPathTest, PathsInsideTheDirectoryAreRead) {
  EXPECT_TRUE(CreateFrom((inside_ / "batch.jsonl").string()).ok());
  EXPECT_TRUE(CreateFrom((inside_ / "sub" / ".." / "batch.jsonl").string()).ok());
  fs::create_symlink(inside_ / "batch.jsonl", inside_ / "sub" / "link.jsonl");
  EXPECT_TRUE(CreateFrom((inside_ / "sub" / "link.jsonl").string()).ok());
}

TEST_F(InputPathTest, EscapesAreDenied) {
  fs::create_symlink(outside_ / "batch.jsonl", inside_ / "file_link.jsonl");
  fs::create_directory_symlink(outside_, inside_ / "dir_link");
  const std::vector<std::string> escapes = {
      (inside_ / ".." / "private" / "batch.jsonl").string(),
      (inside_ / "sub" / ".." / ".." / "private" / "batch.jsonl").string(),
      (inside_ / "file_link.jsonl").string(),
      (inside_ / "dir_link" / "batch.jsonl").string(),
      (root_ / "inputs_evil" / "batch.jsonl").string(),
      "inputs/batch.jsonl",  // Relative: not accepted at all.
      (outside_ / "batch.jsonl").string(),
  };
  for (const std::string& path : escapes) {
    const grpc::Status status = CreateFrom(path);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << path;
    EXPECT_THAT(status.error_message(), HasSubstr("--input-dir")) << path;
  }
  grpc::ClientContext context;
  v1::ListBatchesResponse listed;
  ASSERT_TRUE(client_->stub().ListBatches(&context, v1::ListBatchesRequest(), &listed).ok());
  EXPECT_EQ(listed.batches_size(), 0);
}

TEST_F(InputPathTest, OversizeInputFileIsRefused) {
  const grpc::Status status = CreateFrom((inside_ / "big.jsonl").string());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--max-upload-bytes"));
}

}  // namespace
}  // namespace flatfleet::coordinator
