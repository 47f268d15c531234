#include "broker/daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <thread>

#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "broker/log_text.h"
#include "broker/output.h"
#include "broker/paths.h"
#include "broker/runner.h"

namespace hyper::broker {

using Json = nlohmann::json;

namespace {

constexpr int kRequestReadTimeoutMs = 30000;
constexpr int kSendTimeoutSec = 60;

std::string errnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string dumpLine(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

// argv as a JSON list: quoted and escaped, so safe on a log line.
std::string quoteArgs(const std::vector<std::string>& args) {
  return Json(args).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// The log file and its rotated predecessors are created 0640 and kept so: the lines name users,
// commands and paths. Created before spdlog opens it (fopen would apply only the umask), and
// corrected after, should it have existed with a wider mode.
spdlog::file_event_handlers privateLogFile() {
  spdlog::file_event_handlers handlers;
  handlers.before_open = [](const spdlog::filename_t& name) {
    int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd >= 0) {
      ::close(fd);
    }
  };
  handlers.after_open = [](const spdlog::filename_t&, std::FILE* file) {
    struct stat st;
    if (::fstat(::fileno(file), &st) == 0 && (st.st_mode & 0027) != 0) {
      ::fchmod(::fileno(file), st.st_mode & 0640);
    }
  };
  return handlers;
}

// Starts a detached thread, as std::thread does (throwing std::system_error when it cannot).
void startDetached(std::function<void()> fn) { std::thread(std::move(fn)).detach(); }

enum class LineStatus { Ok, Closed, TooLong, TimedOut, Stopping, Error };

// Reads one '\n'-terminated line of at most `limit` bytes. Bytes after the newline are ignored:
// one request per connection.
LineStatus readLine(int fd, int stopFd, size_t limit, std::string& line) {
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kRequestReadTimeoutMs);
  char buf[8192];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      return LineStatus::TimedOut;
    }
    struct pollfd p[2] = {{fd, POLLIN, 0}, {stopFd, POLLIN, 0}};
    int ready = ::poll(p, 2, static_cast<int>(left));
    if (ready < 0) {
      if (errno == EINTR) {
        continue;
      }
      return LineStatus::Error;
    }
    if (p[1].revents != 0) {
      return LineStatus::Stopping;
    }
    if (p[0].revents == 0) {
      continue;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        continue;
      }
      return LineStatus::Error;
    }
    if (n == 0) {
      return LineStatus::Closed;
    }
    size_t before = line.size();
    line.append(buf, static_cast<size_t>(n));
    size_t nl = line.find('\n', before);
    if (nl != std::string::npos) {
      line.resize(nl);
      return line.size() > limit ? LineStatus::TooLong : LineStatus::Ok;
    }
    if (line.size() > limit) {
      return LineStatus::TooLong;
    }
  }
}

// Whether the client of a queued request has hung up (or sent something it should not have).
bool clientHungUp(int fd) {
  struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && p.revents != 0;
}

void reject(int fd, const std::string& message) {
  sendAll(fd, errorFrame(message) + exitFrame(1, false));
}

// The first rule for `command` that `caller` may use; an error (the refusal's reason) when no
// rule names the command or none of those allows the caller.
Result<const Rule*> ruleFor(const RuleSet& rules, const Caller& caller,
                            const std::string& command) {
  bool commandKnown = false;
  for (const auto& r : rules.rules) {
    if (r.commandName() == command || r.command == command) {
      commandKnown = true;
      if (callerAllowed(r, caller)) {
        return &r;
      }
    }
  }
  if (!commandKnown) {
    return Status::error("no rule allows the command \"" + command + "\"");
  }
  return Status::error("user " + caller.user.name + " (uid " + std::to_string(caller.user.uid) +
                       ") is not allowed to run " + command + " by any rule");
}

// What a run allowed by `rule` executes: the caller's cwd mapped and confined to the rule's
// workspace, make's path arguments confined too, the filtered environment, the caller's ids, the
// timeout within the rule's limit. An error is the refusal's reason.
Result<RunSpec> runSpecFor(const Rule& rule, const Caller& caller, const RunRequest& req,
                           int killGraceSec) {
  std::string workspace = expandTemplate(rule.workspace, caller.user);
  char resolved[PATH_MAX];
  if (::realpath(workspace.c_str(), resolved) == nullptr) {
    return Status::error("workspace " + workspace + " of rule " + rule.name + " <- " +
                         std::strerror(errno));
  }
  std::string root = resolved;
  std::string mappedCwd = mapPath(req.cwd, rule.pathMapping, caller.user);
  auto cwd = confine(mappedCwd, "/", root, "cwd");
  if (!cwd.isOk()) {
    return cwd.status();
  }
  std::vector<std::string> args = req.args;
  std::string name = rule.commandName();
  if (name == "make" || name == "gmake") {
    auto checked = confineMakeArgs(req.args, *cwd, root, rule.pathMapping, caller.user);
    if (!checked.isOk()) {
      return checked.status();
    }
    args = std::move(checked).value();
  }

  RunSpec spec;
  spec.command = rule.command;
  spec.argv.push_back(name);
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = filterEnv(req.env, rule.env, caller.user);
  spec.cwd = *cwd;
  spec.workspace = root;
  spec.uid = caller.user.uid;
  spec.gid = caller.user.gid;
  spec.groups = caller.groups;
  spec.timeoutSec =
      req.timeoutSec ? std::min(*req.timeoutSec, rule.maxTimeoutSec) : rule.defaultTimeoutSec;
  spec.killGraceSec = killGraceSec;

  spec.noNewPrivs = rule.noNewPrivs;
  return spec;
}

}  // namespace

Result<mode_t> parseMode(const std::string& text) {
  if (text.empty() || text.size() > 4 || text.find_first_not_of("01234567") != std::string::npos) {
    return Status::error("mode \"" + text + "\": expected 1-4 octal digits such as 0660");
  }
  return static_cast<mode_t>(std::stoul(text, nullptr, 8));
}

Result<BrokerConfig> loadBrokerConfig(const std::string& path, BrokerConfig c) {
  std::ifstream in(path);
  if (!in) {
    return Status::error("read broker config " + path + " <- " + std::strerror(errno));
  }
  std::stringstream buf;
  buf << in.rdbuf();
  Json j = Json::parse(buf.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::error(path + ": expected a JSON object");
  }
  for (const auto& item : j.items()) {
    // Named, not a structured binding: clang 14 (the fuzz build) cannot capture those.
    const std::string& key = item.key();
    const Json& value = item.value();
    auto str = [&](std::string& out) -> Status {
      if (!value.is_string()) {
        return Status::error(path + ": " + key + ": expected a string, got " + value.dump());
      }
      out = value.get<std::string>();
      return Status::ok();
    };
    auto num = [&](size_t& out) -> Status {
      if (!value.is_number_unsigned() || value.get<size_t>() == 0) {
        return Status::error(path + ": " + key + ": expected a positive integer, got " +
                             value.dump());
      }
      out = value.get<size_t>();
      return Status::ok();
    };
    auto count = [&](int& out) -> Status {
      if (!value.is_number_unsigned() || value.get<size_t>() == 0 ||
          value.get<size_t>() > 1000000) {
        return Status::error(path + ": " + key + ": expected an integer from 1 to 1000000, got " +
                             value.dump());
      }
      out = static_cast<int>(value.get<size_t>());
      return Status::ok();
    };
    if (key == "socket") {
      HYPER_RETURN_IF_ERROR(str(c.socketPath));
    } else if (key == "rules") {
      HYPER_RETURN_IF_ERROR(str(c.rulesPath));
    } else if (key == "group") {
      HYPER_RETURN_IF_ERROR(str(c.group));
    } else if (key == "mode") {
      std::string text;
      HYPER_RETURN_IF_ERROR(str(text));
      HYPER_ASSIGN_OR_RETURN(c.mode, parseMode(text));
    } else if (key == "logFile") {
      HYPER_RETURN_IF_ERROR(str(c.logFile));
    } else if (key == "logMaxBytes") {
      HYPER_RETURN_IF_ERROR(num(c.logMaxBytes));
    } else if (key == "logMaxFiles") {
      HYPER_RETURN_IF_ERROR(num(c.logMaxFiles));
    } else if (key == "maxConnections") {
      HYPER_RETURN_IF_ERROR(count(c.limits.maxConnections));
    } else if (key == "maxConnectionsPerUid") {
      HYPER_RETURN_IF_ERROR(count(c.limits.maxConnectionsPerUid));
    } else if (key == "maxQueuedPerUid") {
      HYPER_RETURN_IF_ERROR(count(c.limits.maxQueuedPerUid));
    } else if (key == "queueTimeoutSec") {
      HYPER_RETURN_IF_ERROR(count(c.limits.queueTimeoutSec));
    } else {
      return Status::error(path + ": " + key +
                           ": unknown field; expected socket, rules, group, mode, logFile, "
                           "logMaxBytes, logMaxFiles, maxConnections, maxConnectionsPerUid, "
                           "maxQueuedPerUid or queueTimeoutSec");
    }
  }
  return c;
}

BrokerDaemon::BrokerDaemon(BrokerConfig config, ThreadStarter startThread)
    : config_(std::move(config)),
      startThread_(startThread ? std::move(startThread) : ThreadStarter(startDetached)) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (!config_.logFile.empty()) {
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
          config_.logFile, config_.logMaxBytes, config_.logMaxFiles, false, privateLogFile()));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hyper-broker: log file %s: %s; logging to stderr only\n",
                   config_.logFile.c_str(), e.what());
    }
  }
  log_ = std::make_shared<spdlog::logger>("hyper-broker", sinks.begin(), sinks.end());
  log_->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
  log_->flush_on(spdlog::level::info);
  stopFd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

BrokerDaemon::~BrokerDaemon() {
  if (listenFd_ >= 0) {
    ::close(listenFd_);
  }
  // The parent groups made at start; left in place (EBUSY) while another broker's runs use them.
  for (const auto* dir : {&cgroups_.v2, &cgroups_.v1Pids, &cgroups_.v1Memory}) {
    if (!dir->empty()) {
      ::rmdir(dir->c_str());
    }
  }
  if (stopFd_ >= 0) {
    ::close(stopFd_);
  }
}

Status BrokerDaemon::reload() {
  auto loaded = loadRules(config_.rulesPath);
  std::lock_guard<std::mutex> lock(rulesMu_);
  if (!loaded.isOk()) {
    struct stat st;
    if (!rules_ && ::stat(config_.rulesPath.c_str(), &st) != 0 && errno == ENOENT) {
      rules_ = std::make_shared<RuleSet>();  // no file yet: no rules, every request refused
    }
    rulesError_ = loaded.status().message();
    log_->error("rules not reloaded, {} rule(s) stay in force (hash {}): {}",
                rules_ ? rules_->rules.size() : 0, rules_ ? rules_->hash : "",
                escapeForLog(rulesError_));
    return loaded.status();
  }
  rulesError_.clear();
  auto set = std::make_shared<RuleSet>(std::move(loaded).value());
  std::string names;
  for (const auto& r : set->rules) {
    slots_.forRule(r.name, r.concurrency);
    names += (names.empty() ? "" : ",") + r.name;
  }
  log_->info("rules loaded from {}: {} rule(s) [{}] hash {}", config_.rulesPath, set->rules.size(),
             names, set->hash);
  rules_ = std::move(set);
  return Status::ok();
}

Json BrokerDaemon::rulesReport() const {
  std::lock_guard<std::mutex> lock(rulesMu_);
  Json j = {{"type", "rules"}, {"rulesFile", config_.rulesPath}};
  j["hash"] = rules_ ? rules_->hash : "";
  j["rules"] = rules_ ? rulesToJson(rules_->rules)["rules"] : Json::array();
  if (!rulesError_.empty()) {
    j["error"] = rulesError_;
  }
  return j;
}

Status BrokerDaemon::bindSocket() {
  const std::string& path = config_.socketPath;
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return Status::error("socket path " + path + " is longer than " +
                         std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::error(path + " exists and is not a socket; not replacing it");
    }
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live =
        probe >= 0 && ::connect(probe, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) == 0;
    if (probe >= 0) {
      ::close(probe);
    }
    if (live) {
      return Status::error("another broker is listening on " + path);
    }
    ::unlink(path.c_str());
  }
  gid_t gid = 0;
  if (!config_.group.empty()) {
    auto g = groupId(config_.group);
    if (!g) {
      return Status::error("socket group \"" + config_.group + "\" does not exist");
    }
    gid = *g;
  }
  listenFd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listenFd_ < 0) {
    return Status::error(errnoText("socket"));
  }
  // Nobody may connect between bind and chmod: the socket starts as 0600.
  mode_t old = ::umask(0177);
  int rc = ::bind(listenFd_, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr);
  int bindErr = errno;
  ::umask(old);
  if (rc != 0) {
    errno = bindErr;
    return Status::error(errnoText("bind " + path));
  }
  if (::chown(path.c_str(), 0, gid) != 0) {
    return Status::error(errnoText("chown " + path));
  }
  if (::chmod(path.c_str(), config_.mode) != 0) {
    return Status::error(errnoText("chmod " + path));
  }
  if (::listen(listenFd_, 128) != 0) {
    return Status::error(errnoText("listen " + path));
  }
  return Status::ok();
}

Status BrokerDaemon::start() {
  if (stopFd_ < 0) {
    return Status::error(errnoText("eventfd"));
  }
  Status loaded = reload();
  if (!loaded.isOk()) {
    std::lock_guard<std::mutex> lock(rulesMu_);
    if (!rules_) {
      return loaded.withContext("start broker");
    }
    log_->warn("no rules yet: every request is refused until {} is written", config_.rulesPath);
  }
  HYPER_RETURN_IF_ERROR(bindSocket().withContext("start broker"));
  std::ifstream mounts("/proc/self/mounts");
  std::stringstream mountsText;
  mountsText << mounts.rdbuf();
  std::ifstream self("/proc/self/cgroup");
  std::stringstream selfText;
  selfText << self.rdbuf();
  cgroups_ = detectCgroups(mountsText.str(), selfText.str(), config_.cgroupParent);
  if (!cgroups_.v2.empty()) {
    log_->info("cgroups: runs with pidsMax or memoryMaxBytes get their own group under {}",
               cgroups_.v2);
  } else if (cgroups_.missing.empty()) {
    log_->info("cgroups: runs with pidsMax or memoryMaxBytes get their own groups under {} and {}",
               cgroups_.v1Pids, cgroups_.v1Memory);
  } else {
    log_->warn("cgroups: cannot apply {} of the rules ({}); such runs go without",
               !cgroups_.pids() && !cgroups_.memory() ? "pidsMax or memoryMaxBytes"
               : !cgroups_.pids()                     ? "pidsMax"
                                                      : "memoryMaxBytes",
               cgroups_.missing);
  }
  log_->info("limits: {} connections, {} per uid, {} queued requests per uid, {} s in a queue",
             config_.limits.maxConnections, config_.limits.maxConnectionsPerUid,
             config_.limits.maxQueuedPerUid, config_.limits.queueTimeoutSec);
  log_->info("listening on {} (group {}, mode {:04o})", config_.socketPath,
             config_.group.empty() ? "root" : config_.group, config_.mode);
  return Status::ok();
}

void BrokerDaemon::stop() {
  stopping_ = true;
  uint64_t one = 1;
  ssize_t ignored = ::write(stopFd_, &one, sizeof one);
  (void)ignored;
}

void BrokerDaemon::run() {
  while (!stopping_) {
    struct pollfd p[2] = {{listenFd_, POLLIN, 0}, {stopFd_, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      log_->error("poll: {}", std::strerror(errno));
      break;
    }
    if (p[1].revents != 0) {
      break;
    }
    if (p[0].revents == 0) {
      continue;
    }
    int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        log_->error("accept: {}", std::strerror(errno));
        // EMFILE and the like: back off instead of spinning on a listener that stays readable.
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      continue;
    }
    accepted(fd);
  }
  ::close(listenFd_);
  listenFd_ = -1;
  ::unlink(config_.socketPath.c_str());
  std::unique_lock<std::mutex> lock(connMu_);
  if (connections_ > 0) {
    log_->info("stopping: cutting short {} connection(s)", connections_);
  }
  connCv_.wait(lock, [this] { return connections_ == 0; });
  log_->info("stopped");
}

// Admits a new connection under the limits and gives it a thread; whatever happens, `fd` is
// answered and closed, and the counts are given back.
void BrokerDaemon::accepted(int fd) {
  struct ucred cred = {};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    log_->warn("refused a connection: getsockopt SO_PEERCRED: {}", std::strerror(errno));
    ::close(fd);
    return;
  }
  const uid_t uid = cred.uid;
  const CallerLimits& limits = config_.limits;
  {
    std::lock_guard<std::mutex> lock(connMu_);
    if (connections_ >= limits.maxConnections) {
      log_->warn("refused a connection of uid={} pid={}: {} connections open (the limit)", uid,
                 cred.pid, connections_);
      reject(fd, "the broker is serving " + std::to_string(limits.maxConnections) +
                     " connections (its limit); try again later");
      ::close(fd);
      return;
    }
    if (!connectionsPerUid_.tryAdd(uid, limits.maxConnectionsPerUid)) {
      log_->warn(
          "refused a connection of uid={} pid={}: the uid has {} connections open (the "
          "limit per uid)",
          uid, cred.pid, limits.maxConnectionsPerUid);
      reject(fd, "uid " + std::to_string(uid) + " already has " +
                     std::to_string(limits.maxConnectionsPerUid) +
                     " connections to the broker (the limit per uid); try again later");
      ::close(fd);
      return;
    }
    ++connections_;
  }
  auto done = [this, fd, uid] {
    ::close(fd);
    connectionsPerUid_.remove(uid);
    std::lock_guard<std::mutex> lock(connMu_);
    --connections_;
    connCv_.notify_all();
  };
  try {
    startThread_([this, fd, done] {
      serve(fd);
      done();
    });
  } catch (const std::exception& e) {
    // std::system_error when out of threads (RLIMIT_NPROC, memory), std::bad_alloc when out of
    // memory: this caller is told, the daemon goes on.
    log_->error("refused a connection of uid={} pid={}: cannot start a thread: {}", uid, cred.pid,
                e.what());
    reject(fd, std::string("the broker cannot serve the request now <- start a thread: ") +
                   e.what() + "; try again later");
    done();
  }
}

void BrokerDaemon::serve(int fd) {
  struct timeval sendTimeout = {kSendTimeoutSec, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, sizeof sendTimeout);
  auto caller = identifyPeer(fd);
  if (!caller.isOk()) {
    log_->warn("refused a connection: {}", caller.status().message());
    reject(fd, "cannot identify the caller <- " + caller.status().message());
    return;
  }
  std::string line;
  switch (readLine(fd, stopFd_, kMaxRequestLine, line)) {
    case LineStatus::Ok:
      break;
    case LineStatus::TooLong:
      log_->warn("refused user={} uid={}: request line longer than {} bytes", caller->user.name,
                 caller->user.uid, kMaxRequestLine);
      reject(fd, "request line longer than " + std::to_string(kMaxRequestLine) + " bytes");
      return;
    case LineStatus::TimedOut:
      reject(fd, "no complete request line within " + std::to_string(kRequestReadTimeoutMs / 1000) +
                     " s");
      return;
    case LineStatus::Closed:
      if (!line.empty()) {
        reject(fd, "request line not terminated by a newline");
      }
      return;
    case LineStatus::Stopping:
      reject(fd, "the broker is stopping");
      return;
    case LineStatus::Error:
      return;
  }
  auto request = parseRequest(line);
  if (!request.isOk()) {
    log_->warn("refused user={} uid={}: {}", caller->user.name, caller->user.uid,
               escapeForLog(request.status().message()));
    reject(fd, request.status().message());
    return;
  }
  if (request->admin) {
    if (caller->user.uid != 0) {
      log_->warn("refused user={} uid={}: admin request from a non-root caller", caller->user.name,
                 caller->user.uid);
      reject(fd, "admin requests are accepted from root only");
      return;
    }
    if (request->admin->action == "reload") {
      Status reloaded = reload();
      if (!reloaded.isOk()) {
        reject(fd, "reload <- " + reloaded.message());
        return;
      }
    }
    sendAll(fd, dumpLine(rulesReport()) + exitFrame(0, false));
    return;
  }
  handleRun(fd, *caller, *request->run);
}

void BrokerDaemon::handleRun(int fd, const Caller& caller, const RunRequest& req) {
  const uint64_t serial = ++serial_;
  const std::string id = req.requestId.empty() ? "#" + std::to_string(serial) : req.requestId;
  const std::string who = "id=" + escapeForLog(id) + " user=" + escapeForLog(caller.user.name) +
                          " uid=" + std::to_string(caller.user.uid) +
                          " pid=" + std::to_string(caller.pid);
  auto refuse = [&](const std::string& why) {
    log_->warn("refused {} command={} cwd={} args={}: {}", who, escapeForLog(req.command),
               escapeForLog(req.cwd), quoteArgs(req.args), escapeForLog(why));
    reject(fd, why);
  };

  std::shared_ptr<const RuleSet> rules;
  {
    std::lock_guard<std::mutex> lock(rulesMu_);
    rules = rules_;
  }
  auto allowed = ruleFor(*rules, caller, req.command);
  if (!allowed.isOk()) {
    refuse(allowed.status().message());
    return;
  }
  const Rule* rule = *allowed;

  auto built = runSpecFor(*rule, caller, req, config_.killGraceSec);
  if (!built.isOk()) {
    refuse(built.status().message());
    return;
  }
  RunSpec spec = std::move(built).value();

  auto slots = slots_.forRule(rule->name, rule->concurrency);
  const CallerLimits& limits = config_.limits;
  bool queued = false;
  auto wait = slots->acquire(
      std::chrono::steady_clock::now() + std::chrono::seconds(limits.queueTimeoutSec),
      [&] { return stopping_.load() || clientHungUp(fd); },
      [&] {
        if (!queuedPerUid_.tryAdd(caller.user.uid, limits.maxQueuedPerUid)) {
          return false;
        }
        queued = true;
        log_->info("queued {} rule={}: {} run(s) at the limit of {}", who, rule->name,
                   slots->running(), rule->concurrency);
        sendAll(fd, queuedFrame(rule->name));
        return true;
      });
  if (queued) {
    queuedPerUid_.remove(caller.user.uid);
  }
  switch (wait) {
    case SlotWait::Acquired:
      break;
    case SlotWait::Refused:
      refuse("uid " + std::to_string(caller.user.uid) + " already has " +
             std::to_string(limits.maxQueuedPerUid) +
             " requests waiting for a slot (the limit per uid); try again later");
      return;
    case SlotWait::TimedOut:
      refuse("waited " + std::to_string(limits.queueTimeoutSec) + " s for a slot of rule " +
             rule->name + " (" + std::to_string(rule->concurrency) +
             " run(s) at once) without getting one; try again later");
      return;
    case SlotWait::Abandoned:
      log_->warn("dropped {} rule={}: {} while queued", who, rule->name,
                 stopping_ ? "the broker is stopping" : "the client hung up");
      if (stopping_) {
        reject(fd, "the broker is stopping");
      }
      return;
  }
  std::unique_ptr<RunCgroup> cgroup;
  if (rule->pidsMax > 0 || rule->memoryMaxBytes > 0) {
    auto made = RunCgroup::create(
        cgroups_, "run-" + std::to_string(::getpid()) + "-" + std::to_string(serial), rule->pidsMax,
        rule->memoryMaxBytes);
    if (!made.isOk()) {
      slots->release();
      refuse(made.status().message());
      return;
    }
    cgroup = std::move(made).value();
    spec.cgroupProcsFds = cgroup->procsFds();
  }
  log_->info("start {} rule={} cwd={} args={} timeout={}s{}", who, rule->name,
             escapeForLog(spec.cwd), quoteArgs(spec.argv), spec.timeoutSec,
             queued ? " (was queued)" : "");
  auto started = std::chrono::steady_clock::now();
  auto outcome = runStreaming(spec, fd, stopFd_);
  cgroup.reset();  // kills what the run left in its group (setsid strays too) and removes it
  slots->release();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!outcome.isOk()) {
    log_->error("end {} rule={} cwd={} args={} exit=1 duration={:.3f}s: {}", who, rule->name,
                escapeForLog(spec.cwd), quoteArgs(spec.argv), seconds,
                escapeForLog(outcome.status().message()));
    reject(fd, outcome.status().message());
    return;
  }
  std::string note = outcome->timedOut     ? " timed out"
                     : outcome->clientGone ? " (client hung up; process group killed)"
                     : outcome->stopped    ? " (broker stopping; process group killed)"
                                           : "";
  if (outcome->escalated) {
    note += " (SIGKILL after the grace period)";
  }
  auto level = outcome->exitCode == 0 ? spdlog::level::info : spdlog::level::err;
  log_->log(level, "end {} rule={} cwd={} args={} exit={} timedOut={} duration={:.3f}s{}", who,
            rule->name, escapeForLog(spec.cwd), quoteArgs(spec.argv), outcome->exitCode,
            outcome->timedOut, seconds, note);
  if (!outcome->clientGone) {
    sendAll(fd, exitFrame(outcome->exitCode, outcome->timedOut));
  }
}

}  // namespace hyper::broker
