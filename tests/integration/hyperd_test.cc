// End-to-end tests of the real hyperd binary (HYPERD_PATH). Each test makes a network namespace and
// a temp directory of its own; hyperd, the alert receiver and every command (curl, ip, nft,
// hyperctl) run inside the namespace through `ip netns exec`, so the test thread never changes
// namespace and nothing here touches the machine's own interfaces or firewall. The API listens on
// the namespace's own loopback, which is why it is reached with `ip netns exec NS curl`.
//
// Sources are real: a bare git repository and a working clone driven by the git command line, or a
// directory watched with inotify. Every wait for something to happen polls with a deadline; the
// one fixed sleep is a grace period in which something must *not* happen (a refused webhook).

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "base/base64.h"
#include "host/command.h"
#include "reconciler/inventory.h"
#include "reconciler/object.h"
#include "tests/integration/git_util.h"
#include "tests/integration/guest_util.h"
#include "tests/integration/hyperctl_util.h"
#include "tests/integration/netns_util.h"
#include "tools/pageshot/cdp.h"

namespace hyper {
namespace {

namespace fs = std::filesystem;
using test::CommandRun;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kPollEvery{50};
constexpr milliseconds kConverge{8000};  // push or write to applied, on 2 shared cores

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status writeFile(const std::string& path, const std::string& content, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return Status::error("open " + path + ": " + std::strerror(errno));
  }
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ok = ::fchmod(fd, mode) == 0 && ok;
  ::close(fd);
  return ok ? Status::ok() : Status::error("write " + path + " failed");
}

// A Network manifest. Line 6 is the cidr, line 7 the mtu.
std::string network(const std::string& name, const std::string& cidr, int mtu,
                    const std::string& extraSpec = "") {
  std::string m = "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n";
  m += "  name: " + name + "\n";
  m += "spec:\n";
  m += "  cidr: " + cidr + "\n";
  m += "  mtu: " + std::to_string(mtu) + "\n";
  return m + extraSpec;
}

std::string docs(const std::vector<std::string>& documents) {
  std::string out;
  for (const auto& d : documents) {
    out += (out.empty() ? "" : "---\n") + d;
  }
  return out;
}

// 1-based line of the first occurrence of `needle` in `text`.
int lineOf(const std::string& text, const std::string& needle) {
  size_t at = text.find(needle);
  return at == std::string::npos
             ? 0
             : 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
}

// Polls `done` every kPollEvery until it is true or `timeout` passes; true when it became true.
bool eventually(milliseconds timeout, const std::function<bool()>& done) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    if (done()) {
      return true;
    }
    if (Clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(kPollEvery);
  }
}

// HMAC-SHA256 of a file's bytes, hex, computed by openssl (not by hyper's own code).
std::string opensslHmac(const std::string& key, const std::string& file) {
  auto r = host::runChecked({"openssl", "dgst", "-sha256", "-hmac", key, "-r", file});
  EXPECT_TRUE(r.isOk()) << r.status().message();
  if (!r.isOk()) {
    return "";
  }
  // "-r": "<hex> *<file>".
  return r->substr(0, r->find(' '));
}

// A process started by the test (hyperd through `ip netns exec`, which execs it in place, so the
// pid is hyperd's own) with stdin from /dev/null and stdout and stderr appended to a log file.
// Killed with SIGKILL and reaped on destruction if it still runs; PR_SET_PDEATHSIG (kept across
// exec) kills it too when the test binary itself dies, so no hyperd outlives a crashed test.
class ChildProcess {
 public:
  static Result<std::unique_ptr<ChildProcess>> start(const std::vector<std::string>& argv,
                                                     const std::string& logPath) {
    std::vector<char*> args;
    for (const auto& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    int log = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log < 0 || null < 0) {
      return Status::error("open " + logPath + " or /dev/null: " + std::strerror(errno));
    }
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      // Only async-signal-safe calls until exec.
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent || ::dup2(null, 0) < 0 ||
          ::dup2(log, 1) < 0 || ::dup2(log, 2) < 0) {
        ::_exit(127);
      }
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    int forkErrno = errno;
    ::close(log);
    ::close(null);
    if (pid < 0) {
      return Status::error("fork for " + argv[0] + ": " + std::strerror(forkErrno));
    }
    return std::unique_ptr<ChildProcess>(new ChildProcess(pid));
  }

  ~ChildProcess() {
    if (!exit_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running() {
    poll();
    return !exit_;
  }
  void signal(int sig) const { ::kill(pid_, sig); }
  // The exit code (128+N when killed by signal N), or nullopt if it still runs after `timeout`.
  std::optional<int> waitExit(milliseconds timeout) {
    eventually(timeout, [&] { return !running(); });
    return exit_;
  }

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  void poll() {
    int status = 0;
    if (!exit_ && ::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
  }
  pid_t pid_;
  std::optional<int> exit_;
};

struct HttpReply {
  int status = 0;  // 0: curl could not ask (the reason is in body)
  std::string body;
};

class HyperdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (network namespaces)";
    }
    auto ns = test::NamedNetns::create(test::uniqueNetnsName("hyd"));
    ASSERT_TRUE(ns.isOk()) << ns.status().message();
    ns_ = std::move(*ns);
    ASSERT_TRUE(inNs({"ip", "link", "set", "lo", "up"}).isOk());
    auto tmp = test::TempDir::create("hyperd-test");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    stateDir_ = tmp_->path() + "/state";
    logPath_ = tmp_->path() + "/hyperd.log";
    cli_ = std::make_unique<test::Hyperctl>(ns_->name(), stateDir_);
  }

  void TearDown() override {
    // Children first: the namespace and the directory they use go after them. A VM's QEMU is
    // daemonized, so it outlives hyperd: killed here by its pidfile, whatever the test did.
    hyperd_.reset();
    receiver_.reset();
    if (tmp_) {
      test::killQemusUnder(tmp_->path() + "/run");
    }
    if (HasFailure() && tmp_) {
      std::printf("---- hyperd log (%s) ----\n%s---- end of hyperd log ----\n", logPath_.c_str(),
                  readFile(logPath_).c_str());
      if (fs::exists(tmp_->path() + "/receiver.log")) {
        std::printf("---- receiver log ----\n%s\n",
                    readFile(tmp_->path() + "/receiver.log").c_str());
      }
    }
  }

  Result<std::string> inNs(const std::vector<std::string>& argv) const { return ns_->run(argv); }

  // NAME=VALUE pairs the next startHyperd gives hyperd's environment.
  std::vector<std::string> hyperdEnv_;

  // Starts hyperd in the namespace and waits until it serves. `args` are hyperd's own; with no
  // --config, the state dir and a free loopback port are added.
  Status startHyperd(std::vector<std::string> args) {
    hyperd_.reset();
    bool config = std::find(args.begin(), args.end(), "--config") != args.end();
    if (!config) {
      args.insert(args.end(), {"--state-dir", stateDir_, "--listen", "127.0.0.1:0"});
    }
    std::vector<std::string> argv = {"ip", "netns", "exec", ns_->name(), "env"};
    argv.insert(argv.end(), hyperdEnv_.begin(), hyperdEnv_.end());
    argv.push_back(HYPERD_PATH);
    argv.insert(argv.end(), args.begin(), args.end());
    size_t logStart = readFile(logPath_).size();
    auto child = ChildProcess::start(argv, logPath_);
    HYPER_RETURN_IF_ERROR(child.status());
    hyperd_ = std::move(*child);
    static const std::regex kListening("hyperd: listening on (http://127\\.0\\.0\\.1:[0-9]+)");
    std::smatch m;
    bool up = eventually(milliseconds(10000), [&] {
      std::string log = readFile(logPath_).substr(logStart);
      return std::regex_search(log, m, kListening) || !hyperd_->running();
    });
    std::string log = readFile(logPath_).substr(logStart);
    if (!up || !std::regex_search(log, m, kListening)) {
      return Status::error("hyperd did not start serving (" +
                           std::string(hyperd_->running() ? "still running" : "exited") + ")");
    }
    url_ = m[1];
    token_ = trimmed(readFile(stateDir_ + "/hyperd.token"));
    if (token_.empty()) {
      return Status::error("no token in " + stateDir_ + "/hyperd.token");
    }
    return Status::ok();
  }

  // One request to hyperd's API from inside the namespace. `bodyFile` is sent as the body as is.
  HttpReply http(const std::string& method, const std::string& path,
                 const std::vector<std::string>& headers = {}, const std::string& bodyFile = "",
                 bool withToken = true) const {
    std::vector<std::string> argv = {"ip",  "netns", "exec", ns_->name(),     "curl",
                                     "-sS", "-X",    method, "--max-time",    "20",
                                     "-o",  "-",     "-w",   "\n%{http_code}"};
    for (const auto& h : headers) {
      argv.insert(argv.end(), {"-H", h});
    }
    if (withToken) {
      argv.insert(argv.end(), {"-H", "Authorization: Bearer " + token_});
    }
    if (!bodyFile.empty()) {
      argv.insert(argv.end(), {"--data-binary", "@" + bodyFile});
    } else if (method == "POST") {
      // An empty body with its Content-Length, as hyperctl sends it: cpp-httplib answers 400 to
      // a POST that has neither Content-Length nor chunked encoding.
      argv.insert(argv.end(), {"--data-binary", ""});
    }
    argv.push_back(url_ + path);
    HttpReply reply;
    auto r = host::runCommand(argv);
    if (!r.isOk() || r->exitCode != 0) {
      reply.body = r.isOk() ? r->err : r.status().message();
      return reply;
    }
    size_t nl = r->out.rfind('\n');
    reply.status = std::atoi(r->out.c_str() + nl + 1);
    reply.body = r->out.substr(0, nl);
    return reply;
  }

  // GET with the token; the parsed JSON body, or null (with a failure recorded) on any error.
  Json api(const std::string& path) const {
    HttpReply r = http("GET", path);
    EXPECT_EQ(r.status, 200) << "GET " << path << ": " << r.body;
    Json j = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << "GET " << path << ": " << r.body;
    return j.is_discarded() || r.status != 200 ? Json() : j;
  }
  Json status() const { return api("/v1/status"); }
  Json events() const { return api("/v1/events?limit=10000"); }

  std::vector<Json> eventsOf(const std::string& type, const std::string& object = "") const {
    std::vector<Json> out;
    Json all = events();
    for (const auto& e : all.is_array() ? all : Json::array()) {
      if (e.value("type", "") == type && (object.empty() || e.value("object", "") == object)) {
        out.push_back(e);
      }
    }
    return out;
  }

  int64_t lastEventId() const {
    int64_t id = 0;
    Json all = events();
    for (const auto& e : all.is_array() ? all : Json::array()) {
      id = std::max<int64_t>(id, e.value("id", int64_t{0}));
    }
    return id;
  }

  // True when `revision` is in force and the reconcile that brought it in has finished with no
  // failed action. status.revision alone moves when a revision is loaded, before it is applied.
  bool convergedTo(const std::string& revision) const {
    Json s = status();
    if (!s.is_object() || s.value("revision", "") != revision || !s["lastReconcile"].is_object()) {
      return false;
    }
    const Json& last = s["lastReconcile"];
    return last.value("revision", "") == revision && last.value("failed", 1) == 0;
  }

  // The revision once one is in force and applied (directory sources name it after the content).
  std::string waitConvergedAny() const {
    std::string revision;
    eventually(kConverge, [&] {
      Json s = status();
      revision = s.is_object() ? s.value("revision", "") : "";
      return !revision.empty() && convergedTo(revision);
    });
    return revision;
  }

  // The interface `name` from `ip -j link show`, or nullopt when there is none.
  std::optional<Json> link(const std::string& name) const {
    auto out = inNs({"ip", "-j", "link", "show"});
    EXPECT_TRUE(out.isOk()) << out.status().message();
    Json all = out.isOk() ? Json::parse(*out, nullptr, false) : Json::array();
    for (const auto& l : all.is_array() ? all : Json::array()) {
      if (l.value("ifname", "") == name) {
        return l;
      }
    }
    return std::nullopt;
  }
  int mtu(const std::string& name) const {
    auto l = link(name);
    return l ? l->value("mtu", -1) : -1;
  }

  // Every bridge in the namespace: name -> ifalias.
  std::map<std::string, std::string> bridges() const {
    std::map<std::string, std::string> out;
    auto text = inNs({"ip", "-j", "link", "show", "type", "bridge"});
    EXPECT_TRUE(text.isOk()) << text.status().message();
    Json all = text.isOk() ? Json::parse(*text, nullptr, false) : Json::array();
    for (const auto& l : all.is_array() ? all : Json::array()) {
      out[l.value("ifname", "")] = l.value("ifalias", "");
    }
    return out;
  }

  CommandRun hyperctl(const std::vector<std::string>& args) const { return cli_->run(args); }

  // ---- git ----

  std::string git(const std::vector<std::string>& args) const { return test::runGit(args); }

  // A bare repository (the "remote" hyperd follows) and a working clone that pushes to it.
  void initRepo() {
    bare_ = tmp_->path() + "/remote.git";
    work_ = tmp_->path() + "/work";
    git({"init", "--quiet", "--bare", "-b", "main", bare_});
    git({"clone", "--quiet", bare_, work_});
  }

  // Writes the files into the clone, commits everything and returns the commit id.
  std::string commit(const std::map<std::string, std::string>& files, const std::string& message) {
    for (const auto& [path, content] : files) {
      Status s = tmp_->write("work/" + path, content);
      EXPECT_TRUE(s.isOk()) << s.message();
    }
    git({"-C", work_, "add", "-A"});
    git({"-C", work_, "commit", "--quiet", "-m", message});
    return git({"-C", work_, "rev-parse", "HEAD"});
  }

  void push(const std::string& refspec = "HEAD:refs/heads/main") {
    git({"-C", work_, "push", "--quiet", "--force", "origin", refspec});
  }

  // ---- the alert receiver ----

  // A tiny HTTP server in the namespace that stores each POST as NNN.body (the exact bytes) and
  // NNN.json (path and headers, written last, so its presence means the delivery is complete).
  // Returns the port it listens on, or 0.
  int startReceiver() {
    receiverDir_ = tmp_->path() + "/received";
    fs::create_directories(receiverDir_);
    static const char* kScript = R"(
import http.server, json, os, sys
out = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
        n = len([f for f in os.listdir(out) if f.endswith('.json')])
        with open(os.path.join(out, '%03d.body' % n), 'wb') as f:
            f.write(body)
        with open(os.path.join(out, '%03d.tmp' % n), 'w') as f:
            json.dump({'path': self.path, 'headers': dict(self.headers.items())}, f)
        os.rename(os.path.join(out, '%03d.tmp' % n), os.path.join(out, '%03d.json' % n))
        self.send_response(200)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(('127.0.0.1', 0), Handler)
with open(os.path.join(out, 'port.tmp'), 'w') as f:
    f.write(str(server.server_port))
os.rename(os.path.join(out, 'port.tmp'), os.path.join(out, 'port'))
server.serve_forever()
)";
    // The system's interpreter, not a version manager's shim that might fork: the pid must be the
    // server's, to be killed.
    const std::string python = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
    auto child = ChildProcess::start(
        {"ip", "netns", "exec", ns_->name(), python, "-c", kScript, receiverDir_},
        tmp_->path() + "/receiver.log");
    EXPECT_TRUE(child.isOk()) << child.status().message();
    if (!child.isOk()) {
      return 0;
    }
    receiver_ = std::move(*child);
    int port = 0;
    eventually(milliseconds(5000), [&] {
      port = std::atoi(readFile(receiverDir_ + "/port").c_str());
      return port > 0 || !receiver_->running();
    });
    return port;
  }

  struct Delivery {
    std::string bodyFile;
    Json body;
    std::map<std::string, std::string> headers;  // names lower-cased
  };

  std::vector<Delivery> deliveries() const {
    std::vector<Delivery> out;
    for (int n = 0;; ++n) {
      char base[16];
      std::snprintf(base, sizeof base, "/%03d", n);
      std::string meta = receiverDir_ + base + ".json";
      if (!fs::exists(meta)) {
        break;
      }
      Delivery d;
      d.bodyFile = receiverDir_ + base + ".body";
      d.body = Json::parse(readFile(d.bodyFile), nullptr, false);
      Json m = Json::parse(readFile(meta), nullptr, false);
      Json headers = m.value("headers", Json::object());
      for (const auto& [k, v] : headers.items()) {
        std::string key = k;
        std::transform(key.begin(), key.end(), key.begin(), ::tolower);
        d.headers[key] = v.is_string() ? v.get<std::string>() : v.dump();
      }
      out.push_back(std::move(d));
    }
    return out;
  }

  std::optional<Delivery> deliveryFor(const std::string& kind, const std::string& object) const {
    for (auto& d : deliveries()) {
      if (d.body.is_object() && d.body.value("kind", "") == kind &&
          d.body.value("object", "") == object) {
        return d;
      }
    }
    return std::nullopt;
  }

  std::unique_ptr<test::NamedNetns> ns_;
  std::unique_ptr<test::TempDir> tmp_;
  std::string stateDir_;
  std::string logPath_;
  std::unique_ptr<test::Hyperctl> cli_;
  std::unique_ptr<ChildProcess> hyperd_;
  std::unique_ptr<ChildProcess> receiver_;
  std::string receiverDir_;
  std::string url_;
  std::string token_;
  std::string bare_, work_;
};

// The value of one sample in Prometheus text, or -1 when absent.
double metric(const std::string& text, const std::string& sample) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(sample + " ", 0) == 0) {
      return std::atof(line.c_str() + sample.size() + 1);
    }
  }
  return -1;
}

TEST_F(HyperdTest, GitPushesConvergeAndABadRevisionKeepsTheLastGoodOne) {
  initRepo();
  // hyperd starts before anything is pushed: it reports the missing branch and is not ready.
  ASSERT_TRUE(
      startHyperd({"--source", "file://" + bare_, "--interval", "1s", "--drift-interval", "60s"})
          .isOk());
  ASSERT_TRUE(eventually(kConverge, [&] { return status().value("sourceError", "") != ""; }))
      << status().dump(1);
  Json s = status();
  EXPECT_EQ(s["revision"], "") << s.dump(1);
  EXPECT_FALSE(s["ready"].get<bool>()) << s.dump(1);
  EXPECT_TRUE(contains(s.value("sourceError", ""), "no branch or tag \"main\"")) << s.dump(1);
  EXPECT_EQ(http("GET", "/readyz", {}, "", false).status, 503);

  const std::string alpha = network("alpha", "10.91.1.0/24", 1400);
  const std::string beta = network("beta", "10.91.2.0/24", 1500);
  std::string c1 = commit({{"nets.yaml", docs({alpha, beta})}}, "two networks");
  push();
  ASSERT_TRUE(eventually(kConverge, [&] { return convergedTo("git:" + c1); })) << status().dump(1);
  EXPECT_EQ(mtu("hb-alpha"), 1400);
  EXPECT_EQ(mtu("hb-beta"), 1500);
  s = status();
  EXPECT_EQ(s["commit"], c1);
  EXPECT_EQ(s["message"], "two networks");
  EXPECT_EQ(s["sourceError"], "") << s.dump(1);
  EXPECT_EQ(http("GET", "/readyz", {}, "", false).status, 200);

  // One changed field: one action.
  std::string alpha1300 = network("alpha", "10.91.1.0/24", 1300);
  std::string c2 = commit({{"nets.yaml", docs({alpha1300, beta})}}, "alpha mtu 1300");
  push();
  ASSERT_TRUE(eventually(kConverge, [&] { return convergedTo("git:" + c2); })) << status().dump(1);
  EXPECT_EQ(mtu("hb-alpha"), 1300);
  std::vector<Json> applied;
  for (const auto& e : eventsOf("reconciled")) {
    if (e["revision"] == "git:" + c2 && e["details"].value("sourceChanged", false)) {
      applied.push_back(e);
    }
  }
  ASSERT_EQ(applied.size(), 1u) << events().dump(1);
  EXPECT_EQ(applied[0]["details"]["planned"], 1) << applied[0].dump(1);
  EXPECT_EQ(applied[0]["details"]["succeeded"], 1) << applied[0].dump(1);

  // An invalid manifest: the revision is rejected whole, the previous one stays applied.
  std::string badBeta = network("beta", "10.91.2.0/33", 1500);
  std::string badFile = docs({network("alpha", "10.91.1.0/24", 1200), badBeta});
  int badLine = lineOf(badFile, "10.91.2.0/33");
  std::string c3 = commit({{"nets.yaml", badFile}}, "a bad cidr");
  push();
  ASSERT_TRUE(eventually(kConverge, [&] { return status()["rejectedRevision"] == "git:" + c3; }))
      << status().dump(1);
  s = status();
  EXPECT_EQ(s["revision"], "git:" + c2) << s.dump(1);
  EXPECT_EQ(mtu("hb-alpha"), 1300) << "the valid document of a rejected revision was applied";
  EXPECT_TRUE(link("hb-beta").has_value());
  // Reported once, with the file and line; another fetch of the same commit says nothing new.
  HttpReply again = http("POST", "/v1/reconcile?wait=10");
  EXPECT_EQ(again.status, 200) << again.body;
  std::vector<Json> rejected = eventsOf("revision-rejected");
  ASSERT_EQ(rejected.size(), 1u) << events().dump(1);
  EXPECT_EQ(rejected[0]["revision"], "git:" + c3);
  std::string problems = rejected[0]["details"]["problems"].dump();
  EXPECT_TRUE(contains(problems, "nets.yaml:" + std::to_string(badLine) + ":")) << problems;
  EXPECT_TRUE(contains(problems, "10.91.2.0/33")) << problems;
  EXPECT_EQ(status()["revision"], "git:" + c2);

  // A force-push back to the first commit is followed like any other move.
  push(c1 + ":refs/heads/main");
  ASSERT_TRUE(eventually(kConverge, [&] { return convergedTo("git:" + c1); })) << status().dump(1);
  EXPECT_EQ(mtu("hb-alpha"), 1400);
  EXPECT_EQ(mtu("hb-beta"), 1500);
  s = status();
  EXPECT_EQ(s["rejectedRevision"], "") << s.dump(1);
  EXPECT_EQ(s["commit"], c1);
  Json objects = api("/v1/objects");
  for (const auto& o : objects) {
    if (o["name"] == "alpha") {
      EXPECT_EQ(o["revision"], "git:" + c1) << o.dump(1);
    }
  }
}

TEST_F(HyperdTest, APushDeletingEveryManifestIsHeldUntilApproved) {
  initRepo();
  std::string c1 = commit({{"nets.yaml", docs({network("keep1", "10.93.1.0/24", 1400),
                                               network("keep2", "10.93.2.0/24", 1400)})}},
                          "two networks");
  push();
  ASSERT_TRUE(
      startHyperd({"--source", "file://" + bare_, "--interval", "1s", "--drift-interval", "60s"})
          .isOk());
  ASSERT_TRUE(eventually(kConverge, [&] { return convergedTo("git:" + c1); })) << status().dump(1);
  ASSERT_EQ(mtu("hb-keep1"), 1400);

  fs::remove(work_ + "/nets.yaml");
  std::string c2 = commit({}, "remove everything");
  push();
  ASSERT_TRUE(eventually(kConverge, [&] {
    Json s = status();
    return s.is_object() && s["held"].is_object() && s["held"].value("revision", "") == "git:" + c2;
  })) << status().dump(1);
  Json s = status();
  EXPECT_EQ(s["revision"], "git:" + c1) << s.dump(1);
  EXPECT_EQ(s["held"]["counts"]["deleted"], 2) << s.dump(1);
  EXPECT_EQ(s["conditions"][0]["type"], "Held") << s.dump(1);
  EXPECT_EQ(s["conditions"][0]["status"], "True") << s.dump(1);
  EXPECT_EQ(mtu("hb-keep1"), 1400);  // nothing deleted
  EXPECT_EQ(mtu("hb-keep2"), 1400);
  EXPECT_EQ(eventsOf("revision-held").size(), 1u);
  CommandRun st = hyperctl({"status"});
  EXPECT_EQ(st.exitCode, 0) << st.describe();
  EXPECT_TRUE(contains(st.out, "held:      git:" + c2 + " deletes every managed object (2 of 2)"))
      << st.describe();
  EXPECT_TRUE(contains(st.out, "hyperctl approve git:" + c2)) << st.describe();
  HttpReply metrics = http("GET", "/metrics", {}, "", false);
  EXPECT_EQ(metric(metrics.body, "hyper_revision_held"), 1) << metrics.body;

  // Only that revision can be approved: the one in force is refused.
  CommandRun wrong = hyperctl({"approve", "git:" + c1});
  EXPECT_EQ(wrong.exitCode, 1) << wrong.describe();
  EXPECT_TRUE(contains(wrong.err, "the revision held is git:" + c2)) << wrong.describe();
  EXPECT_EQ(mtu("hb-keep1"), 1400);

  CommandRun ok = hyperctl({"approve", c2, "--wait", "60"});
  EXPECT_EQ(ok.exitCode, 0) << ok.describe();
  EXPECT_TRUE(contains(ok.out, "at revision git:" + c2 + ": 2 planned, 2 succeeded"))
      << ok.describe();
  ASSERT_TRUE(eventually(kConverge, [&] { return convergedTo("git:" + c2); })) << status().dump(1);
  EXPECT_FALSE(link("hb-keep1").has_value());
  EXPECT_FALSE(link("hb-keep2").has_value());
  EXPECT_TRUE(status()["held"].is_null()) << status().dump(1);
  EXPECT_EQ(eventsOf("revision-approved").size(), 1u);
}

TEST_F(HyperdTest, PushWebhookNeedsAValidSignature) {
  initRepo();
  std::string c1 = commit({{"nets.yaml", network("hook", "10.96.1.0/24", 1400)}}, "hook network");
  push();
  const std::string secret = "webhook-secret-for-tests";
  const std::string secretFile = tmp_->path() + "/webhook.secret";
  ASSERT_TRUE(writeFile(secretFile, secret + "\n", 0600).isOk());
  // Polling is out of the picture: only the start and a webhook fetch.
  ASSERT_TRUE(startHyperd({"--source", "file://" + bare_, "--interval", "10m", "--drift-interval",
                           "60s", "--webhook-secret-file", secretFile})
                  .isOk());
  ASSERT_TRUE(eventually(kConverge, [&] { return convergedTo("git:" + c1); })) << status().dump(1);
  ASSERT_EQ(mtu("hb-hook"), 1400);

  std::string c2 = commit({{"nets.yaml", network("hook", "10.96.1.0/24", 1300)}}, "mtu 1300");
  push();
  const std::string body = tmp_->path() + "/push.json";
  ASSERT_TRUE(
      writeFile(body, R"({"ref":"refs/heads/main","after":")" + c2 + R"(","commits":[]})").isOk());
  const std::string tampered = tmp_->path() + "/tampered.json";
  ASSERT_TRUE(
      writeFile(tampered, R"({"ref":"refs/heads/main","after":")" + c1 + R"(","commits":[]})")
          .isOk());
  std::string good = opensslHmac(secret, body);
  std::string wrong = opensslHmac("not-the-secret", body);
  ASSERT_EQ(good.size(), 64u);
  ASSERT_NE(good, wrong);
  const std::string json = "Content-Type: application/json";

  HttpReply r = http("POST", "/v1/hooks/git", {json, "X-Hub-Signature-256: sha256=" + wrong}, body,
                     /*withToken=*/false);
  EXPECT_EQ(r.status, 401) << r.body;
  r = http("POST", "/v1/hooks/git", {json}, body, /*withToken=*/false);
  EXPECT_EQ(r.status, 401) << r.body;
  // The signature of another body, and the API token instead of a signature.
  r = http("POST", "/v1/hooks/git", {json, "X-Hub-Signature-256: sha256=" + good}, tampered,
           /*withToken=*/false);
  EXPECT_EQ(r.status, 401) << r.body;
  r = http("POST", "/v1/hooks/git", {json}, body, /*withToken=*/true);
  EXPECT_EQ(r.status, 401) << r.body;

  // Nothing started: a fetch would have applied c2 well within this (the good webhook below
  // converges in a fraction of it).
  std::this_thread::sleep_for(milliseconds(1500));
  Json s = status();
  EXPECT_EQ(s["revision"], "git:" + c1) << s.dump(1);
  EXPECT_FALSE(contains(s["lastReconcile"].value("trigger", ""), "webhook")) << s.dump(1);
  EXPECT_EQ(mtu("hb-hook"), 1400);
  HttpReply metrics = http("GET", "/metrics", {}, "", false);
  EXPECT_EQ(metric(metrics.body, "hyper_webhook_rejected_total"), 4) << metrics.body;

  auto sent = Clock::now();
  r = http("POST", "/v1/hooks/git", {json, "X-Hub-Signature-256: sha256=" + good}, body,
           /*withToken=*/false);
  EXPECT_EQ(r.status, 202) << r.body;
  ASSERT_TRUE(eventually(kConverge, [&] { return convergedTo("git:" + c2); })) << status().dump(1);
  auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - sent);
  EXPECT_EQ(mtu("hb-hook"), 1300);
  EXPECT_TRUE(contains(status()["lastReconcile"].value("trigger", ""), "webhook"))
      << status().dump(1);
  std::printf("webhook to converged: %lld ms\n", static_cast<long long>(took.count()));
}

TEST_F(HyperdTest, BurstOfDirectoryWritesIsOneReconcile) {
  const std::string src = tmp_->path() + "/src";
  ASSERT_TRUE(tmp_->write("src/a.yaml", network("burst1", "10.92.1.0/24", 1400)).isOk());
  ASSERT_TRUE(tmp_->write("src/b.yaml", network("burst2", "10.92.2.0/24", 1400)).isOk());
  ASSERT_TRUE(
      startHyperd({"--source", src, "--debounce", "300ms", "--drift-interval", "60s"}).isOk());
  std::string first = waitConvergedAny();
  ASSERT_TRUE(first.rfind("dir:", 0) == 0) << status().dump(1);
  ASSERT_EQ(mtu("hb-burst1"), 1400);
  int64_t before = lastEventId();

  // 20 writes, a few milliseconds apart, like an editor saving and a formatter rewriting.
  for (int i = 0; i < 20; ++i) {
    bool toA = i % 2 == 0;
    std::string name = toA ? "burst1" : "burst2";
    std::string cidr = toA ? "10.92.1.0/24" : "10.92.2.0/24";
    ASSERT_TRUE(
        tmp_->write(toA ? "src/a.yaml" : "src/b.yaml", network(name, cidr, 1401 + i)).isOk());
    std::this_thread::sleep_for(milliseconds(5));
  }
  // The final content: a.yaml was last written at i = 18, b.yaml at i = 19.
  std::string revision;
  ASSERT_TRUE(eventually(kConverge, [&] {
    Json s = status();
    revision = s.value("revision", "");
    return revision != first && convergedTo(revision) && mtu("hb-burst1") == 1419 &&
           mtu("hb-burst2") == 1420;
  })) << status().dump(1);

  std::vector<Json> burst;
  for (const auto& e : eventsOf("reconciled")) {
    if (e.value("id", int64_t{0}) > before &&
        contains(e["details"].value("trigger", ""), "source-change")) {
      burst.push_back(e);
    }
  }
  // One reconcile for the burst. Two are tolerated: on 2 shared cores the writer can be
  // descheduled for longer than the 300 ms debounce in the middle of the burst, which splits it
  // into two quiet periods; the second then still finds a change. More than two would mean the
  // debounce does not hold.
  EXPECT_GE(burst.size(), 1u) << events().dump(1);
  EXPECT_LE(burst.size(), 2u) << events().dump(1);
  ASSERT_FALSE(burst.empty());
  EXPECT_EQ(burst.back()["revision"], revision) << burst.back().dump(1);
}

TEST_F(HyperdTest, DriftIsAlertedAndRepairedUnlessThePolicySaysAlert) {
  int port = startReceiver();
  ASSERT_GT(port, 0) << "the alert receiver did not start";
  const std::string secret = "alert-signing-secret";
  const std::string secretFile = tmp_->path() + "/alert.secret";
  ASSERT_TRUE(writeFile(secretFile, secret, 0600).isOk());
  const std::string src = tmp_->path() + "/src";
  ASSERT_TRUE(tmp_->write("src/nets.yaml", docs({network("fixed", "10.93.1.0/24", 1400),
                                                 network("watched", "10.93.2.0/24", 1400,
                                                         "  driftPolicy: alert\n")}))
                  .isOk());
  // The periodic drift check is a minute away: drift must be found through host events.
  const std::string config = tmp_->path() + "/hyperd.yaml";
  std::string yaml = "schemaVersion: \"1\"\n";
  yaml += "source: {url: " + src + "}\n";
  yaml += "driftInterval: 60s\n";
  yaml += "stateDir: " + stateDir_ + "\n";
  yaml += "listen: 127.0.0.1:0\n";
  yaml += "alerts:\n";
  yaml += "  - {type: log}\n";
  yaml += "  - {type: webhook, url: \"http://127.0.0.1:" + std::to_string(port) +
          "/alerts\", secretFile: " + secretFile + "}\n";
  ASSERT_TRUE(writeFile(config, yaml).isOk());
  ASSERT_TRUE(startHyperd({"--config", config}).isOk());
  std::string revision = waitConvergedAny();
  ASSERT_FALSE(revision.empty()) << status().dump(1);
  ASSERT_EQ(mtu("hb-fixed"), 1400);
  ASSERT_EQ(mtu("hb-watched"), 1400);

  // A hand change, and no command: found, alerted, repaired.
  ASSERT_TRUE(inNs({"ip", "link", "set", "hb-fixed", "mtu", "1234"}).isOk());
  ASSERT_TRUE(eventually(
      kConverge,
      [&] { return !eventsOf("drift", "Network/fixed").empty() && mtu("hb-fixed") == 1400; }))
      << "mtu " << mtu("hb-fixed") << "\n"
      << events().dump(1);
  Json drift = eventsOf("drift", "Network/fixed")[0];
  EXPECT_EQ(drift["details"]["corrected"], true) << drift.dump(1);
  EXPECT_TRUE(contains(drift["details"]["changes"].dump(), "1234")) << drift.dump(1);

  std::optional<Delivery> alert;
  ASSERT_TRUE(eventually(kConverge, [&] {
    alert = deliveryFor("drift", "Network/fixed");
    return alert.has_value();
  })) << "no drift alert reached the receiver";
  EXPECT_EQ(alert->body["revision"], revision) << alert->body.dump(1);
  EXPECT_TRUE(contains(alert->body["details"].dump(), "1234")) << alert->body.dump(1);
  EXPECT_EQ(alert->headers["x-hyper-signature-256"],
            "sha256=" + opensslHmac(secret, alert->bodyFile))
      << "the alert's signature does not verify";
  EXPECT_NE(alert->headers["x-hyper-signature-256"],
            "sha256=" + opensslHmac("another-secret", alert->bodyFile));
  EXPECT_TRUE(contains(readFile(logPath_), "alert drift Network/fixed")) << "no log alert";

  // driftPolicy: alert on the object: alerted, never repaired.
  ASSERT_TRUE(inNs({"ip", "link", "set", "hb-watched", "mtu", "1234"}).isOk());
  ASSERT_TRUE(eventually(kConverge, [&] {
    return !eventsOf("drift", "Network/watched").empty() &&
           deliveryFor("drift", "Network/watched").has_value();
  })) << events().dump(1);
  drift = eventsOf("drift", "Network/watched")[0];
  EXPECT_EQ(drift["details"]["corrected"], false) << drift.dump(1);
  auto watched = deliveryFor("drift", "Network/watched");
  EXPECT_EQ(watched->headers["x-hyper-signature-256"],
            "sha256=" + opensslHmac(secret, watched->bodyFile));
  // A full reconcile now defers it again (and does not alert the same drift twice).
  CommandRun r = hyperctl({"reconcile"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "1 deferred")) << r.describe();
  EXPECT_EQ(mtu("hb-watched"), 1234) << "drift under driftPolicy: alert was corrected";
  EXPECT_EQ(mtu("hb-fixed"), 1400);
  EXPECT_EQ(eventsOf("drift", "Network/watched").size(), 1u) << events().dump(1);
  r = hyperctl({"drift"});
  EXPECT_EQ(r.exitCode, 2) << r.describe();
  EXPECT_TRUE(contains(r.out, "Network/watched")) << r.describe();
  EXPECT_FALSE(contains(r.out, "Network/fixed")) << r.describe();
}

TEST_F(HyperdTest, KilledMidApplyRestartsWithoutDuplicatesOrLeaks) {
  const int kNetworks = 24;
  std::vector<std::string> all;
  std::set<std::string> names, bridgeNames;
  for (int i = 0; i < kNetworks; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "r%02d", i);
    all.push_back(network(name, "10.94." + std::to_string(i) + ".0/24", 1400));
    names.insert(name);
    bridgeNames.insert(std::string("hb-") + name);
  }
  ASSERT_TRUE(tmp_->write("src/nets.yaml", docs(all)).isOk());
  std::vector<std::string> args = {"--source", tmp_->path() + "/src", "--parallelism",
                                   "1",        "--drift-interval",    "60s"};
  // Killed by its crash switch (base/crash_point.h) in the middle of the apply. The networks
  // are one batch: 24 journal entries begun in one transaction, every bridge made by one `ip`
  // (24 points), the table written, a point per network for its host change done, then the
  // batch's records written in one transaction and its entries ended in one (24 points each);
  // so the 64th is the sixteenth network's host change: every bridge made, nothing recorded.
  const std::string crashLog = tmp_->path() + "/crash.log";
  hyperdEnv_ = {"HYPER_TEST_CRASH_AT=64", "HYPER_TEST_CRASH_LOG=" + crashLog};
  (void)startHyperd(args);  // it may die before it serves: only its end matters here
  hyperdEnv_.clear();
  ASSERT_TRUE(hyperd_);
  ASSERT_EQ(hyperd_->waitExit(milliseconds(30000)), 128 + SIGKILL);
  std::string crashLines = readFile(crashLog);
  ASSERT_TRUE(contains(crashLines, "\nkilled 64 host-changed Network/r15 create\n")) << crashLines;
  EXPECT_TRUE(contains(crashLines, "\n48 bridge-configured Network/r23\n")) << crashLines;
  const size_t atKill = bridges().size();
  EXPECT_EQ(atKill, static_cast<size_t>(kNetworks));
  std::printf("killed with %zu of %d bridges made\n", atKill, kNetworks);
  // The endpoint file left behind names a dead process: hyperctl does not take it for a hyperd.
  CommandRun st = hyperctl({"status", "-o", "json"});
  EXPECT_EQ(st.exitCode, 0) << st.describe();
  EXPECT_TRUE(contains(st.out, "not running")) << st.describe();

  ASSERT_TRUE(startHyperd(args).isOk());
  std::string revision = waitConvergedAny();
  ASSERT_FALSE(revision.empty()) << status().dump(1);
  Json s = status();
  EXPECT_EQ(s["objects"], kNetworks) << s.dump(1);
  EXPECT_EQ(s["ready_objects"], kNetworks) << s.dump(1);

  // Exactly one bridge per network, each marked as hyper's, and no other.
  std::map<std::string, std::string> made = bridges();
  std::set<std::string> madeNames;
  for (const auto& [bridge, alias] : made) {
    madeNames.insert(bridge);
    EXPECT_EQ(alias, "hyper:Network/" + bridge.substr(3)) << bridge;
  }
  EXPECT_EQ(madeNames, bridgeNames);
  auto tables = inNs({"nft", "list", "tables"});
  ASSERT_TRUE(tables.isOk()) << tables.status().message();
  // hyper's two tables, once each: the policy table and the taps' guard.
  EXPECT_EQ(*tables, "table inet hyper\ntable bridge hyper\n");
  auto table = inNs({"nft", "-j", "list", "table", "inet", "hyper"});
  ASSERT_TRUE(table.isOk()) << table.status().message();
  // Every network's bridge leads to its chain (the egress map, bridge -> chain).
  std::map<std::string, std::string> egress;
  Json ruleset = Json::parse(*table);
  for (const auto& entry : ruleset["nftables"]) {
    if (entry.contains("map") && entry["map"]["name"] == "egress-nets") {
      for (const auto& element : entry["map"].value("elem", Json::array())) {
        egress[element[0].get<std::string>()] = element[1]["jump"]["target"].get<std::string>();
      }
    }
  }
  EXPECT_EQ(egress.size(), static_cast<size_t>(kNetworks)) << table->substr(0, 4000);
  for (const auto& name : names) {
    EXPECT_EQ(egress["hb-" + name], "net-" + name + "-egress") << name;
  }
  // The actions the kill cut short (the whole batch: begun, none recorded) are reported, once
  // each.
  std::vector<Json> interrupted = eventsOf("action-interrupted");
  std::set<std::string> cut;
  for (const auto& e : interrupted) {
    cut.insert(e.value("object", ""));
  }
  EXPECT_EQ(interrupted.size(), static_cast<size_t>(kNetworks));
  EXPECT_EQ(cut.size(), static_cast<size_t>(kNetworks));
  EXPECT_EQ(cut.count("Network/r00"), 1u);
  EXPECT_EQ(cut.count("Network/r23"), 1u);

  // SIGTERM: a clean exit that removes the endpoint and leaves the host as it is.
  hyperd_->signal(SIGTERM);
  EXPECT_EQ(hyperd_->waitExit(milliseconds(10000)), 0);
  EXPECT_FALSE(fs::exists(stateDir_ + "/hyperd.json"));
  EXPECT_EQ(bridges().size(), static_cast<size_t>(kNetworks));
  auto inventory = Inventory::open(stateDir_);
  ASSERT_TRUE(inventory.isOk()) << inventory.status().message();
  auto records = (*inventory)->list();
  ASSERT_TRUE(records.isOk()) << records.status().message();
  std::set<std::string> recorded;
  for (const auto& r : *records) {
    EXPECT_EQ(r.id.kind, "Network");
    recorded.insert(r.id.name);
  }
  EXPECT_EQ(recorded, names);
  auto unfinished = (*inventory)->unfinishedJournal();
  ASSERT_TRUE(unfinished.isOk()) << unfinished.status().message();
  EXPECT_TRUE(unfinished->empty()) << unfinished->size() << " journal entries left started";
}

TEST_F(HyperdTest, HyperctlWorksThroughTheRunningHyperd) {
  const std::string src = tmp_->path() + "/src";
  ASSERT_TRUE(tmp_->write("src/nets.yaml", docs({network("svc", "10.95.1.0/24", 1400),
                                                 network("other", "10.95.2.0/24", 1500)}))
                  .isOk());
  ASSERT_TRUE(startHyperd({"--source", src, "--drift-interval", "60s"}).isOk());
  std::string revision = waitConvergedAny();
  ASSERT_FALSE(revision.empty()) << status().dump(1);
  struct stat st {};
  ASSERT_EQ(::stat((stateDir_ + "/hyperd.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // The API: health and metrics open on loopback, /v1 only with the token.
  EXPECT_EQ(http("GET", "/healthz", {}, "", false).status, 200);
  EXPECT_EQ(http("GET", "/readyz", {}, "", false).status, 200);
  EXPECT_EQ(http("GET", "/v1/status", {}, "", false).status, 401);
  EXPECT_EQ(http("GET", "/v1/status", {"Authorization: Bearer " + std::string(64, '0')}, "", false)
                .status,
            401);
  EXPECT_EQ(http("POST", "/v1/suspend", {}, "", false).status, 401);
  EXPECT_FALSE(status()["suspended"].get<bool>()) << "a refused suspend took effect";

  CommandRun r = hyperctl({"apply", "-f", src});
  EXPECT_EQ(r.exitCode, 1) << r.describe();
  EXPECT_TRUE(contains(r.err, "hyperd owns this state dir")) << r.describe();

  r = hyperctl({"suspend"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(status()["suspended"].get<bool>());
  ASSERT_TRUE(inNs({"ip", "link", "del", "hb-svc"}).isOk());
  ASSERT_TRUE(eventually(kConverge, [&] { return !eventsOf("drift", "Network/svc").empty(); }))
      << events().dump(1);
  EXPECT_TRUE(contains(eventsOf("drift", "Network/svc")[0].value("message", ""), "suspended"));
  EXPECT_TRUE(contains(readFile(logPath_), "alert drift Network/svc")) << "no log alert";
  r = hyperctl({"reconcile"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "1 deferred")) << r.describe();
  EXPECT_FALSE(link("hb-svc").has_value()) << "repaired while suspended";
  r = hyperctl({"drift"});
  EXPECT_EQ(r.exitCode, 2) << r.describe();
  EXPECT_TRUE(contains(r.out, "Network/svc")) << r.describe();

  r = hyperctl({"resume"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  ASSERT_TRUE(eventually(kConverge, [&] { return mtu("hb-svc") == 1400; }))
      << "not repaired after resume\n"
      << events().dump(1);
  ASSERT_TRUE(eventually(kConverge, [&] { return hyperctl({"drift"}).exitCode == 0; }));

  r = hyperctl({"reconcile"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(std::regex_search(r.out, std::regex("^reconcile [0-9a-f]+ at revision " + revision +
                                                  ": 0 planned, 0 succeeded, 0 failed, 0 "
                                                  "deferred\n$")))
      << r.describe();

  r = hyperctl({"events"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  for (const char* expected : {"suspended", "resumed", "drift  Network/svc", "reconciled"}) {
    EXPECT_TRUE(contains(r.out, expected)) << expected << "\n" << r.describe();
  }
  r = hyperctl({"status"});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "revision:  " + revision)) << r.describe();
  EXPECT_TRUE(contains(r.out, "applying:  active")) << r.describe();
  EXPECT_TRUE(contains(r.out, "Network/svc")) << r.describe();

  // diff goes through hyperd: it plans the sent manifests against its inventory.
  ASSERT_TRUE(tmp_->write("next/nets.yaml", docs({network("svc", "10.95.1.0/24", 1450),
                                                  network("other", "10.95.2.0/24", 1500)}))
                  .isOk());
  r = hyperctl({"diff", "-f", tmp_->path() + "/next"});
  EXPECT_EQ(r.exitCode, 2) << r.describe();
  EXPECT_TRUE(contains(r.out, "~ Network/svc will be updated")) << r.describe();
  EXPECT_TRUE(contains(r.out, "Plan: 0 to create, 1 to update, 0 to replace, 0 to delete."))
      << r.describe();
  EXPECT_TRUE(contains(readFile(logPath_), "plan preview for 127.0.0.1 (1 files): 1 actions"))
      << "the diff did not reach hyperd";
  r = hyperctl({"diff", "-f", src});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "No changes.")) << r.describe();
  ASSERT_TRUE(tmp_->write("bad/nets.yaml",
                          "apiVersion: hyper.dev/v1alpha1\nkind: Network\n"
                          "metadata: {name: svc}\nspec: {cidr: 10.95.1.0/33}\n")
                  .isOk());
  r = hyperctl({"diff", "-f", tmp_->path() + "/bad"});
  EXPECT_EQ(r.exitCode, 1) << r.describe();
  EXPECT_TRUE(contains(r.err, tmp_->path() + "/bad/nets.yaml:4:")) << r.describe();
  EXPECT_TRUE(contains(r.err, "found by hyperd")) << r.describe();
  // --local plans in hyperctl itself, with the same result.
  r = hyperctl({"diff", "--local", "-f", tmp_->path() + "/next"});
  EXPECT_EQ(r.exitCode, 2) << r.describe();
  EXPECT_TRUE(contains(r.out, "~ Network/svc will be updated")) << r.describe();
  EXPECT_EQ(mtu("hb-svc"), 1400) << "a diff changed the host";

  HttpReply m = http("GET", "/metrics", {}, "", false);
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_GE(metric(m.body, "hyper_reconciles_total"), 3) << m.body;
  EXPECT_GE(metric(m.body, "hyper_drift_total{kind=\"Network\"}"), 1) << m.body;
}

// Issue 11: one commit with a 200000-character label key (std::regex overflowed the stack on
// it) and another file that is an alias bomb. hyperd rejects the revision like any invalid one,
// keeps serving and keeps the last good revision, and a restart on that head is no crash loop.
TEST_F(HyperdTest, AHostileCommitIsRejectedAndHyperdServesOnAcrossARestart) {
  initRepo();
  ASSERT_TRUE(
      startHyperd({"--source", "file://" + bare_, "--interval", "1s", "--drift-interval", "60s"})
          .isOk());
  std::string good = network("alpha", "10.91.7.0/24", 1400);
  std::string c1 = commit({{"nets.yaml", good}}, "one network");
  push();
  ASSERT_TRUE(eventually(kConverge, [&] { return convergedTo("git:" + c1); })) << status().dump(1);

  std::string hugeKey =
      "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: beta\n"
      "  labels:\n    ? " +
      std::string(200000, 'k') + "\n    : v\nspec:\n  cidr: 10.91.8.0/24\n";
  std::string bomb = "a0: &a0 \"x\"\n";
  for (int i = 1; i < 10; ++i) {
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) {
      bomb += (j ? ", *a" : "*a") + std::to_string(i - 1);
    }
    bomb += "]\n";
  }
  std::string c2 = commit({{"huge.yaml", hugeKey}, {"bomb.yaml", bomb}}, "hostile");
  push();
  ASSERT_TRUE(eventually(kConverge, [&] { return status()["rejectedRevision"] == "git:" + c2; }))
      << status().dump(1);
  EXPECT_TRUE(hyperd_->running());
  EXPECT_EQ(http("GET", "/healthz", {}, "", false).status, 200);
  EXPECT_EQ(status()["revision"], "git:" + c1);
  EXPECT_EQ(mtu("hb-alpha"), 1400);
  EXPECT_FALSE(link("hb-beta").has_value());
  std::vector<Json> rejected = eventsOf("revision-rejected");
  ASSERT_EQ(rejected.size(), 1u) << events().dump(1);
  std::string problems = rejected[0]["details"]["problems"].dump();
  EXPECT_TRUE(contains(problems, "bomb.yaml")) << problems.substr(0, 2000);
  EXPECT_TRUE(contains(problems, "limit maxNodesPerDocument exceeded")) << problems.substr(0, 2000);
  EXPECT_TRUE(contains(problems, "huge.yaml")) << problems.substr(0, 2000);
  EXPECT_TRUE(contains(problems, "invalid key")) << problems.substr(0, 2000);
  EXPECT_LT(problems.size(), 4000u) << "the rejection quotes the input whole";

  // Restarted on the same head: it starts, serves and reports the rejection again.
  ASSERT_TRUE(
      startHyperd({"--source", "file://" + bare_, "--interval", "1s", "--drift-interval", "60s"})
          .isOk());
  ASSERT_TRUE(eventually(kConverge, [&] { return status()["rejectedRevision"] == "git:" + c2; }))
      << status().dump(1);
  EXPECT_TRUE(hyperd_->running());
  EXPECT_EQ(http("GET", "/healthz", {}, "", false).status, 200);
  EXPECT_EQ(mtu("hb-alpha"), 1400) << "the last good revision's network was touched";
}

// A Build runs beside the loop, not in it: while Debian's kernel builds (seconds), the loop goes on
// and creates a Network; the Build is Reconciling (InProgress), not failed; the build's queue,
// steps and end are events; the build metrics are on /metrics; the build's end wakes the loop,
// which records it.
TEST_F(HyperdTest, ABuildRunsBesideTheLoopWithItsProgressAsEvents) {
  // The kernel's .deb is fetched into /var/cache/hyper/debs in this (the host's) namespace: the
  // test's namespace cannot reach the Debian mirror.
  const test::GuestImage& guest = test::guestImage();
  if (!guest.skipReason.empty()) {
    GTEST_SKIP() << guest.skipReason;
  }
  const std::string src = tmp_->path() + "/src";
  ASSERT_TRUE(tmp_->write("src/net.yaml", network("beside", "10.93.1.0/24", 1400)).isOk());
  ASSERT_TRUE(tmp_->write("src/kernel.yaml",
                          "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: kernel}\n"
                          "spec:\n  type: debian-kernel\n")
                  .isOk());
  ASSERT_TRUE(startHyperd({"--source", src, "--drift-interval", "60s"}).isOk());

  auto condition = [&](const std::string& object, const std::string& type) -> Json {
    Json all = api("/v1/objects");
    for (const auto& o : all.is_array() ? all : Json::array()) {
      if (o.value("kind", "") + "/" + o.value("name", "") != object) {
        continue;
      }
      for (const auto& c : o["conditions"]) {
        if (c.value("type", "") == type) {
          return c;
        }
      }
    }
    return Json::object();
  };
  // Seen while the kernel builds: the Network is Ready, the Build is Reconciling, in progress.
  // The build takes seconds (unpacking ~70 MB, archiving ~400 MB): a minute is plenty.
  bool sawInProgress = false;
  ASSERT_TRUE(eventually(milliseconds(60000), [&] {
    Json building = condition("Build/kernel", "Reconciling");
    if (building.is_object() && building.value("status", "") == "True" &&
        building.value("reason", "") == "InProgress" &&
        condition("Network/beside", "Ready").value("status", "") == "True") {
      sawInProgress = true;
    }
    return condition("Build/kernel", "Ready").value("status", "") == "True";
  })) << api("/v1/objects").dump(1);
  EXPECT_TRUE(sawInProgress) << "the Network did not converge while the kernel was building";
  EXPECT_EQ(mtu("hb-beside"), 1400);

  for (const char* type : {"build-queued", "build-started", "build-step", "build-finished"}) {
    EXPECT_FALSE(eventsOf(type, "Build/kernel").empty()) << type << "\n" << events().dump(1);
  }
  EXPECT_TRUE(eventsOf("action-failed", "Build/kernel").empty()) << "in progress is no failure";
  bool stepNamesThePackage = false;
  for (const auto& e : eventsOf("build-step", "Build/kernel")) {
    stepNamesThePackage = stepNamesThePackage || contains(e.value("message", ""), "linux-image-");
  }
  EXPECT_TRUE(stepNamesThePackage) << events().dump(1);

  HttpReply metrics = http("GET", "/metrics", {}, "", false);
  EXPECT_TRUE(contains(
      metrics.body, "hyper_build_duration_seconds_count{result=\"ok\",type=\"debian-kernel\"} 1"))
      << metrics.body;
  EXPECT_TRUE(
      contains(metrics.body, "hyper_build_cache_total{result=\"miss\",type=\"debian-kernel\"} 1"))
      << metrics.body;
  EXPECT_TRUE(
      contains(metrics.body, "hyper_build_queue_wait_seconds_count{type=\"debian-kernel\"} 1"))
      << metrics.body;

  // The record is the build's: hyperctl sees the kernel built, with nothing left to do.
  CommandRun get = hyperctl({"get", "builds"});
  EXPECT_TRUE(contains(get.out, "debian-kernel")) << get.describe();
}

// A git revision's Builds rebuild to the digests hyperd recorded for that commit, from a checkout
// of it; a later commit's change shows as different for the old revision, naming what moved.
TEST_F(HyperdTest, AGitRevisionsBuildsRebuildFromItsCommit) {
  initRepo();
  const std::string build = [](const std::string& motd) {
    return "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: web}\nspec:\n"
           "  type: initramfs\n  initramfs:\n    files:\n"
           "      - {path: /init, mode: \"0755\", source: init.sh}\n"
           "      - {path: /etc/motd, content: \"" +
           motd + "\"}\n";
  }("one");
  std::string c1 = commit({{"build.yaml", build}, {"init.sh", "#!/bin/sh\necho one\n"}}, "a build");
  push();
  ASSERT_TRUE(
      startHyperd({"--source", "file://" + bare_, "--interval", "1s", "--drift-interval", "60s"})
          .isOk());
  ASSERT_TRUE(eventually(milliseconds(30000), [&] {
    return convergedTo("git:" + c1) && status()["lastReconcile"].value("inProgress", 1) == 0 &&
           !hyperctl({"get", "builds"}).out.empty() &&
           contains(hyperctl({"get", "builds"}).out, "initramfs");
  })) << status().dump(1);
  // A second commit changes the source file: a new artifact for the new revision.
  std::string c2 = commit({{"init.sh", "#!/bin/sh\necho two\n"}}, "init two");
  push();
  ASSERT_TRUE(eventually(milliseconds(30000), [&] {
    return convergedTo("git:" + c2) && status()["lastReconcile"].value("inProgress", 1) == 0;
  })) << status().dump(1);
  hyperd_.reset();  // rebuild reads the state hyperd wrote

  // The working clone at the first commit: the same digest as hyperd recorded for it.
  git({"-C", work_, "checkout", "--quiet", c1});
  CommandRun same = hyperctl({"rebuild", "-f", work_, "--revision", "git:" + c1});
  EXPECT_EQ(same.exitCode, 0) << same.describe();
  EXPECT_TRUE(contains(same.out, "same       Build/web initrd sha256:")) << same.out;
  // The second commit's checkout against the first revision: different, and the moved input is
  // the source file.
  git({"-C", work_, "checkout", "--quiet", c2});
  CommandRun moved = hyperctl({"rebuild", "-f", work_, "--revision", "git:" + c1});
  EXPECT_EQ(moved.exitCode, 2) << moved.describe();
  EXPECT_TRUE(contains(moved.out, "input source:init.sh moved")) << moved.out;

  // Read from the repository itself: its commit, not the branch's head (c2) nor a checkout.
  CommandRun fromRepo = hyperctl({"rebuild", "--repo", bare_, "--revision", "git:" + c1});
  EXPECT_EQ(fromRepo.exitCode, 0) << fromRepo.describe();
  EXPECT_TRUE(contains(fromRepo.out, "same       Build/web initrd sha256:")) << fromRepo.out;
  // A working copy is its repository; c2 has a record of its own.
  CommandRun fromWork = hyperctl({"rebuild", "--repo", work_, "--revision", "git:" + c2});
  EXPECT_EQ(fromWork.exitCode, 0) << fromWork.describe();
  // A commit the repository lacks, a revision that is no commit, -f and --repo together.
  const std::string unknown(40, 'e');
  CommandRun missing = hyperctl({"rebuild", "--repo", bare_, "--revision", "git:" + unknown});
  EXPECT_EQ(missing.exitCode, 1);
  EXPECT_TRUE(contains(missing.err, unknown)) << missing.describe();
  CommandRun notGit = hyperctl({"rebuild", "--repo", bare_, "--revision", "dir:0123456789abcdef"});
  EXPECT_EQ(notGit.exitCode, 1);
  EXPECT_TRUE(contains(notGit.err, "expected --revision git:<40 hex digits>")) << notGit.err;
  CommandRun both = hyperctl({"rebuild", "-f", work_, "--repo", bare_, "--revision", "git:" + c1});
  EXPECT_EQ(both.exitCode, 1);
  EXPECT_TRUE(contains(both.err, "one of them")) << both.err;
}
}  // namespace
}  // namespace hyper

namespace hyper {
namespace {

// Secrets end to end, with a real VM: a value sealed in git reaches the guest before it says it
// is ready; a new value pushed is delivered to the running guest; a Secret read from a host file
// with loose permissions is an error that names the file and never the value, and once the file
// is fixed its value is delivered; a killed VM gets its value again at its new boot; after a
// hyperd restart nothing is delivered twice. Three canaries (of other lengths: the guest's
// console says how many bytes it stored, and nothing more) are then searched for, as they are
// and in base64, in every byte hyper wrote (state directory, SQLite included; run directory;
// hyperd's log) and answered (API, hyperctl): no hit.
TEST_F(HyperdTest, ASealedValueReachesItsVmAndNothingElseEverShowsIt) {
  const auto& image = test::guestImage();
  if (!image.skipReason.empty()) {
    GTEST_SKIP() << image.skipReason;
  }
  const std::string runDir = tmp_->path() + "/run";
  ::setenv("HYPER_VM_RUN_DIR", runDir.c_str(), 1);  // hyperctl's too
  hyperdEnv_ = {"HYPER_VM_RUN_DIR=" + runDir};
  const std::vector<std::string> canaries = {"canary-one-3d9f0b", "canary-two-77a1e5c0",
                                             "canary-three-file-5e0b2a9c"};
  std::string answered;  // every API answer and hyperctl output, searched at the end
  auto sealed = [&](const std::string& value) {
    CommandRun r =
        test::runArgv({"sh", "-c", "printf %s \"$0\" | \"$@\"", value, HYPERCTL_PATH, "--state-dir",
                       stateDir_, "secret", "seal", "--name", "db", "--key", "password"});
    EXPECT_EQ(r.exitCode, 0) << r.describe();
    answered += r.err;
    return r.out;
  };
  const std::string vm =
      "apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata: {name: web}\nspec:\n"
      "  kernel: {path: " +
      image.kernel + "}\n  initrd: {path: " + image.initrd +
      "}\n  cmdline: quiet\n  secrets: [{secret: db, key: password}]\n";
  auto console = [&] { return readFile(runDir + "/web/console.log"); };
  auto storedLines = [&](size_t bytes) {
    const std::string line = "hyper-secret db/password stored at /run/secrets/db/password (" +
                             std::to_string(bytes) + " bytes, mode 0400)";
    size_t n = 0;
    const std::string c = console();
    for (size_t at = c.find(line); at != std::string::npos; at = c.find(line, at + 1)) {
      ++n;
    }
    return n;
  };
  auto delivered = [&] {
    std::vector<Json> out = eventsOf("secret-delivered", "VM/web");
    for (const auto& e : out) {
      answered += e.dump();
    }
    return out;
  };
  auto qemuPid = [&] { return trimmed(readFile(runDir + "/web/qemu.pid")); };

  initRepo();
  std::string c =
      commit({{"db.yaml", sealed(canaries[0])}, {"web.yaml", vm}}, "a VM and its secret");
  push();
  ASSERT_TRUE(
      startHyperd({"--source", "file://" + bare_, "--interval", "1s", "--drift-interval", "1h"})
          .isOk());
  ASSERT_TRUE(eventually(kConverge * 8, [&] { return convergedTo("git:" + c); }))
      << status().dump(1) << console();
  // Stored before ready: the readiness line comes after it.
  EXPECT_EQ(storedLines(canaries[0].size()), 1u) << console();
  EXPECT_LT(console().find("hyper-secret db/password stored"), console().find("hyper-ready"));
  ASSERT_EQ(delivered().size(), 1u);
  EXPECT_EQ(delivered()[0]["message"],
            "secret db/password delivered to VM/web at /run/secrets/db/password");
  const std::string pid = qemuPid();

  // A new value: delivered live, the VM keeps running.
  c = commit({{"db.yaml", sealed(canaries[1])}}, "rotate the password");
  push();
  ASSERT_TRUE(eventually(kConverge * 4, [&] { return convergedTo("git:" + c); }))
      << status().dump(1);
  // The guest acknowledges on its channel and prints on its console: two streams, in no
  // fixed order as the host reads them.
  EXPECT_TRUE(eventually(kConverge, [&] { return storedLines(canaries[1].size()) == 1; }))
      << console();
  EXPECT_EQ(qemuPid(), pid);
  ASSERT_EQ(delivered().size(), 2u);
  EXPECT_TRUE(contains(delivered()[1].value("message", ""), "(new value, live)"));

  // From a host file that others may read: refused, naming the file; the VM keeps its value.
  const std::string file = tmp_->path() + "/db-password";
  ASSERT_TRUE(tmp_->write("db-password", canaries[2]).isOk());
  ::chmod(file.c_str(), 0644);
  c = commit({{"db.yaml",
               "apiVersion: hyper.dev/v1alpha1\nkind: Secret\nmetadata: {name: db}\n"
               "spec:\n  fromFile: {password: " +
                   file + "}\n"}},
             "the password from a host file");
  push();
  std::string refusal;
  ASSERT_TRUE(eventually(kConverge * 4, [&] {
    for (const auto& e : events().is_array() ? events() : Json::array()) {
      const std::string m = e.dump();
      if (contains(m, file + ": owner uid 0, mode 0644")) {
        refusal = m;
        return true;
      }
    }
    return false;
  })) << events().dump(1);
  answered += refusal;
  EXPECT_EQ(qemuPid(), pid);
  // Fixed: delivered live at the next try (a plan error is retried with backoff).
  ::chmod(file.c_str(), 0600);
  ASSERT_TRUE(
      eventually(kConverge * 8,
                 [&] { return storedLines(canaries[2].size()) == 1 && convergedTo("git:" + c); }))
      << status().dump(1) << console();
  EXPECT_EQ(qemuPid(), pid);
  EXPECT_EQ(delivered().size(), 3u);

  // Killed: started again, and given its value again before it is ready.
  ::kill(std::stoi(pid), SIGKILL);
  ASSERT_TRUE(eventually(kConverge * 8,
                         [&] {
                           return qemuPid() != pid && !qemuPid().empty() &&
                                  storedLines(canaries[2].size()) == 1 &&
                                  contains(console(), "hyper-ready") && delivered().size() == 4;
                         }))
      << console() << events().dump(1);
  HttpReply metrics = http("GET", "/metrics", {}, "", false);
  EXPECT_TRUE(contains(metrics.body, "hyper_secret_deliveries_total{result=\"delivered\"} 4"))
      << metrics.body;
  answered += metrics.body;

  // hyperd restarts: the VM is adopted, nothing is delivered again.
  const std::string adopted = qemuPid();
  ASSERT_TRUE(
      startHyperd({"--source", "file://" + bare_, "--interval", "1s", "--drift-interval", "1h"})
          .isOk());
  ASSERT_TRUE(eventually(kConverge * 4, [&] { return convergedTo("git:" + c); }))
      << status().dump(1);
  EXPECT_EQ(qemuPid(), adopted);
  EXPECT_EQ(delivered().size(), 4u);

  // What hyper answered...
  answered += status().dump() + events().dump() + http("GET", "/metrics", {}, "", false).body;
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"get", "vms", "-o", "json"},
                                             {"get", "secrets", "-o", "json"},
                                             {"status"},
                                             {"events"},
                                             {"drift"},
                                             {"logs", "vm/web"},
                                             {"diff", "-f", work_},
                                             {"diff", "-f", work_, "-o", "json"},
                                             {"diff", "--local", "-f", work_, "-o", "json"}}) {
    CommandRun r = hyperctl(args);
    answered += r.out + r.err;
  }
  // ... and every byte it wrote.
  std::string written;
  for (const std::string& dir : {stateDir_, runDir}) {
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (e.is_regular_file()) {
        written += readFile(e.path().string());
      }
    }
  }
  written += readFile(logPath_);
  for (const auto& canary : canaries) {
    for (const std::string& form : {canary, encodeBase64(canary)}) {
      EXPECT_FALSE(contains(answered, form)) << form << " in an answer";
      EXPECT_FALSE(contains(written, form)) << form << " in a file hyper wrote";
    }
  }
  EXPECT_TRUE(contains(written, "hyper-ready"));  // the search did read the console
  ::unsetenv("HYPER_VM_RUN_DIR");
}

}  // namespace
}  // namespace hyper

namespace hyper {
namespace {

// Sealing from a machine without the host's keys: `hyperctl --server URL secret seal` seals to
// hyperd's active key, and after a rotation `secret reseal -f` goes through hyperd (which holds
// the private keys) and rewrites the file; a value moved to another Secret is refused by hyperd,
// naming it, and nothing is written. The workstation's state dir never gets a key.
TEST_F(HyperdTest, AWorkstationSealsAndResealsThroughHyperd) {
  const std::string kCanary = "canary-reseal-4c1f9e2b";
  ASSERT_TRUE(tmp_->write("src/.keep", "").isOk());
  ASSERT_TRUE(startHyperd({"--source", tmp_->path() + "/src", "--drift-interval", "1h"}).isOk());
  const std::string workstation = tmp_->path() + "/workstation";
  std::string printed;
  auto remote = [&](const std::vector<std::string>& args, const std::string& stdinValue = "") {
    std::vector<std::string> argv = {"ip",
                                     "netns",
                                     "exec",
                                     ns_->name(),
                                     "sh",
                                     "-c",
                                     "printf %s \"$0\" | \"$@\"",
                                     stdinValue,
                                     HYPERCTL_PATH,
                                     "--state-dir",
                                     workstation,
                                     "--server",
                                     url_,
                                     "--token-file",
                                     stateDir_ + "/hyperd.token"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandRun r = test::runArgv(argv);
    printed += r.out + r.err;
    return r;
  };
  const std::string file = tmp_->path() + "/src/db.yaml";
  CommandRun seal =
      remote({"secret", "seal", "--name", "db", "--key", "password", "-f", file}, kCanary);
  ASSERT_EQ(seal.exitCode, 0) << seal.describe();
  EXPECT_FALSE(fs::exists(workstation + "/keys")) << "sealed with hyperd's public key only";
  CommandRun keys = hyperctl({"keys"});
  const std::string first = keys.out.substr(keys.out.find("(sealing key ") + 13, 16);
  EXPECT_TRUE(contains(readFile(file), "hyper:v1:" + first + ":")) << readFile(file);
  std::string revision = waitConvergedAny();
  ASSERT_FALSE(revision.empty()) << status().dump(1);

  // A rotation on the host; the workstation reseals through hyperd.
  CommandRun rotate = hyperctl({"keys", "rotate"});
  ASSERT_EQ(rotate.exitCode, 0) << rotate.describe();
  const std::string second = rotate.out.substr(rotate.out.find("key ") + 4, 16);
  CommandRun reseal = remote({"secret", "reseal", "-f", tmp_->path() + "/src"});
  ASSERT_EQ(reseal.exitCode, 0) << reseal.describe();
  EXPECT_TRUE(contains(reseal.out, "resealed Secret/db password: key " + first + " -> " + second))
      << reseal.out;
  EXPECT_TRUE(contains(reseal.out, "1 value resealed to key " + second + " (by hyperd)"))
      << reseal.out;
  EXPECT_TRUE(contains(readFile(file), "hyper:v1:" + second + ":"));
  EXPECT_FALSE(fs::exists(workstation + "/keys"));
  // hyperd applies it: the same value, now sealed to the new key.
  ASSERT_TRUE(eventually(kConverge, [&] {
    Json s = status();
    return s.is_object() && s.value("revision", "") != revision &&
           convergedTo(s.value("revision", ""));
  })) << status().dump(1);
  std::vector<Json> audit = eventsOf("secrets-resealed");
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0]["details"]["values"], Json::array({"db/password"}));

  // Moved to another Secret: hyperd refuses to open it as that one; nothing is written.
  hyperctl({"keys", "rotate"});
  std::string moved = readFile(file);
  moved.replace(moved.find("name: db"), 8, "name: cache");
  ASSERT_TRUE(tmp_->write("moved/cache.yaml", moved).isOk());
  CommandRun refused = remote({"secret", "reseal", "-f", tmp_->path() + "/moved"});
  EXPECT_EQ(refused.exitCode, 1);
  EXPECT_TRUE(contains(refused.err,
                       "values[0] (Secret/cache/password): does not open as "
                       "Secret/cache/password"))
      << refused.err;
  EXPECT_EQ(readFile(tmp_->path() + "/moved/cache.yaml"), moved);
  EXPECT_EQ(eventsOf("secrets-resealed").size(), 1u);

  EXPECT_FALSE(contains(printed + events().dump() + readFile(logPath_), kCanary));
}

}  // namespace
}  // namespace hyper

namespace hyper {
namespace {

// GET /v1/builds/NAME/events: a Build's log as typed Server-Sent Events (step, log, status), all
// of it without following; with ?follow=1 (here through `hyperctl logs build/NAME -f`) the lines
// that come until the build ends, after which the stream and hyperctl end (exit 1 for a failed
// build). A name that is not a Build name is refused; a Build never built here is a 404.
TEST_F(HyperdTest, ABuildsLogIsServedAsTypedEventsAndFollowedUntilTheBuildEnds) {
  ASSERT_TRUE(tmp_->write("src/.keep", "").isOk());
  ASSERT_TRUE(tmp_->write("state/builds/app.log",
                          "build app (script) key 0123abcd\n"
                          "step 0 start\n"
                          "[0] compiling\n"
                          "[0!] warning: x\n"
                          "step 0 exit 0\n")
                  .isOk());
  ASSERT_TRUE(startHyperd({"--source", tmp_->path() + "/src", "--drift-interval", "1h"}).isOk());

  HttpReply all = http("GET", "/v1/builds/app/events");
  ASSERT_EQ(all.status, 200) << all.body;
  std::vector<Json> events;
  std::istringstream lines(all.body);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("data: ", 0) == 0) {
      events.push_back(Json::parse(line.substr(6)));
    }
  }
  ASSERT_EQ(events.size(), 5u) << all.body;
  EXPECT_EQ(events[0]["type"], "status");
  EXPECT_EQ(events[0]["state"], "started");
  EXPECT_EQ(events[1], (Json{{"type", "step"}, {"step", 0}, {"phase", "start"}, {"line", 2}}));
  EXPECT_EQ(
      events[2],
      (Json{{"type", "log"}, {"step", 0}, {"stream", "out"}, {"text", "compiling"}, {"line", 3}}));
  EXPECT_EQ(events[3]["stream"], "err");
  EXPECT_EQ(events[4]["code"], 0);
  EXPECT_NE(all.body.find("event: step\n"), std::string::npos);
  // ?after=N resumes after line N.
  HttpReply after = http("GET", "/v1/builds/app/events?after=4");
  EXPECT_EQ(std::count(after.body.begin(), after.body.end(), '\n'), 3) << after.body;

  EXPECT_EQ(http("GET", "/v1/builds/Not_A_Name/events").status, 400);
  EXPECT_EQ(http("GET", "/v1/builds/never-built/events").status, 404);

  // Following: hyperctl prints the log so far, then what is appended, and ends with the build.
  const std::string out = tmp_->path() + "/follow.out";
  auto follower = ChildProcess::start({"ip", "netns", "exec", ns_->name(), HYPERCTL_PATH,
                                       "--state-dir", stateDir_, "logs", "build/app", "-f"},
                                      out);
  ASSERT_TRUE(follower.isOk());
  ASSERT_TRUE(eventually(milliseconds(10000), [&] {
    return readFile(out).find("step 0 exit 0") != std::string::npos;
  })) << readFile(out);
  EXPECT_TRUE((*follower)->running()) << readFile(out);
  {
    std::ofstream log(stateDir_ + "/builds/app.log", std::ios::app);
    log << "step 1 start\n[1!] no such file\nstep 1 exit 2\nfailed: step 1 [make] exited with "
           "code 2\n";
  }
  std::optional<int> code = (*follower)->waitExit(milliseconds(10000));
  ASSERT_TRUE(code.has_value()) << "hyperctl logs -f did not end with the build: " << readFile(out);
  EXPECT_EQ(*code, 1);
  EXPECT_EQ(readFile(out),
            "build app (script) key 0123abcd\nstep 0 start\n[0] compiling\n[0!] warning: x\n"
            "step 0 exit 0\nstep 1 start\n[1!] no such file\nstep 1 exit 2\n"
            "failed: step 1 [make] exited with code 2\n");
}

}  // namespace
}  // namespace hyper

namespace hyper {
namespace {

// A script Build converged by hyperd: the build runs on the queue beside the loop, its builder
// gets a Secret (audited as an event naming the value's id and the Build, never the value), the
// boot time is a metric, and the build's log is served as typed events with its steps.
TEST_F(HyperdTest, HyperdRunsAScriptBuildAndAuditsItsSecret) {
  const auto& image = test::guestImage();
  if (!image.skipReason.empty()) {
    GTEST_SKIP() << image.skipReason;
  }
  const std::string repo = tmp_->path() + "/app.git";
  const std::string work = tmp_->path() + "/work";
  test::runGit({"init", "--quiet", "--bare", repo});
  test::runGit({"clone", "--quiet", repo, work});
  ASSERT_TRUE(tmp_->write("work/msg.txt", "from hyperd\n").isOk());
  test::runGit({"-C", work, "add", "-A"});
  test::runGit({"-C", work, "commit", "--quiet", "-m", "app"});
  test::runGit({"-C", work, "push", "--quiet", "origin", "HEAD:main"});
  const std::string commit = test::runGit({"-C", work, "rev-parse", "HEAD"});
  const std::string kCanary = "canary-build-secret-8e41d07a";
  CommandRun seal =
      test::runArgv({"sh", "-c", "printf %s \"$0\" | \"$@\"", kCanary, HYPERCTL_PATH, "--state-dir",
                     stateDir_, "secret", "seal", "--name", "npm", "--key", "token"});
  ASSERT_EQ(seal.exitCode, 0) << seal.describe();
  ASSERT_TRUE(tmp_->write("src/secret.yaml", seal.out).isOk());
  ASSERT_TRUE(
      tmp_->write("src/builds.yaml",
                  "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: k}\nspec:\n"
                  "  type: debian-kernel\n---\napiVersion: hyper.dev/v1alpha1\nkind: Build\n"
                  "metadata: {name: i}\nspec:\n  type: initramfs\n  initramfs:\n"
                  "    kernel: {build: k}\n    hyperInit: true\n---\n"
                  "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: app}\nspec:\n"
                  "  type: script\n  script:\n    source: {git: {url: " +
                      repo + ", commit: " + commit +
                      "}}\n    builder: {kernel: {build: k}, initrd: {build: i}}\n"
                      "    steps: [[sh, -c, 'cat msg.txt; wc -c < /run/secrets/tok > /out/n']]\n"
                      "    outputs: [{name: n, path: /out/n}]\n"
                      "    secrets: [{secret: npm, key: token, id: tok}]\n")
          .isOk());
  const std::string runDir = "/tmp/hbd-" + std::to_string(::getpid());
  hyperdEnv_ = {"HYPER_BUILDER_RUN_DIR=" + runDir};
  ASSERT_TRUE(startHyperd({"--source", tmp_->path() + "/src", "--drift-interval", "1h"}).isOk());
  ASSERT_TRUE(eventually(milliseconds(240000), [&] {
    return !eventsOf("secret-delivered", "Build/app").empty() &&
           http("GET", "/v1/builds/app/events").body.find("built in") != std::string::npos;
  })) << http("GET", "/v1/builds/app/events").body;
  Json delivered = eventsOf("secret-delivered", "Build/app").front();
  EXPECT_EQ(delivered["message"],
            "secret npm/token delivered to Build/app at /run/secrets/tok for the build");
  HttpReply log = http("GET", "/v1/builds/app/events");
  EXPECT_NE(
      log.body.find("\"step\":0,\"stream\":\"out\",\"text\":\"from hyperd\",\"type\":\"log\"}"),
      std::string::npos)
      << log.body;
  EXPECT_NE(log.body.find("\"state\":\"succeeded\""), std::string::npos) << log.body;
  HttpReply metrics = http("GET", "/metrics", {}, "", false);
  EXPECT_NE(metrics.body.find("hyper_build_builder_boot_seconds_count 1"), std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("hyper_build_secret_deliveries_total{result=\"delivered\"} 1"),
            std::string::npos);
  // The value's length reached the artifact; the value itself is nowhere hyperd wrote or said.
  std::string everything = log.body + metrics.body + events().dump();
  hyperd_.reset();
  everything += readFile(logPath_);
  for (const auto& e : fs::recursive_directory_iterator(stateDir_)) {
    if (e.is_regular_file() && e.file_size() < (64u << 20)) {
      everything += readFile(e.path().string());
    }
  }
  EXPECT_EQ(everything.find(kCanary), std::string::npos);
  std::error_code ec;
  fs::remove_all(runDir, ec);
}

// The status page in Debian's headless Chromium, driven over the DevTools protocol: a wrong token
// is refused, the viewer token reads but cannot act, the tree by references after a push (a real
// VM under its Network, the Build of its initrd and its sealed Secret, whose value the page never
// shows), a build's log and the VM's console on demand, a drift that appears live (no reload)
// with its field-level difference and goes after the repair pushed to git, a held revision
// (deleting the running VM too) approved from the page. A screenshot of each step is kept in the
// build directory; any console error of the page's JS fails the test.
TEST_F(HyperdTest, TheStatusPageShowsTheLoopLiveInChromium) {
  const auto& image = test::guestImage();
  if (!image.skipReason.empty()) {
    GTEST_SKIP() << image.skipReason;
  }
  const std::string shots = std::string(HYPER_BINARY_DIR) + "/screenshots";
  fs::create_directories(shots);
  // The VM's run dir in the test's own directory (TearDown kills a QEMU left there).
  const std::string runDir = tmp_->path() + "/run";
  hyperdEnv_ = {"HYPER_VM_RUN_DIR=" + runDir};
  initRepo();
  const std::string kCanary = "canary-page-5c1e9a";
  CommandRun seal =
      test::runArgv({"sh", "-c", "printf %s \"$0\" | \"$@\"", kCanary, HYPERCTL_PATH, "--state-dir",
                     stateDir_, "secret", "seal", "--name", "db", "--key", "password"});
  ASSERT_EQ(seal.exitCode, 0) << seal.describe();
  // hyper's guest image as a Build of the revision (the kernel's .deb is in the host's cache, put
  // there by guestImage(): nothing is fetched from inside the namespace), booted by a VM on lab
  // that takes the secret. The kernel is guestImage()'s, from the same .deb.
  const std::string guestBuilds =
      "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: guest-kernel}\nspec:\n"
      "  type: debian-kernel\n  debianKernel: {package: linux-image-amd64}\n---\n"
      "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: guest-initrd}\nspec:\n"
      "  type: initramfs\n  initramfs:\n    kernel: {build: guest-kernel}\n    hyperInit: true\n";
  const std::string vm =
      "apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata: {name: web}\nspec:\n"
      "  kernel: {path: " +
      image.kernel +
      "}\n  initrd: {build: guest-initrd}\n  cmdline: \"quiet hyper.ping=0\"\n"
      "  network: {name: lab}\n  secrets: [{secret: db, key: password}]\n";
  const std::string policy =
      "apiVersion: hyper.dev/v1alpha1\nkind: NetworkPolicy\nmetadata: {name: web}\n"
      "spec:\n  network: lab\n  egress: {mode: none}\n";
  // A Build with nothing to fetch, for its log.
  const std::string build =
      "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: motd}\nspec:\n"
      "  type: initramfs\n  initramfs:\n    busybox: false\n"
      "    files: [{path: /etc/motd, content: \"from the status page test\\n\"}]\n";
  std::string c1 =
      commit({{"nets.yaml", docs({network("lab", "10.93.5.0/24", 1400, "  driftPolicy: alert\n"),
                                  network("edge", "10.93.6.0/24", 1400), policy})},
              {"build.yaml", build},
              {"guest.yaml", guestBuilds},
              {"db.yaml", seal.out},
              {"web.yaml", vm}},
             "lab, edge, a policy, builds, a secret and a VM");
  push();
  ASSERT_TRUE(
      startHyperd({"--source", "file://" + bare_, "--interval", "1s", "--drift-interval", "60s"})
          .isOk());
  // Applied, the builds done (they run past the reconcile that starts them) and then the VM
  // started, all 8 objects Ready. The VM boots under TCG: slow.
  auto allReady = [&] {
    if (!convergedTo("git:" + c1)) {
      return false;
    }
    Json s = status();
    return s["lastReconcile"].is_object() && s["lastReconcile"].value("inProgress", 1) == 0 &&
           s.value("objects", 0) == 8 && s.value("ready_objects", 0) == 8;
  };
  ASSERT_TRUE(eventually(kConverge * 8, allReady))
      << status().dump(1) << api("/v1/objects").dump(1) << readFile(runDir + "/web/console.log");
  // The VM's QEMU, by its pidfile: it runs unless it has exited or is a zombie not yet reaped.
  const std::string qemuPid = trimmed(readFile(runDir + "/web/qemu.pid"));
  auto qemuRuns = [&] {
    const std::string stat = readFile("/proc/" + qemuPid + "/stat");
    size_t paren = stat.rfind(')');
    return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
  };
  ASSERT_FALSE(qemuPid.empty()) << "no QEMU pidfile for VM/web under " << runDir;
  ASSERT_TRUE(qemuRuns()) << "no QEMU runs as " << qemuPid;

  auto browser =
      cdp::Browser::launch({"ip", "netns", "exec", ns_->name()}, tmp_->path() + "/chromium");
  if (!browser.isOk() && contains(browser.status().message(), "not installed")) {
    GTEST_SKIP() << browser.status().message();
  }
  ASSERT_TRUE(browser.isOk()) << browser.status().message();
  cdp::Browser& b = **browser;
  auto shot = [&](const std::string& name) {
    Status s = b.screenshot(shots + "/status-page-" + name + ".png");
    EXPECT_TRUE(s.isOk()) << s.message();
  };
  auto expectTrue = [&](const std::string& expression, const std::string& what) {
    Status s = b.waitFor(expression);
    EXPECT_TRUE(s.isOk()) << what << ": " << s.message();
    return s.isOk();
  };
  auto text = [&](const std::string& selector) {
    auto v = b.eval("(document.querySelector('" + selector + "') || {}).textContent || ''");
    return v.isOk() && v->is_string() ? v->get<std::string>() : std::string();
  };

  ASSERT_TRUE(b.navigate(url_ + "/").isOk());
  ASSERT_TRUE(expectTrue("!document.getElementById('login').hidden", "the login form shows"));
  EXPECT_TRUE(text("#app").find("lab") == std::string::npos) << "objects shown before signing in";

  // A wrong token: refused, nothing but the form.
  ASSERT_TRUE(b.type("#token", "not-the-token").isOk());
  ASSERT_TRUE(b.click("#login-form button").isOk());
  expectTrue("document.getElementById('login-error').textContent.includes('refused')",
             "a wrong token is refused");
  EXPECT_TRUE(b.eval("document.getElementById('app').hidden")->get<bool>());
  shot("refused");

  // The viewer token reads, and cannot act.
  const std::string viewer = trimmed(readFile(stateDir_ + "/viewer.token"));
  ASSERT_FALSE(viewer.empty());
  ASSERT_TRUE(b.type("#token", viewer).isOk());
  ASSERT_TRUE(b.click("#login-form button").isOk());
  expectTrue("document.querySelector('[data-id=\"Network/lab\"]')", "the viewer sees the tree");
  ASSERT_TRUE(b.click("#reconcile").isOk());
  expectTrue("document.getElementById('action-result').textContent.includes('Not allowed')",
             "the viewer token cannot reconcile");
  ASSERT_TRUE(b.click("#logout").isOk());
  expectTrue("!document.getElementById('login').hidden", "signed out");

  // The API token: the tree by references, with state words.
  ASSERT_TRUE(b.type("#token", token_).isOk());
  ASSERT_TRUE(b.click("#login-form button").isOk());
  expectTrue("document.querySelector('[data-id=\"Network/lab\"] [data-id=\"NetworkPolicy/web\"]')",
             "the policy sits under its network");
  expectTrue("document.getElementById('revision').textContent.includes('git:" + c1 + "')",
             "the applied revision is shown");
  expectTrue("document.getElementById('live').hidden === false", "events are followed live");
  EXPECT_TRUE(contains(text("[data-id=\"Network/edge\"]"), "Ready"));
  EXPECT_FALSE(contains(text("[data-id=\"Network/edge\"]"), "NetworkPolicy/web"));
  // The VM under each object it references: its network, its initrd's Build, its secret.
  for (const std::string parent : {"Network/lab", "Build/guest-initrd", "Secret/db"}) {
    expectTrue("document.querySelector('[data-id=\"" + parent + "\"] > ul > [data-id=\"VM/web\"]')",
               "VM/web sits under " + parent);
  }
  EXPECT_TRUE(contains(text("[data-id=\"Secret/db\"] > .node-head"), "Ready"))
      << text("[data-id=\"Secret/db\"]");
  EXPECT_TRUE(
      contains(text("[data-id=\"Network/lab\"] [data-id=\"VM/web\"] > .node-head"), "Ready"))
      << text("[data-id=\"Network/lab\"]");
  shot("tree");

  // A build's log on demand.
  ASSERT_TRUE(b.click("[data-id=\"Build/motd\"] > .node-head button").isOk());
  expectTrue(
      "!document.getElementById('log-panel').hidden && "
      "document.getElementById('log').textContent.includes('initramfs: 1 files')",
      "the build's log shows");
  EXPECT_TRUE(contains(text("#log-title"), "Log of Build/motd")) << text("#log-title");
  shot("log");
  ASSERT_TRUE(b.click("#log-close").isOk());

  // The VM's console on demand, from its node: the guest booted and said it was ready.
  ASSERT_TRUE(b.click("[data-id=\"VM/web\"] > .node-head button").isOk());
  expectTrue(
      "!document.getElementById('log-panel').hidden && "
      "document.getElementById('log').textContent.includes('hyper-ready')",
      "the VM's console shows");
  EXPECT_TRUE(contains(text("#log-title"), "Console of VM/web")) << text("#log-title");
  EXPECT_TRUE(
      contains(text("#log"), "hyper-secret db/password stored at /run/secrets/db/password (" +
                                 std::to_string(kCanary.size()) + " bytes, mode 0400)"))
      << text("#log");
  shot("console");
  // The secret's value is nowhere on the page: not in what it shows (the Secret's node, the
  // console), nor anywhere in its document, as it is or in base64.
  auto innerText = b.eval("document.body.innerText");
  auto html = b.eval("document.documentElement.outerHTML");
  ASSERT_TRUE(innerText.isOk() && innerText->is_string()) << innerText.status().message();
  ASSERT_TRUE(html.isOk() && html->is_string()) << html.status().message();
  EXPECT_TRUE(contains(innerText->get<std::string>(), "Secret")) << "the page shows no Secret";
  for (const std::string& form : {kCanary, encodeBase64(kCanary)}) {
    EXPECT_FALSE(contains(innerText->get<std::string>(), form)) << form << " shown on the page";
    EXPECT_FALSE(contains(html->get<std::string>(), form)) << form << " in the page's document";
  }
  ASSERT_TRUE(b.click("#log-close").isOk());

  // Suspend and resume from the page.
  ASSERT_TRUE(b.click("#suspend").isOk());
  expectTrue(
      "document.getElementById('state').textContent.includes('Suspended') && "
      "document.getElementById('suspend').textContent === 'Resume'",
      "suspended from the page");
  EXPECT_TRUE(status().value("suspended", false)) << status().dump(1);
  ASSERT_TRUE(b.click("#suspend").isOk());
  expectTrue(
      "!document.getElementById('state').textContent.includes('Suspended') && "
      "document.getElementById('suspend').textContent === 'Suspend'",
      "resumed from the page");
  EXPECT_FALSE(status().value("suspended", true)) << status().dump(1);

  // A hand change: the drift appears without a reload, with its difference.
  ASSERT_TRUE(b.eval("window.marker = 'same page'; true").isOk());
  ASSERT_TRUE(inNs({"ip", "link", "set", "hb-lab", "mtu", "1234"}).isOk());
  expectTrue(
      "document.querySelector('[data-id=\"Network/lab\"] > .node-head')"
      ".textContent.includes('Drifted')",
      "the drift shows live");
  EXPECT_TRUE(contains(text("[data-id=\"Network/lab\"] .drift"), "1234"))
      << text("[data-id=\"Network/lab\"]");
  EXPECT_EQ(b.eval("window.marker")->get<std::string>(), "same page") << "the page was reloaded";
  shot("drift");

  // The repair comes from git (the policy says correct now) and the drift goes.
  std::string c2 = commit({{"nets.yaml", docs({network("lab", "10.93.5.0/24", 1400),
                                               network("edge", "10.93.6.0/24", 1400), policy})}},
                          "lab: correct drift");
  push();
  expectTrue(
      "!document.querySelector('[data-id=\"Network/lab\"] > .node-head')"
      ".textContent.includes('Drifted') && document.getElementById('revision')"
      ".textContent.includes('git:" +
          c2 + "')",
      "the drift goes after the repair");
  EXPECT_EQ(mtu("hb-lab"), 1400);

  // A push deleting everything is held; approved from the page.
  fs::remove(work_ + "/nets.yaml");
  fs::remove(work_ + "/build.yaml");
  for (const char* file : {"guest.yaml", "db.yaml", "web.yaml"}) {
    fs::remove(work_ + "/" + file);
  }
  std::string c3 = commit({}, "remove everything");
  push();
  expectTrue(
      "!document.getElementById('approve').hidden && "
      "document.getElementById('held').textContent.includes('git:" +
          c3 + "')",
      "the held revision shows with its approve button");
  EXPECT_TRUE(contains(text("#held-deletes"),
                       "Build/guest-initrd, Build/guest-kernel, Build/motd, Network/edge, "
                       "Network/lab, NetworkPolicy/web, Secret/db, VM/web"))
      << text("#held");
  EXPECT_TRUE(qemuRuns()) << "QEMU " << qemuPid << " went before the approval";
  shot("held");
  ASSERT_TRUE(b.click("#approve").isOk());
  expectTrue(
      "document.getElementById('approve').hidden && "
      "!document.querySelector('[data-id=\"Network/lab\"]')",
      "approved: the objects go");
  EXPECT_TRUE(eventually(kConverge, [&] { return convergedTo("git:" + c3); })) << status().dump(1);
  EXPECT_FALSE(link("hb-lab").has_value());
  // The running VM went with them: no node, no QEMU, no run dir.
  EXPECT_TRUE(b.eval("!document.querySelector('[data-id=\"VM/web\"]')")->get<bool>());
  EXPECT_FALSE(qemuRuns()) << "QEMU " << qemuPid << " still runs";
  EXPECT_FALSE(fs::exists(runDir + "/web")) << runDir << "/web is still there";
  shot("approved");

  const auto& errors = b.consoleErrors();
  EXPECT_TRUE(errors.empty()) << "the page's JS logged errors:\n"
                              << [&] {
                                   std::string all;
                                   for (const auto& e : errors) {
                                     all += e + "\n";
                                   }
                                   return all;
                                 }();
}

// hyperd runs on the allocator it was built for: jemalloc, with its settings, unless the build
// turned it off (HYPER_JEMALLOC=OFF, or a sanitizer build). The bench measures what that is worth
// (hyper_net_apply_bench's memory per object); this catches a build that quietly drops it.
TEST_F(HyperdTest, RunsOnTheAllocatorItWasBuiltFor) {
  ASSERT_TRUE(tmp_->write("src/.keep", "").isOk());
  ASSERT_TRUE(startHyperd({"--source", tmp_->path() + "/src", "--drift-interval", "1h"}).isOk());
  const std::string maps = readFile("/proc/" + std::to_string(hyperd_->pid()) + "/maps");
  ASSERT_FALSE(maps.empty());
#ifdef HYPER_JEMALLOC
  EXPECT_TRUE(contains(maps, "libjemalloc.so")) << "hyperd does not map jemalloc";
  EXPECT_TRUE(contains(readFile(logPath_), "; malloc jemalloc")) << readFile(logPath_);
  // background_thread:true took effect: jemalloc's purging thread is one of hyperd's threads.
  bool purger = false;
  for (const auto& task :
       fs::directory_iterator("/proc/" + std::to_string(hyperd_->pid()) + "/task")) {
    purger = purger || trimmed(readFile(task.path().string() + "/comm")) == "jemalloc_bg_thd";
  }
  EXPECT_TRUE(purger) << "no jemalloc_bg_thd thread in hyperd";
#else
  EXPECT_FALSE(contains(maps, "libjemalloc.so"));
  EXPECT_TRUE(contains(readFile(logPath_), "; malloc glibc")) << readFile(logPath_);
#endif
}

}  // namespace
}  // namespace hyper
