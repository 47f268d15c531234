#include "tests/integration/broker_util.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "broker/client.h"
#include "broker/output.h"
#include "host/command.h"

namespace hyper::test {

std::string randomSuffix() {
  std::random_device rd;
  const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 6; ++i) {
    s += hex[rd() % 16];
  }
  return s;
}

Result<std::unique_ptr<TestGroup>> TestGroup::create(const std::string& name) {
  HYPER_ASSIGN_OR_RETURN(std::string out, host::runChecked({"groupadd", name}));
  struct group* g = ::getgrnam(name.c_str());
  if (g == nullptr) {
    return Status::error("group " + name + " missing after groupadd");
  }
  return std::unique_ptr<TestGroup>(new TestGroup(name, g->gr_gid));
}

TestGroup::~TestGroup() { (void)host::runCommand({"groupdel", name_}); }

Result<std::unique_ptr<TestUser>> TestUser::create(const std::string& name,
                                                   const std::vector<std::string>& groups) {
  std::vector<std::string> argv = {"useradd",           "-M", "-U",          "-s",
                                   "/usr/sbin/nologin", "-d", "/nonexistent"};
  if (!groups.empty()) {
    std::string list;
    for (const auto& g : groups) {
      list += (list.empty() ? "" : ",") + g;
    }
    argv.push_back("-G");
    argv.push_back(list);
  }
  argv.push_back(name);
  HYPER_ASSIGN_OR_RETURN(std::string out, host::runChecked(argv));
  struct passwd* pw = ::getpwnam(name.c_str());
  if (pw == nullptr) {
    return Status::error("user " + name + " missing after useradd");
  }
  return std::unique_ptr<TestUser>(new TestUser(name, pw->pw_uid, pw->pw_gid));
}

TestUser::~TestUser() {
  (void)host::runCommand({"userdel", name_});
  (void)host::runCommand({"groupdel", name_});
}

Result<std::unique_ptr<BrokerProcess>> BrokerProcess::start(const std::vector<std::string>& args,
                                                            const std::string& socketPath,
                                                            const std::string& logPath) {
  int logFd = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (logFd < 0) {
    return Status::error("open " + logPath + ": " + std::strerror(errno));
  }
  std::vector<std::string> argv = {HYPER_BROKER_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) {
    cargv.push_back(a.data());
  }
  cargv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(logFd, STDERR_FILENO);
    ::dup2(logFd, STDOUT_FILENO);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  ::close(logFd);
  if (pid < 0) {
    return Status::error(std::string("fork: ") + std::strerror(errno));
  }
  std::unique_ptr<BrokerProcess> proc(new BrokerProcess(pid, logPath));
  // Ready once it answers on the socket (bounded: a broker that never comes up fails the test).
  for (int i = 0; i < 200; ++i) {
    struct stat st;
    if (::stat(socketPath.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      return proc;
    }
    if (!proc->alive()) {
      return Status::error("hyper-broker exited at start:\n" + proc->log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::error("hyper-broker did not create " + socketPath + " within 10 s:\n" +
                       proc->log());
}

bool BrokerProcess::alive() const {
  int status;
  return ::waitpid(pid_, &status, WNOHANG) == 0;
}

std::string BrokerProcess::log() const {
  std::ifstream in(logPath_);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

BrokerProcess::~BrokerProcess() {
  if (alive()) {
    ::kill(pid_, SIGTERM);
    int status;
    ::waitpid(pid_, &status, 0);
  }
}

Result<int> connectAs(const std::string& socketPath, uid_t uid, gid_t gid) {
  // The groups the system gives the user, as a login (or setpriv --init-groups) would set them.
  struct passwd* pw = ::getpwuid(uid);
  std::vector<gid_t> groups = {gid};
  if (pw != nullptr) {
    int n = 256;
    groups.resize(static_cast<size_t>(n));
    if (::getgrouplist(pw->pw_name, gid, groups.data(), &n) < 0) {
      n = 0;
    }
    groups.resize(static_cast<size_t>(n));
  }
  return connectAsWithGroups(socketPath, uid, gid, groups);
}

Result<int> connectAsWithGroups(const std::string& socketPath, uid_t uid, gid_t gid,
                                const std::vector<gid_t>& groups) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socketPath.c_str(), sizeof addr.sun_path - 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Status::error(std::string("socket: ") + std::strerror(errno));
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(gid) != 0 ||
        ::setuid(uid) != 0) {
      ::_exit(2);
    }
    ::_exit(::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) == 0 ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ::close(fd);
    return Status::error("connect to " + socketPath + " as uid " + std::to_string(uid) +
                         " failed (child status " + std::to_string(status) + ")");
  }
  return fd;
}

std::vector<nlohmann::json> readFrames(int fd,
                                       const std::function<bool(const nlohmann::json&)>& until) {
  std::vector<nlohmann::json> frames;
  std::string buffer, line;
  while (broker::readFrameLine(fd, buffer, line)) {
    auto frame = nlohmann::json::parse(line, nullptr, false);
    frames.push_back(frame);
    if (frame.is_discarded() || (frame.is_object() && frame.value("type", "") == "exit") ||
        (until && until(frame))) {
      break;
    }
  }
  return frames;
}

std::string stdoutOf(const std::vector<nlohmann::json>& frames) {
  std::string out;
  for (const auto& f : frames) {
    if (f.is_object() && f.value("type", "") == "stdout") {
      auto data = broker::frameData(f);
      if (data.isOk()) {
        out += *data;
      }
    }
  }
  return out;
}

bool waitGone(pid_t pid, int seconds) {
  for (int i = 0; i < seconds * 20; ++i) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    if (!stat) {
      return true;
    }
    std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    size_t paren = content.rfind(')');
    if (paren != std::string::npos && paren + 2 < content.size() && content[paren + 2] == 'Z') {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace hyper::test
