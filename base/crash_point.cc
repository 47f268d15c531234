#include "base/crash_point.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <string>

namespace hyper {
namespace {

struct CrashConfig {
  long at = 0;      // 0: never
  std::string log;  // empty: no log
  bool enabled() const { return at > 0 || !log.empty(); }
};

const CrashConfig& config() {
  static const CrashConfig c = [] {
    CrashConfig out;
    if (const char* at = std::getenv("HYPER_TEST_CRASH_AT"); at != nullptr && *at != '\0') {
      char* end = nullptr;
      errno = 0;
      long n = std::strtol(at, &end, 10);
      if (errno == 0 && end != nullptr && *end == '\0' && n > 0) {
        out.at = n;
      }
    }
    if (const char* log = std::getenv("HYPER_TEST_CRASH_LOG"); log != nullptr) {
      out.log = log;
    }
    return out;
  }();
  return c;
}

// One write(2) per line to an O_APPEND file: lines of concurrent points do not interleave.
void appendLine(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return;
  }
  ssize_t n = ::write(fd, line.data(), line.size());
  (void)n;
  ::close(fd);
}

std::atomic<long> passed{0};

}  // namespace

void crashPoint(std::string_view name) {
  const CrashConfig& c = config();
  if (!c.enabled()) {
    return;
  }
  long n = passed.fetch_add(1) + 1;
  const bool kill = n == c.at;
  if (!c.log.empty()) {
    appendLine(c.log, (kill ? "killed " : "") + std::to_string(n) + " " + std::string(name) + "\n");
  }
  if (kill) {
    ::kill(::getpid(), SIGKILL);
    ::_exit(137);  // not reached
  }
}

}  // namespace hyper
