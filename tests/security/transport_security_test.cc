// TLS, mutual TLS, bearer tokens and the cluster secret on real gRPC servers over loopback,
// with throwaway certificates made by openssl at test time.
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "flatfleet/v1/batch.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"
#include "security/metadata_auth.h"
#include "security/secret_files.h"
#include "security/secure_channel.h"
#include "security/server_credentials.h"
#include "security/tls_files.h"
#include "tests/security/test_certificates.h"
#include "tests/quant/test_random.h"

namespace flatfleet::security {
namespace {

using ::testing::HasSubstr;
using testing_util::MakeTestCertificates;
using testing_util::RandomToken;

// Answers GetBatch with the id it was asked for, and notes whether a credential header reached
// the handler (it should not: the auth filter consumes it).
class EchoBatchService final : public v1::BatchService::Service {
 public:
  grpc::Status GetBatch(grpc::ServerContext* context, const v1::GetBatchRequest* request,
                        v1::Batch* response) override {
    const auto& metadata = context->client_metadata();
    credential_seen_ = credential_seen_ || metadata.count(kAuthorizationHeader) > 0 ||
                       metadata.count(kClusterSecretHeader) > 0;
    ++calls_;
    response->set_id(request->batch_id());
    return grpc::Status::OK;
  }
  int calls() const { return calls_; }
  bool credential_seen() const { return credential_seen_; }

 private:
  std::atomic<int> calls_{0};
  std::atomic<bool> credential_seen_{false};
};

class TestServer {
 public:
  explicit TestServer(const ServerSecurity& security) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", MakeServerCredentials(security), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~TestServer() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }
  bool started() const { return server_ != nullptr && port_ != 0; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  EchoBatchService& service() { return service_; }

 private:
  EchoBatchService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// One GetBatch call with a fresh random id; checks the echo when it succeeds.
grpc::Status CallGetBatch(const std::string& address, const ChannelSecurity& security) {
  auto stub = v1::BatchService::NewStub(MakeSecureChannel(address, security));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 random(seed);
  v1::GetBatchRequest request;
  request.set_batch_id(absl::StrCat("batch_", RandomToken(random, 12)));
  v1::Batch batch;
  grpc::Status status = stub->GetBatch(&context, request, &batch);
  if (status.ok()) EXPECT_EQ(batch.id(), request.batch_id());
  return status;
}

// grpc.health.v1.Health/Check for the whole server, through the generic stub (no health proto
// is needed: the request is empty and SERVING encodes as field 1 = 1).
grpc::Status CallHealthCheck(const std::string& address, const ChannelSecurity& security,
                             std::string* response_bytes) {
  grpc::GenericStub stub(MakeSecureChannel(address, security));
  grpc::CompletionQueue queue;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  grpc::Status status;
  auto call = stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &queue);
  call->StartCall();
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  EXPECT_TRUE(queue.Next(&tag, &ok));
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  std::vector<grpc::Slice> slices;
  if (status.ok() && response.Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      response_bytes->append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  return status;
}

class TransportSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestCertificates();
    ASSERT_FALSE(dir_.empty());
  }
  TlsIdentity Identity(const std::string& name) {
    absl::StatusOr<TlsIdentity> identity =
        LoadTlsIdentity(dir_ + "/" + name + ".pem", dir_ + "/" + name + ".key", "--tls");
    EXPECT_TRUE(identity.ok()) << identity.status();
    return identity.value_or(TlsIdentity());
  }
  std::string Ca(const std::string& name) {
    absl::StatusOr<std::string> ca = LoadCertificates(dir_ + "/" + name + ".pem", "--tls-ca");
    EXPECT_TRUE(ca.ok()) << ca.status();
    return ca.value_or("");
  }

  std::string dir_;
  std::mt19937_64 random_{quant::test_util::FreshSeed()};
};

TEST_F(TransportSecurityTest, TlsSucceedsWithTheRightCaOnlyAndRefusesPlaintext) {
  ServerSecurity server_security;
  server_security.tls = Identity("server");
  TestServer server(server_security);
  ASSERT_TRUE(server.started());

  ChannelSecurity right;
  right.server_ca_pem = Ca("ca");
  EXPECT_TRUE(CallGetBatch(server.address(), right).ok());
  // By name too: the certificate names localhost and coordinator.test.
  right.server_name_override = "coordinator.test";
  EXPECT_TRUE(CallGetBatch(server.address(), right).ok());

  ChannelSecurity wrong_ca;
  wrong_ca.server_ca_pem = Ca("other-ca");
  EXPECT_EQ(CallGetBatch(server.address(), wrong_ca).error_code(), grpc::StatusCode::UNAVAILABLE);
  ChannelSecurity wrong_name = right;
  wrong_name.server_name_override = "elsewhere.test";
  EXPECT_EQ(CallGetBatch(server.address(), wrong_name).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(CallGetBatch(server.address(), ChannelSecurity()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(server.service().calls(), 2);
}

TEST_F(TransportSecurityTest, MutualTlsRejectsClientsWithoutATrustedCertificate) {
  ServerSecurity server_security;
  server_security.tls = Identity("server");
  server_security.client_ca_pem = Ca("ca");
  TestServer server(server_security);
  ASSERT_TRUE(server.started());

  ChannelSecurity client;
  client.server_ca_pem = Ca("ca");
  client.client_identity = Identity("client");
  EXPECT_TRUE(CallGetBatch(server.address(), client).ok());

  ChannelSecurity no_certificate;
  no_certificate.server_ca_pem = Ca("ca");
  EXPECT_FALSE(CallGetBatch(server.address(), no_certificate).ok());
  ChannelSecurity untrusted = no_certificate;
  untrusted.client_identity = Identity("other-client");
  EXPECT_FALSE(CallGetBatch(server.address(), untrusted).ok());
  EXPECT_EQ(server.service().calls(), 1);
}

TEST_F(TransportSecurityTest, BearerTokensOnPlaintextAndTlsWithHealthOpen) {
  const std::string token = RandomToken(random_), second = RandomToken(random_);
  for (const bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "TLS" : "plaintext");
    ServerSecurity server_security;
    if (tls) server_security.tls = Identity("server");
    server_security.auth = BearerTokenPolicy({token, second});
    TestServer server(server_security);
    ASSERT_TRUE(server.started());
    ChannelSecurity base;
    if (tls) base.server_ca_pem = Ca("ca");

    for (const std::string& accepted : {token, second}) {
      ChannelSecurity client = base;
      client.call_metadata.emplace("authorization", "Bearer " + accepted);
      EXPECT_TRUE(CallGetBatch(server.address(), client).ok());
    }
    const grpc::Status missing = CallGetBatch(server.address(), base);
    EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(missing.error_message(), HasSubstr("missing credentials"));
    EXPECT_THAT(missing.error_message(), HasSubstr("--api-token-file"));
    ChannelSecurity wrong = base;
    wrong.call_metadata.emplace("authorization", "Bearer " + RandomToken(random_));
    const grpc::Status rejected = CallGetBatch(server.address(), wrong);
    EXPECT_EQ(rejected.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(rejected.error_message(), HasSubstr("invalid credentials"));
    // Only the authenticated calls reached the handler, which never saw the token.
    EXPECT_EQ(server.service().calls(), 2);
    EXPECT_FALSE(server.service().credential_seen());

    std::string health;
    const grpc::Status health_status = CallHealthCheck(server.address(), base, &health);
    EXPECT_TRUE(health_status.ok()) << health_status.error_message();
    EXPECT_EQ(health, std::string("\x08\x01", 2));  // status: SERVING
  }
}

TEST_F(TransportSecurityTest, ClusterSecretWithMutualTls) {
  const std::string secret = RandomToken(random_, 48);
  ServerSecurity server_security;
  server_security.tls = Identity("server");
  server_security.client_ca_pem = Ca("ca");
  server_security.auth = ClusterSecretPolicy(secret);
  TestServer server(server_security);
  ASSERT_TRUE(server.started());

  ChannelSecurity client;
  client.server_ca_pem = Ca("ca");
  client.client_identity = Identity("client");
  const grpc::Status missing = CallGetBatch(server.address(), client);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.error_message(), HasSubstr("--cluster-secret-file"));
  ChannelSecurity wrong = client;
  wrong.call_metadata.emplace(kClusterSecretHeader, RandomToken(random_, 48));
  EXPECT_EQ(CallGetBatch(server.address(), wrong).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  client.call_metadata.emplace(kClusterSecretHeader, secret);
  EXPECT_TRUE(CallGetBatch(server.address(), client).ok());
  EXPECT_EQ(server.service().calls(), 1);
}

}  // namespace
}  // namespace flatfleet::security
