// The HTTP API over TLS through civetweb (whose Debian build needs coordinator/civetweb_ssl/ to
// run with OpenSSL 3): an HTTPS client that checks the server against the test CA gets answers,
// bearer tokens are checked inside TLS, streamed events arrive, and neither plaintext nor a
// client trusting another CA gets through.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/http/file_store.h"
#include "coordinator/http/openai_api.h"
#include "coordinator/http/openai_http_server.h"
#include "coordinator/job_store.h"
#include "gtest/gtest.h"
#include "security/metadata_auth.h"
#include "security/tls_files.h"
#include "tests/security/test_certificates.h"

namespace flatfleet::coordinator::http {
namespace {

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  return fd;
}

// One request over TLS, checking the server's certificate against `ca_path` for "localhost";
// the whole answer, or nullopt when the handshake failed.
std::optional<std::string> HttpsCall(int port, const std::string& ca_path,
                                     const std::string& request) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> context(SSL_CTX_new(TLS_client_method()),
                                                            &SSL_CTX_free);
  EXPECT_EQ(SSL_CTX_load_verify_locations(context.get(), ca_path.c_str(), nullptr), 1);
  SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(context.get()), &SSL_free);
  SSL_set1_host(ssl.get(), "localhost");
  SSL_set_tlsext_host_name(ssl.get(), "localhost");
  const int fd = Connect(port);
  EXPECT_GE(fd, 0);
  SSL_set_fd(ssl.get(), fd);
  std::optional<std::string> answer;
  if (SSL_connect(ssl.get()) == 1) {
    EXPECT_EQ(SSL_write(ssl.get(), request.data(), static_cast<int>(request.size())),
              static_cast<int>(request.size()));
    answer.emplace();
    char buffer[4096];
    for (int read; (read = SSL_read(ssl.get(), buffer, sizeof(buffer))) > 0;) {
      answer->append(buffer, static_cast<size_t>(read));
    }
  }
  ERR_clear_error();
  ::close(fd);
  return answer;
}

std::string Request(const std::string& method, const std::string& path, const std::string& token,
                    const std::string& body = "") {
  std::string request = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: localhost\r\n");
  if (!token.empty()) absl::StrAppend(&request, "Authorization: Bearer ", token, "\r\n");
  if (!body.empty()) {
    absl::StrAppend(&request, "Content-Type: application/json\r\nContent-Length: ", body.size(),
                    "\r\n");
  }
  return absl::StrCat(request, "Connection: close\r\n\r\n", body);
}

TEST(HttpsApiTest, ServesOverTlsWithTokensAndStreams) {
  const std::string certs = security::testing_util::MakeTestCertificates();
  ASSERT_FALSE(certs.empty());
  const std::filesystem::path dir = std::filesystem::path(certs) / "http";
  std::filesystem::create_directories(dir);
  auto store = JobStore::Open((dir / "jobs.db").string());
  ASSERT_TRUE(store.ok()) << store.status();
  auto files = FileStore::Open((dir / "files").string());
  ASSERT_TRUE(files.ok()) << files.status();
  OpenAiApiOptions options;
  options.model = "demo";
  OpenAiApiBackend backend;
  backend.store = store->get();
  backend.files = files->get();
  backend.stream_generate = [](const v1::RequestBody&, absl::Duration,
                               const std::function<void(const std::string&)>& on_text) {
    on_text("over ");
    on_text("tls");
    v1::Response response;
    response.set_text("over tls");
    response.set_finish_reason(v1::FINISH_REASON_STOP);
    return absl::StatusOr<v1::Response>(response);
  };
  OpenAiApi api(options, backend);
  security::ServerSecurity security;
  auto identity =
      security::LoadTlsIdentity((std::filesystem::path(certs) / "server.pem").string(),
                                (std::filesystem::path(certs) / "server.key").string(), "--tls");
  ASSERT_TRUE(identity.ok()) << identity.status();
  security.tls = *identity;
  const std::string token = "secret-token-1";
  security.auth = security::BearerTokenPolicy({token});
  auto server = OpenAiHttpServer::Start("127.0.0.1:0", security, &api);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE((*server)->tls());
  const int port = (*server)->port();
  const std::string ca = (std::filesystem::path(certs) / "ca.pem").string();

  std::optional<std::string> models = HttpsCall(port, ca, Request("GET", "/v1/models", token));
  ASSERT_TRUE(models.has_value()) << "TLS handshake failed";
  EXPECT_TRUE(models->starts_with("HTTP/1.1 200")) << *models;
  EXPECT_NE(models->find(R"("id":"demo")"), std::string::npos) << *models;

  std::optional<std::string> denied = HttpsCall(port, ca, Request("GET", "/v1/models", "wrong"));
  ASSERT_TRUE(denied.has_value());
  EXPECT_TRUE(denied->starts_with("HTTP/1.1 401")) << *denied;

  std::optional<std::string> streamed = HttpsCall(
      port, ca,
      Request("POST", "/v1/completions", token, R"({"model":"demo","prompt":"p","stream":true})"));
  ASSERT_TRUE(streamed.has_value());
  EXPECT_TRUE(streamed->starts_with("HTTP/1.1 200")) << *streamed;
  EXPECT_NE(streamed->find("text/event-stream"), std::string::npos);
  const size_t first = streamed->find(R"("text":"over ")");
  const size_t second = streamed->find(R"("text":"tls")");
  EXPECT_NE(first, std::string::npos) << *streamed;
  EXPECT_NE(second, std::string::npos) << *streamed;
  EXPECT_LT(first, second);
  EXPECT_TRUE(streamed->ends_with("data: [DONE]\n\n")) << *streamed;

  // A client that trusts another CA refuses the server; plaintext gets no HTTP answer.
  EXPECT_FALSE(HttpsCall(port, (std::filesystem::path(certs) / "other-ca.pem").string(),
                         Request("GET", "/v1/models", token))
                   .has_value());
  const int plain = Connect(port);
  ASSERT_GE(plain, 0);
  const std::string request = Request("GET", "/v1/models", token);
  ASSERT_EQ(::write(plain, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  char buffer[256];
  const ssize_t read = ::read(plain, buffer, sizeof(buffer));
  EXPECT_FALSE(read > 0 &&
               std::string(buffer, static_cast<size_t>(read)).starts_with("HTTP/1.1 2"));
  ::close(plain);
  server->reset();
}

}  // namespace
}  // namespace flatfleet::coordinator::http
