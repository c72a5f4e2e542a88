// A streaming completion whose client disconnects mid-stream is cancelled: over a real HTTP
// server and a raw socket that closes after the first event, the backend's text callback
// refuses more text within a few pieces, which is where Scheduler::Generate cancels the request.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/http/file_store.h"
#include "coordinator/http/openai_api.h"
#include "coordinator/http/openai_http_server.h"
#include "coordinator/job_store.h"
#include "gtest/gtest.h"

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

class HttpStreamDisconnectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("flatfleet-http-disconnect-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store_ = *JobStore::Open((dir_ / "jobs.db").string());
    files_ = *FileStore::Open((dir_ / "files").string());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<FileStore> files_;
};

TEST_F(HttpStreamDisconnectTest, ClosingTheSocketMidStreamCancelsTheRequest) {
  // A backend that would stream kPieces pieces, 2 ms apart, unless the callback refuses one.
  constexpr int kPieces = 5000;
  std::atomic<int> generated{0};
  std::atomic<int> refused_at{-1};
  std::atomic<bool> returned{false};
  OpenAiApiBackend backend;
  backend.store = store_.get();
  backend.files = files_.get();
  backend.stream_generate =
      [&](const v1::RequestBody&, absl::Duration,
          const std::function<bool(const std::string&)>& on_text) -> absl::StatusOr<v1::Response> {
    for (int i = 0; i < kPieces; ++i) {
      generated = i + 1;
      if (!on_text(absl::StrCat("piece", i, " "))) {
        refused_at = i;
        returned = true;
        return absl::CancelledError("the streaming client disconnected");
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
    returned = true;
    return v1::Response();
  };
  OpenAiApiOptions options;
  options.model = "demo";
  OpenAiApi api(options, backend);
  auto server = OpenAiHttpServer::Start("127.0.0.1:0", security::ServerSecurity{}, &api);
  ASSERT_TRUE(server.ok()) << server.status();

  for (const bool chat : {false, true}) {
    SCOPED_TRACE(chat ? "chat" : "completions");
    generated = 0;
    refused_at = -1;
    returned = false;
    const std::string body =
        chat ? R"({"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true})"
             : R"({"model":"demo","prompt":"p","stream":true})";
    const std::string request =
        absl::StrCat("POST ", chat ? "/v1/chat/completions" : "/v1/completions",
                     " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n",
                     "Content-Length: ", body.size(), "\r\n\r\n", body);
    const int fd = Connect((*server)->port());
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
    // Read until the first text piece has arrived, then hang up.
    std::string received;
    char buffer[4096];
    while (received.find("piece0") == std::string::npos) {
      const ssize_t read = ::recv(fd, buffer, sizeof(buffer), 0);
      ASSERT_GT(read, 0) << "the stream ended before its first piece: " << received;
      received.append(buffer, static_cast<size_t>(read));
    }
    EXPECT_TRUE(received.starts_with("HTTP/1.1 200")) << received;
    const int at_close = generated.load();
    ::close(fd);
    const absl::Time deadline = absl::Now() + absl::Seconds(8);
    while (!returned && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
    ASSERT_TRUE(returned) << "the backend was still generating 8 s after the client left";
    // Refused, not run to its end: within the few writes the kernel accepts before the peer's
    // reset comes back (measured: the 2nd piece after the close is refused; a full run would be
    // 5000 pieces, 2 ms apart).
    ASSERT_GE(refused_at.load(), 0) << "the backend ran all " << generated << " pieces";
    EXPECT_LE(refused_at.load() - at_close, 16) << "pieces at close " << at_close;
    // Nothing was generated after the refusal.
    EXPECT_EQ(generated.load(), refused_at.load() + 1);
  }
}

}  // namespace
}  // namespace flatfleet::coordinator::http
