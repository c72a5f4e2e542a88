// Runs a command as a child process and reports the child's own peak resident set size
// (getrusage of the waited-for child: ru_maxrss), so a test can bound what `flatfleet quantize`
// holds without counting its own memory. Prints `peak_rss_bytes N` on stdout and exits with the
// child's status.
// Usage: peak_rss_run COMMAND [ARGS...]
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cstdio>

extern char** environ;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s COMMAND [ARGS...]\n", argv[0]);
    return 2;
  }
  pid_t child = 0;
  if (posix_spawnp(&child, argv[1], nullptr, nullptr, argv + 1, environ) != 0) {
    std::fprintf(stderr, "peak_rss_run: cannot run %s\n", argv[1]);
    return 2;
  }
  int status = 0;
  rusage usage{};
  if (wait4(child, &status, 0, &usage) != child) {
    std::fprintf(stderr, "peak_rss_run: wait4 failed\n");
    return 2;
  }
  std::printf("peak_rss_bytes %lld\n", static_cast<long long>(usage.ru_maxrss) * 1024);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
