#include "coordinator/http/openai_http_server.h"

#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <cstring>
#include <filesystem>
#include <mutex>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "civetweb.h"
#include "coordinator/http/openai_error.h"
#include "security/metadata_auth.h"

namespace flatfleet::coordinator::http {
namespace {

constexpr int kThreads = 32;
// Uploads of large files over slow links take a while; half-sent requests still end.
constexpr int kRequestTimeoutMs = 60'000;
// Multipart framing around the file: its headers, the purpose field, the boundaries.
constexpr uint64_t kMultipartOverheadBytes = 64 << 10;
// Bodies of routes that take JSON are small.
constexpr uint64_t kMaxJsonBodyBytes = 16 << 20;

void InitCivetwebOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mg_init_library(0); });
}

constexpr char kSslCompatLibrary[] = "libflatfleet_civetweb_ssl.so";

// Makes civetweb's TLS work with OpenSSL 3 (see coordinator/civetweb_ssl/): loads the library
// beside this binary that supplies the function name civetweb looks up, then has civetweb
// initialise TLS. Once per process.
absl::Status InitCivetwebTlsOnce() {
  static std::once_flag once;
  static absl::Status status;
  std::call_once(once, [] {
    std::error_code error;
    const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
    const std::string path = (exe.parent_path() / kSslCompatLibrary).string();
    if (error || dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      const char* why = dlerror();
      status = absl::FailedPreconditionError(absl::StrCat(
          "--http-listen with --tls-cert needs ", path, " (built with flatfleet, kept beside its ",
          "binary): ", why != nullptr ? why : error.message()));
      return;
    }
    if ((mg_init_library(MG_FEATURES_TLS) & MG_FEATURES_TLS) == 0) {
      status = absl::FailedPreconditionError(
          "civetweb could not initialise TLS (it loads libssl.so and libcrypto.so: install "
          "libssl-dev)");
    }
  });
  return status;
}

// Reads every PEM certificate of `pem`.
std::vector<X509*> ReadCertificates(const std::string& pem) {
  std::vector<X509*> certificates;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return certificates;
  while (X509* certificate = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    certificates.push_back(certificate);
  }
  ERR_clear_error();  // The end of the text reads as an error.
  BIO_free(bio);
  return certificates;
}

// civetweb's init_ssl callback: the identity from memory (--tls-cert/--tls-key were read and
// checked at startup), and with a client CA, mutual TLS. 1: done; -1: fail the start.
int InitSsl(void* ssl_context, void* user_data) {
  auto* security = static_cast<const security::ServerSecurity*>(user_data);
  auto* context = static_cast<SSL_CTX*>(ssl_context);
  std::vector<X509*> chain = ReadCertificates(security->tls->cert_chain_pem);
  if (chain.empty() || SSL_CTX_use_certificate(context, chain[0]) != 1) {
    for (X509* certificate : chain) X509_free(certificate);
    return -1;
  }
  X509_free(chain[0]);
  for (size_t i = 1; i < chain.size(); ++i) {
    // The context takes ownership of extra chain certificates.
    if (SSL_CTX_add_extra_chain_cert(context, chain[i]) != 1) X509_free(chain[i]);
  }
  const std::string& key_pem = security->tls->private_key_pem;
  BIO* bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key =
      bio != nullptr ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr;
  if (bio != nullptr) BIO_free(bio);
  const bool key_ok = key != nullptr && SSL_CTX_use_PrivateKey(context, key) == 1 &&
                      SSL_CTX_check_private_key(context) == 1;
  if (key != nullptr) EVP_PKEY_free(key);
  if (!key_ok) return -1;
  if (!security->client_ca_pem.empty()) {
    std::vector<X509*> authorities = ReadCertificates(security->client_ca_pem);
    X509_STORE* store = SSL_CTX_get_cert_store(context);
    bool added = !authorities.empty();
    for (X509* authority : authorities) {
      added = added && X509_STORE_add_cert(store, authority) == 1;
      X509_free(authority);
    }
    if (!added) return -1;
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return 1;
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return status >= 500 ? "Internal Server Error" : "Error";
  }
}

// The status line and headers; a streamed body has no Content-Length and ends when the
// connection closes.
std::string Header(const HttpResponse& response, bool streamed) {
  std::string header =
      absl::StrCat("HTTP/1.1 ", response.status, " ", ReasonPhrase(response.status),
                   "\r\nContent-Type: ", response.content_type, "\r\n");
  if (!streamed) absl::StrAppend(&header, "Content-Length: ", response.body.size(), "\r\n");
  header += "Connection: close\r\n";
  for (const auto& [name, value] : response.headers)
    absl::StrAppend(&header, name, ": ", value, "\r\n");
  header += "\r\n";
  return header;
}

void Send(mg_connection* connection, const HttpResponse& response, bool head) {
  const std::string header = Header(response, /*streamed=*/false);
  mg_write(connection, header.data(), header.size());
  if (!head && !response.body.empty()) {
    mg_write(connection, response.body.data(), response.body.size());
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> OpenAiHttpServer::Start(
    const std::string& address, const security::ServerSecurity& security, OpenAiApi* api,
    absl::Duration expiry_interval) {
  InitCivetwebOnce();
  std::unique_ptr<OpenAiHttpServer> server(new OpenAiHttpServer(security, api));
  const std::string threads = absl::StrCat(kThreads);
  const std::string timeout = absl::StrCat(kRequestTimeoutMs);
  // civetweb marks a TLS port with a trailing "s".
  const std::string ports = security.tls ? address + "s" : address;
  if (security.tls) {
    if (absl::Status tls = InitCivetwebTlsOnce(); !tls.ok()) return tls;
  }
  std::vector<const char*> options = {
      "listening_ports",    ports.c_str(),   "num_threads",       threads.c_str(),
      "request_timeout_ms", timeout.c_str(), "enable_keep_alive", "no"};
  options.push_back(nullptr);
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  if (security.tls) callbacks.init_ssl = &InitSsl;
  // The user data is for init_ssl: the server's copy of the security settings.
  server->context_ = mg_start(&callbacks, const_cast<security::ServerSecurity*>(&server->security_),
                              options.data());
  if (server->context_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve the HTTP API on '", address, "' (bad address or port in use",
                     security.tls ? ", or civetweb refused the TLS identity)" : ")"));
  }
  mg_set_request_handler(server->context_, "/", &OpenAiHttpServer::HandleRequest, server.get());
  mg_server_port bound[1];
  if (mg_get_server_ports(server->context_, 1, bound) < 1 || bound[0].port <= 0) {
    return absl::InternalError(absl::StrCat("cannot tell the port bound for '", address, "'"));
  }
  server->port_ = bound[0].port;
  OpenAiHttpServer* self = server.get();
  server->expiry_thread_ =
      std::thread([self, expiry_interval] { self->ExpiryLoop(expiry_interval); });
  return server;
}

OpenAiHttpServer::~OpenAiHttpServer() {
  stopping_ = true;
  if (expiry_thread_.joinable()) expiry_thread_.join();
  if (context_ != nullptr) mg_stop(context_);
}

void OpenAiHttpServer::ExpiryLoop(absl::Duration interval) {
  while (!stopping_) {
    api_->ExpireDueBatches();
    // Short sleeps, so that shutdown does not wait a whole interval.
    const absl::Time next = absl::Now() + interval;
    while (!stopping_ && absl::Now() < next) absl::SleepFor(absl::Milliseconds(50));
  }
}

int OpenAiHttpServer::HandleRequest(mg_connection* connection, void* server) {
  auto* self = static_cast<OpenAiHttpServer*>(server);
  const mg_request_info* info = mg_get_request_info(connection);
  HttpRequest request;
  request.method = info->request_method != nullptr ? info->request_method : "";
  request.path = info->local_uri != nullptr ? info->local_uri : "";
  request.query = info->query_string != nullptr ? info->query_string : "";
  const bool head = request.method == "HEAD";
  if (self->security_.auth.enabled()) {
    const char* authorization = mg_get_header(connection, "Authorization");
    std::vector<std::string_view> values;
    if (authorization != nullptr) values.emplace_back(authorization);
    if (!security::CheckCallMetadata(self->security_.auth, request.path, values).ok()) {
      HttpResponse denied = ErrorResponse(
          401,
          "Incorrect or missing API key: send 'Authorization: Bearer <token>' with a token "
          "from the coordinator's --api-token-file",
          "", "invalid_api_key");
      denied.headers["WWW-Authenticate"] = "Bearer";
      Send(connection, denied, head);
      return 401;
    }
  }
  if (const char* content_type = mg_get_header(connection, "Content-Type")) {
    request.headers["content-type"] = content_type;
  }
  // Only uploads may be large; bound every body before reading it.
  const bool upload =
      request.method == "POST" && (request.path == "/v1/files" || request.path == "/v1/files/");
  const uint64_t limit =
      upload ? self->api_->options().max_file_bytes + kMultipartOverheadBytes : kMaxJsonBodyBytes;
  const auto too_large = [&] {
    HttpResponse refused = ErrorResponse(
        413,
        absl::StrCat("the request body exceeds the coordinator's limit of ",
                     upload ? self->api_->options().max_file_bytes : kMaxJsonBodyBytes,
                     upload ? " bytes per file" : " bytes"),
        upload ? "file" : "", upload ? "file_too_large" : "request_too_large");
    Send(connection, refused, head);
    return 413;
  };
  if (info->content_length > 0 && static_cast<uint64_t>(info->content_length) > limit) {
    return too_large();
  }
  // On the heap: civetweb's threads have small stacks.
  std::string buffer(64 << 10, '\0');
  while (true) {
    const int read = mg_read(connection, buffer.data(), buffer.size());
    if (read <= 0) break;
    if (request.body.size() + static_cast<size_t>(read) > limit) return too_large();
    request.body.append(buffer.data(), static_cast<size_t>(read));
  }
  // civetweb's threads have small stacks (Debian builds it with a fixed stack size); the
  // handlers (JSON of any nesting, the scheduler's calls) run on a thread with a normal one.
  HttpResponse response;
  bool streamed = false;
  std::thread handler([&] {
    response = self->api_->Handle(request);
    if (!response.stream || head) return;
    const std::string header = Header(response, /*streamed=*/true);
    const BodyWriter write = [&](std::string_view bytes) {
      if (!streamed) {
        streamed = true;
        if (mg_write(connection, header.data(), header.size()) <= 0) return false;
      }
      return mg_write(connection, bytes.data(), bytes.size()) > 0;
    };
    HttpResponse instead = response.stream(write);
    if (!streamed) response = std::move(instead);
  });
  handler.join();
  if (!streamed) Send(connection, response, head);
  return response.status;
}

}  // namespace flatfleet::coordinator::http
