#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "host/command.h"
#include "source/git_source.h"
#include "tests/integration/git_util.h"

// The git source over real ssh: OpenSSH's sshd on 127.0.0.1 (a free port), with a host key and a
// client key made by ssh-keygen in a temporary directory, serving a bare repository made with the
// git command line. Needs root (sshd logs in as root) and openssh-server (scripts/deps.sh).

namespace hyper::controller {
namespace {
namespace fs = std::filesystem;

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A port nobody listens on right now: bound to port 0, read back, released for sshd.
int freePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A listening socket on 127.0.0.1 that never accepts: a connection to it completes in the kernel
// and waits in its queue, so whether anyone connected is known at once, with no log to wait for.
class Tripwire {
 public:
  Tripwire() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~Tripwire() { close(fd_); }
  int port() const { return port_; }
  // Connections made so far (each is taken off the queue and closed).
  int connections() {
    int n = 0;
    for (int c; (c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; ++n) {
      close(c);
    }
    return n;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class GitSshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/sbin/sshd")) {
      GTEST_SKIP() << "/usr/sbin/sshd missing: run scripts/deps.sh (openssh-server)";
    }
    ASSERT_EQ(geteuid(), 0u) << "sshd must log in as root: run as root";
    std::string tmpl = (fs::temp_directory_path() / "hyper-gitssh-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    ssh_ = root_ + "/ssh";
    fs::create_directories(ssh_);
    // sshd's privilege separation directory; Debian's package creates it only when started as a
    // service. Left in place afterwards (it is empty and root's).
    std::error_code ec;
    fs::create_directories("/run/sshd", ec);

    keygen(ssh_ + "/host_ed25519");
    keygen(ssh_ + "/id_ed25519");
    keygen(ssh_ + "/stranger_ed25519");  // a client key that is not authorized
    keygen(ssh_ + "/impostor_host");     // a host key the server does not have
    fs::copy_file(ssh_ + "/id_ed25519.pub", ssh_ + "/authorized_keys");

    bare_ = root_ + "/repos/env.git";
    work_ = root_ + "/work";
    git({"init", "--quiet", "--bare", "-b", "main", bare_});
    git({"init", "--quiet", "-b", "main", work_});
    git({"-C", work_, "remote", "add", "origin", bare_});

    port_ = freePort();
    startSshd();
    url_ = "ssh://root@127.0.0.1:" + std::to_string(port_) + bare_;
    knownHosts_ = ssh_ + "/known_hosts";
    writeKnownHosts(knownHosts_, "[127.0.0.1]:" + std::to_string(port_), ssh_ + "/host_ed25519");
  }

  void TearDown() override {
    if (sshd_ > 0) {
      kill(sshd_, SIGTERM);
      int status = 0;
      waitpid(sshd_, &status, 0);
    }
    if (!root_.empty()) {
      std::error_code ec;
      fs::remove_all(root_, ec);
    }
  }

  void keygen(const std::string& path) {
    auto r = host::runChecked(
        {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hyper-test", "-f", path});
    ASSERT_TRUE(r.isOk()) << r.status().message();
  }

  // One line "NAME TYPE BASE64" from an OpenSSH public key file.
  static void writeKnownHosts(const std::string& file, const std::string& name,
                              const std::string& hostKey) {
    std::istringstream pub(readFile(hostKey + ".pub"));
    std::string type, key;
    pub >> type >> key;
    std::ofstream(file, std::ios::trunc) << "# test hosts\n"
                                         << name << " " << type << " " << key << "\n";
  }

  void startSshd() {
    const std::string config = ssh_ + "/sshd_config";
    std::ofstream(config) << "Port " << port_ << "\n"
                          << "ListenAddress 127.0.0.1\n"
                          << "HostKey " << ssh_ << "/host_ed25519\n"
                          << "PidFile " << ssh_ << "/sshd.pid\n"
                          << "AuthorizedKeysFile " << ssh_ << "/authorized_keys\n"
                          << "StrictModes no\n"
                          << "UsePAM no\n"
                          << "PermitRootLogin prohibit-password\n"
                          << "PasswordAuthentication no\n"
                          << "KbdInteractiveAuthentication no\n"
                          << "LogLevel VERBOSE\n";
    sshdLog_ = ssh_ + "/sshd.log";
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int log = ::open(sshdLog_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(log, 1);
      dup2(log, 2);
      execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-f", config.c_str(), "-D", "-e", nullptr);
      _exit(127);
    }
    sshd_ = pid;
    // Wait until it listens (or died): startup, not a measured time. sshd says so after listen();
    // a probe connection instead would leave a "Connection from" line that sshd's child writes
    // some time later, into the log that tests read.
    for (int i = 0; i < 200; ++i) {
      int status = 0;
      if (waitpid(sshd_, &status, WNOHANG) == sshd_) {
        sshd_ = -1;
        FAIL() << "sshd exited at startup:\n" << readFile(sshdLog_);
      }
      if (readFile(sshdLog_).find("Server listening on 127.0.0.1 port " + std::to_string(port_)) !=
          std::string::npos) {
        return;
      }
      usleep(50 * 1000);
    }
    FAIL() << "sshd does not listen on 127.0.0.1:" << port_ << ":\n" << readFile(sshdLog_);
  }

  void git(const std::vector<std::string>& args) { test::runGit(args); }
  void commitAndPush(const std::string& path, const std::string& content) {
    test::commitAndPush(work_, path, content);
  }

  SourceSpec spec(const std::string& key, const std::string& knownHosts) {
    SourceSpec s{url_, "main", "", root_ + "/cache-" + std::to_string(++n_),
                 std::chrono::seconds(10)};
    s.sshKeyFile = key;
    s.knownHostsFile = knownHosts;
    return s;
  }

  std::unique_ptr<GitSource> open(const SourceSpec& s) {
    auto src = GitSource::open(s);
    EXPECT_TRUE(src.isOk()) << src.status().message();
    return src.isOk() ? std::move(src).value() : nullptr;
  }

  // No private key text in a message (each key file's base64 body, line by line).
  void expectNoKeyMaterial(const std::string& message) {
    for (const char* name : {"/id_ed25519", "/stranger_ed25519", "/host_ed25519"}) {
      std::istringstream key(readFile(ssh_ + name));
      for (std::string line; std::getline(key, line);) {
        if (line.size() > 20 && line.find("PRIVATE KEY") == std::string::npos) {
          EXPECT_EQ(message.find(line), std::string::npos) << message;
        }
      }
    }
  }

  std::string root_, ssh_, bare_, work_, url_, knownHosts_, sshdLog_;
  int port_ = 0;
  pid_t sshd_ = -1;
  int n_ = 0;
};

TEST_F(GitSshTest, FetchesWithAKeyFileAndFollowsPushes) {
  commitAndPush("a.yaml", test::networkManifest("a", "10.1.0.0/24"));
  auto src = open(spec(ssh_ + "/id_ed25519", knownHosts_));
  ASSERT_TRUE(src);
  EXPECT_EQ(src->describe(), "git ssh://127.0.0.1:" + std::to_string(port_) + bare_ + " ref main");

  test::expectFetchesAndFollowsAPush(*src, work_);
  if (HasFatalFailure()) {
    FAIL() << "sshd:\n" << readFile(sshdLog_);
  }
  // It really went through sshd, with the key.
  EXPECT_NE(readFile(sshdLog_).find("Accepted publickey for root"), std::string::npos)
      << readFile(sshdLog_);
}

TEST_F(GitSshTest, AnSshRemoteThatNeverAnswersTimesOut) {
  // Accepts the connection and never sends its banner: libssh2 alone would wait forever.
  test::SilentListener silent(16);
  const std::string where = "127.0.0.1:" + std::to_string(silent.port());
  SourceSpec s = spec(ssh_ + "/id_ed25519", knownHosts_);
  s.location = "ssh://git@" + where + bare_;
  s.timeout = std::chrono::milliseconds(700);
  auto src = open(s);
  ASSERT_TRUE(src);
  auto started = std::chrono::steady_clock::now();
  auto r = src->fetch();
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("no data from " + where + " for 700ms (network timeout)"),
            std::string::npos)
      << r.status().message();
  // Not a timing assertion: a bound against the hang this test is about.
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(60));

  // The next operation on a healthy remote carries no stale note.
  auto good = open(spec(ssh_ + "/id_ed25519", knownHosts_));
  ASSERT_TRUE(good);
  commitAndPush("a.yaml", test::networkManifest("a", "10.1.0.0/24"));
  auto fetched = good->fetch();
  ASSERT_TRUE(fetched.isOk()) << fetched.status().message();
}

TEST_F(GitSshTest, HashedKnownHostsAreUnderstood) {
  commitAndPush("a.yaml", test::networkManifest("a", "10.1.0.0/24"));
  // ssh-keygen -H rewrites every name as |1|salt|HMAC-SHA1, as HashKnownHosts does.
  auto hashed = host::runChecked({"ssh-keygen", "-q", "-H", "-f", knownHosts_});
  ASSERT_TRUE(hashed.isOk()) << hashed.status().message();
  ASSERT_NE(readFile(knownHosts_).find("|1|"), std::string::npos) << readFile(knownHosts_);
  ASSERT_EQ(readFile(knownHosts_).find("127.0.0.1"), std::string::npos);
  auto src = open(spec(ssh_ + "/id_ed25519", knownHosts_));
  ASSERT_TRUE(src);
  auto snap = src->fetch();
  ASSERT_TRUE(snap.isOk()) << snap.status().message();
  EXPECT_EQ(snap->files.size(), 1u);
}

TEST_F(GitSshTest, AnUnknownHostKeyFailsBeforeAnyCredentialIsSent) {
  commitAndPush("a.yaml", test::networkManifest("a", "10.1.0.0/24"));
  const std::string wrong = ssh_ + "/known_hosts.wrong";
  writeKnownHosts(wrong, "[127.0.0.1]:" + std::to_string(port_), ssh_ + "/impostor_host");
  auto src = open(spec(ssh_ + "/id_ed25519", wrong));
  ASSERT_TRUE(src);
  auto r = src->fetch();
  ASSERT_FALSE(r.isOk());
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find("host key verification failed: the ssh-ed25519 host key [127.0.0.1]:" +
                     std::to_string(port_) + " presented (SHA256:"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("matches none of the keys " + wrong + " lists for it (ssh-ed25519)"),
            std::string::npos)
      << msg;
  expectNoKeyMaterial(msg);
  auto changed = src->changed();
  EXPECT_TRUE(changed.isOk() && *changed);  // nothing was fetched, so nothing is known
  EXPECT_FALSE(fs::exists(root_ + "/cache-1/refs/heads/main"));
  EXPECT_EQ(readFile(sshdLog_).find("Accepted publickey"), std::string::npos) << readFile(sshdLog_);

  // The right key listed under the port-22 name does not vouch for another port.
  const std::string port22 = ssh_ + "/known_hosts.port22";
  writeKnownHosts(port22, "127.0.0.1", ssh_ + "/host_ed25519");
  auto other = open(spec(ssh_ + "/id_ed25519", port22));
  ASSERT_TRUE(other);
  auto r22 = other->fetch();
  ASSERT_FALSE(r22.isOk());
  EXPECT_NE(r22.status().message().find("[127.0.0.1]:" + std::to_string(port_) +
                                        " is not listed in " + port22),
            std::string::npos)
      << r22.status().message();
}

TEST_F(GitSshTest, SshWithoutKnownHostsIsRefused) {
  // Refused before any connection: the URL points at a tripwire, whose queue says whether anyone
  // connected (sshd's log would say so only once its child got round to writing it).
  Tripwire tripwire;
  SourceSpec s = spec(ssh_ + "/id_ed25519", "");
  s.location = "ssh://root@127.0.0.1:" + std::to_string(tripwire.port()) + bare_;
  auto r = GitSource::open(s);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("set source.knownHostsFile (--source-known-hosts)"),
            std::string::npos)
      << r.status().message();
  // scp-like URLs are ssh as well.
  SourceSpec scp = spec("", "");
  scp.location = "root@127.0.0.1:" + bare_;
  auto r2 = GitSource::open(scp);
  ASSERT_FALSE(r2.isOk());
  EXPECT_NE(r2.status().message().find("source.knownHostsFile"), std::string::npos)
      << r2.status().message();
  EXPECT_EQ(tripwire.connections(), 0) << "GitSource::open connected without a known_hosts file";
}

TEST_F(GitSshTest, AKeyNotInAuthorizedKeysIsAnAuthenticationError) {
  commitAndPush("a.yaml", test::networkManifest("a", "10.1.0.0/24"));
  auto src = open(spec(ssh_ + "/stranger_ed25519", knownHosts_));
  ASSERT_TRUE(src);
  auto r = src->fetch();
  ASSERT_FALSE(r.isOk());
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find("ssh authentication as root failed: the server refused key " + ssh_ +
                     "/stranger_ed25519"),
            std::string::npos)
      << msg;
  expectNoKeyMaterial(msg);
  EXPECT_EQ(readFile(sshdLog_).find("Accepted publickey"), std::string::npos);
}

TEST_F(GitSshTest, AKeyFileThatIsTooOpenOrMissingIsAnOpenError) {
  const std::string key = ssh_ + "/id_ed25519";
  ASSERT_EQ(chmod(key.c_str(), 0644), 0);
  auto open644 = GitSource::open(spec(key, knownHosts_));
  ASSERT_FALSE(open644.isOk());
  EXPECT_NE(open644.status().message().find("ssh key <- read secret file " + key +
                                            " <- it has mode 0644"),
            std::string::npos)
      << open644.status().message();
  expectNoKeyMaterial(open644.status().message());

  auto missing = GitSource::open(spec(ssh_ + "/nope", knownHosts_));
  ASSERT_FALSE(missing.isOk());
  EXPECT_NE(missing.status().message().find(ssh_ + "/nope <- No such file or directory"),
            std::string::npos)
      << missing.status().message();

  auto noHosts = GitSource::open(spec("", ssh_ + "/no_known_hosts"));
  ASSERT_FALSE(noHosts.isOk());
  EXPECT_NE(noHosts.status().message().find("read known_hosts file " + ssh_ + "/no_known_hosts"),
            std::string::npos)
      << noHosts.status().message();
}

}  // namespace
}  // namespace hyper::controller
