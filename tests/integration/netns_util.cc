#include "tests/integration/netns_util.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "host/command.h"

namespace hyper::test {

namespace {

std::string errnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

// The inode of a namespace file identifies the namespace.
ino_t inodeOf(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// A test process that crashed (an abort under a sanitizer, a kill) leaves its namespaces behind.
// Those of processes that no longer exist are removed once per run; names carry the pid.
void removeStaleNamespaces() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/run/netns", ec)) {
      std::string name = entry.path().filename().string();
      if (name.rfind("hyt-", 0) != 0) {
        continue;
      }
      std::string pid = name.substr(4, name.find('-', 4) - 4);
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos ||
          std::filesystem::exists("/proc/" + pid, ec)) {
        continue;
      }
      (void)host::runChecked({"ip", "netns", "del", name});
    }
  });
}

}  // namespace

std::string uniqueNetnsName(const std::string& tag) {
  static std::atomic<int> counter{0};
  return "hyt-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + tag;
}

Result<std::unique_ptr<NamedNetns>> NamedNetns::create(std::string name) {
  removeStaleNamespaces();
  HYPER_RETURN_IF_ERROR(host::runChecked({"ip", "netns", "add", name}).status());
  return std::unique_ptr<NamedNetns>(new NamedNetns(std::move(name)));
}

NamedNetns::~NamedNetns() {
  auto r = host::runChecked({"ip", "netns", "del", name_});
  if (!r.isOk()) {
    std::fprintf(stderr, "cleanup: %s\n", r.status().message().c_str());
  }
}

Result<std::string> NamedNetns::run(const std::vector<std::string>& argv) const {
  std::vector<std::string> full = {"ip", "netns", "exec", name_};
  full.insert(full.end(), argv.begin(), argv.end());
  return host::runChecked(full);
}

Result<int> NamedNetns::exitCode(const std::vector<std::string>& argv) const {
  std::vector<std::string> full = {"ip", "netns", "exec", name_};
  full.insert(full.end(), argv.begin(), argv.end());
  HYPER_ASSIGN_OR_RETURN(host::CommandResult r, host::runCommand(full));
  return r.exitCode;
}

Result<std::unique_ptr<EnteredNetns>> EnteredNetns::enter(const std::string& tag) {
  int original = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original < 0) {
    return Status::error(errnoText("open /proc/thread-self/ns/net"));
  }
  auto ns = NamedNetns::create(uniqueNetnsName(tag));
  if (!ns.isOk()) {
    ::close(original);
    return ns.status();
  }
  std::string path = "/run/netns/" + (*ns)->name();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ::close(original);
    return Status::error(errnoText("open " + path));  // ns is deleted by its destructor
  }
  int rc = ::setns(fd, CLONE_NEWNET);
  ::close(fd);
  if (rc != 0) {
    ::close(original);
    return Status::error(errnoText("setns " + path));
  }
  return std::unique_ptr<EnteredNetns>(new EnteredNetns(std::move(*ns), original));
}

bool EnteredNetns::active() const {
  ino_t here = inodeOf("/proc/thread-self/ns/net");
  return here != 0 && here == inodeOf("/run/netns/" + name());
}

EnteredNetns::~EnteredNetns() {
  if (::setns(original_, CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "cleanup: %s\n", errnoText("setns back").c_str());
  }
  ::close(original_);
  ns_.reset();  // `ip netns del` from the original namespace
}

}  // namespace hyper::test
