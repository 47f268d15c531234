#include "broker/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

namespace hyper::broker {

namespace {

std::string errnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string readSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

Status writeFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::error(errnoText("open " + path));
  }
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) {
    errno = n < 0 ? err : EIO;
    return Status::error(errnoText("write " + text + " to " + path));
  }
  return Status::ok();
}

bool hasWord(const std::string& list, char sep, const std::string& word) {
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, sep)) {
    while (!item.empty() && (item.back() == '\n' || item.back() == ' ')) {
      item.pop_back();
    }
    if (item == word) {
      return true;
    }
  }
  return false;
}

bool makeDir(const std::string& path) {
  return ::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST;
}

// Kills what is left in a group and removes it; a group empties a moment after its last process
// is reaped, so EBUSY is retried briefly.
void removeGroup(const std::string& dir) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) {
      return;
    }
    if (errno != EBUSY) {
      return;
    }
    std::stringstream procs(readSmallFile(dir + "/cgroup.procs"));
    pid_t pid;
    while (procs >> pid) {
      ::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// The broker's own group in the v1 hierarchy of `controller`, from /proc/self/cgroup's text
// ("4:memory:/system.slice/x"); "/" when not listed.
std::string ownV1Group(const std::string& selfCgroupText, const std::string& controller) {
  std::stringstream lines(selfCgroupText);
  std::string line;
  while (std::getline(lines, line)) {
    auto first = line.find(':');
    auto second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) {
      continue;
    }
    if (hasWord(line.substr(first + 1, second - first - 1), ',', controller)) {
      std::string path = line.substr(second + 1);
      return path.empty() || path.find("..") != std::string::npos ? "/" : path;
    }
  }
  return "/";
}

}  // namespace

CgroupSupport detectCgroups(const std::string& mountsText, const std::string& selfCgroupText,
                            const std::string& parent) {
  CgroupSupport s;
  std::string v1PidsMount, v1MemoryMount;
  std::vector<std::string> v2Mounts;
  std::stringstream lines(mountsText);
  std::string line;
  while (std::getline(lines, line)) {
    std::stringstream fields(line);
    std::string device, dir, type, options;
    if (!(fields >> device >> dir >> type >> options)) {
      continue;
    }
    if (type == "cgroup2") {
      v2Mounts.push_back(dir);
    } else if (type == "cgroup") {
      if (hasWord(options, ',', "pids") && v1PidsMount.empty()) {
        v1PidsMount = dir;
      }
      if (hasWord(options, ',', "memory") && v1MemoryMount.empty()) {
        v1MemoryMount = dir;
      }
    }
  }
  std::string v2Note;
  for (const auto& mount : v2Mounts) {
    std::string controllers = readSmallFile(mount + "/cgroup.controllers");
    if (!hasWord(controllers, ' ', "pids") || !hasWord(controllers, ' ', "memory")) {
      v2Note = "cgroup2 at " + mount + " offers no pids and memory controllers";
      continue;
    }
    std::string dir = mount + "/" + parent;
    Status ok = writeFile(mount + "/cgroup.subtree_control", "+pids +memory");
    if (ok.isOk() && makeDir(dir)) {
      ok = writeFile(dir + "/cgroup.subtree_control", "+pids +memory");
    } else if (ok.isOk()) {
      ok = Status::error(errnoText("mkdir " + dir));
    }
    if (ok.isOk()) {
      s.v2 = dir;
      return s;
    }
    v2Note = "cgroup2 at " + mount + " is not writable (" + ok.message() + ")";
  }
  std::vector<std::string> missing;
  missing.push_back(v2Mounts.empty() ? "no cgroup2 mount" : v2Note);
  // In v1 the runs' groups nest under the broker's own (a v1 group may hold processes and
  // children both), so they stay inside whatever limits the broker itself runs under.
  for (auto [controller, mount, out] :
       {std::tuple{"pids", v1PidsMount, &s.v1Pids}, {"memory", v1MemoryMount, &s.v1Memory}}) {
    std::string base = mount + ownV1Group(selfCgroupText, controller);
    std::string dir = (base.back() == '/' ? base : base + "/") + parent;
    if (mount.empty()) {
      missing.push_back(std::string("no cgroup v1 ") + controller + " hierarchy");
    } else if (makeDir(dir)) {
      *out = dir;
    } else {
      missing.push_back(errnoText(std::string("cgroup v1 ") + controller + ": mkdir " + dir));
    }
  }
  if (s.v1Pids.empty() || s.v1Memory.empty()) {
    for (const auto& m : missing) {
      s.missing += (s.missing.empty() ? "" : "; ") + m;
    }
  }
  return s;
}

Result<std::unique_ptr<RunCgroup>> RunCgroup::create(const CgroupSupport& support,
                                                     const std::string& name, long long pidsMax,
                                                     long long memoryMax) {
  std::unique_ptr<RunCgroup> group(new RunCgroup());
  auto add = [&](const std::string& parent,
                 const std::vector<std::pair<std::string, long long>>& limits) -> Status {
    std::string dir = parent + "/" + name;
    if (::mkdir(dir.c_str(), 0755) != 0) {
      return Status::error(errnoText("mkdir " + dir));
    }
    group->dirs_.push_back(dir);
    for (const auto& [file, value] : limits) {
      if (value > 0) {
        HYPER_RETURN_IF_ERROR(writeFile(dir + "/" + file, std::to_string(value)));
      }
    }
    int fd = ::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      return Status::error(errnoText("open " + dir + "/cgroup.procs"));
    }
    group->procsFds_.push_back(fd);
    return Status::ok();
  };
  Status made;
  if (!support.v2.empty()) {
    made = add(support.v2, {{"pids.max", pidsMax}, {"memory.max", memoryMax}});
  } else {
    if (!support.v1Pids.empty() && pidsMax > 0) {
      made = add(support.v1Pids, {{"pids.max", pidsMax}});
    }
    if (made.isOk() && !support.v1Memory.empty() && memoryMax > 0) {
      made = add(support.v1Memory, {{"memory.limit_in_bytes", memoryMax}});
    }
  }
  if (!made.isOk()) {
    return made.withContext("create the run's cgroup");
  }
  return group;
}

RunCgroup::~RunCgroup() {
  for (int fd : procsFds_) {
    ::close(fd);
  }
  for (const auto& dir : dirs_) {
    removeGroup(dir);
  }
}

}  // namespace hyper::broker
