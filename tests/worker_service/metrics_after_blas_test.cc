// GPTQ loads OpenBLAS at first use (quant/blas_library.h); the process must keep working for
// everything else that runs in it (the `flatfleet` binary is quantize and serve in one). Linking
// OpenBLAS had made its 60 KB of static TLS come out of every thread's stack, and civetweb's
// small worker stacks overflowed serving /metrics. Here, after BLAS has run on two threads:
// the metrics server answers, and a thread with a 64 KiB stack can still use 32 KiB of it (with
// 60 KB of static TLS taken from that stack it would crash).
#include <pthread.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "http_get.h"
#include "quant/blas_library.h"
#include "quant/gptq_quantizer.h"
#include "quant/gptq_solver.h"
#include "worker/serving/metrics_http_server.h"

namespace flatfleet::engine {
namespace {

// A GPTQ solve big enough for OpenBLAS to use its threads (and every thread's TLS).
void RunGptqOnBlas() {
  const int64_t rows = 64, cols = 512;
  std::vector<double> h(cols * cols, 0.0);
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = 0; j < cols; ++j) h[i * cols + j] = (i == j ? 2.0 : 0.0) + 1.0 / (1 + i + j);
  }
  std::vector<float> w(rows * cols);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 7919) % 101) / 50.0f - 1;
  quant::GptqOptions options;
  options.solver = quant::BlasGptqSolver();
  auto result = quant::QuantizeGptq(w, rows, cols, h, quant::QuantFormat{.bits = 4}, options);
  ASSERT_TRUE(result.ok()) << result.status();
}

void* UseHalfOfASmallStack(void* done) {
  volatile char buffer[32 * 1024];
  std::memset(const_cast<char*>(buffer), 1, sizeof(buffer));
  int sum = 0;
  for (size_t i = 0; i < sizeof(buffer); i += 512) sum += buffer[i];
  static_cast<std::atomic<int>*>(done)->store(sum);
  return nullptr;
}

TEST(MetricsAfterBlasTest, MetricsServerAndSmallStacksWorkAfterGptqLoadedBlas) {
  if (quant::LoadedBlasLibrary() == nullptr) GTEST_SKIP() << "OpenBLAS not loadable here";
  RunGptqOnBlas();
  std::thread other(RunGptqOnBlas);
  other.join();

  metrics::MetricsRegistry registry;
  auto requests = registry.AddCounter("test_requests_total", "Requests.").value();
  (*requests->WithLabels({}))->Increment(5);
  auto server = MetricsHttpServer::Start("127.0.0.1:0", registry, nullptr);
  ASSERT_TRUE(server.ok()) << server.status();
  for (int i = 0; i < 20; ++i) {
    testing::HttpReply page = testing::HttpGet((*server)->port(), "/metrics");
    ASSERT_EQ(page.status, 200);
    ASSERT_NE(page.body.find("test_requests_total 5"), std::string::npos);
  }

  pthread_attr_t attributes;
  ASSERT_EQ(pthread_attr_init(&attributes), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attributes, 64 * 1024), 0);
  std::atomic<int> done{0};
  pthread_t thread;
  ASSERT_EQ(pthread_create(&thread, &attributes, UseHalfOfASmallStack, &done), 0);
  ASSERT_EQ(pthread_join(thread, nullptr), 0);
  pthread_attr_destroy(&attributes);
  EXPECT_EQ(done.load(), 64);  // 32768 / 512 bytes of value 1
}

}  // namespace
}  // namespace flatfleet::engine
