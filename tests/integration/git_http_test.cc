#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "host/command.h"
#include "source/git_source.h"
#include "tests/integration/git_util.h"

// The git source over real smart HTTP: `git http-backend` (git's own CGI server) behind a
// cpp-httplib server on 127.0.0.1, port 0, that demands HTTP basic authentication. And remotes that
// never answer: hyperd's loop must get an error within the source timeout, not hang.

namespace hyper::controller {
namespace {
namespace fs = std::filesystem;

const char* kUser = "hyper";
const char* kPassword = "s3cret-pw";

std::string base64(const std::string& in) {
  std::string out(sodium_base64_encoded_len(in.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(in.data()),
                    in.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

// Serves the bare repositories under `root` read-only over smart HTTP, behind basic auth; over
// TLS when given a certificate and key.
class GitHttpServer {
 public:
  explicit GitHttpServer(std::string root, const std::string& cert = "",
                         const std::string& key = "")
      : root_(std::move(root)),
        server_(cert.empty() ? std::make_unique<httplib::Server>()
                             : std::make_unique<httplib::SSLServer>(cert.c_str(), key.c_str())) {
    EXPECT_TRUE(server_->is_valid());
    auto handler = [this](const httplib::Request& req, httplib::Response& res) { serve(req, res); };
    server_->Get(R"(/.*)", handler);
    server_->Post(R"(/.*)", handler);
    port_ = server_->bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
  }
  ~GitHttpServer() {
    server_->stop();
    thread_.join();
  }
  int port() const { return port_; }
  int requests() const { return requests_.load(); }

 private:
  void serve(const httplib::Request& req, httplib::Response& res) {
    ++requests_;
    if (req.get_header_value("Authorization") !=
        "Basic " + base64(std::string(kUser) + ":" + kPassword)) {
      res.status = 401;
      res.set_header("WWW-Authenticate", "Basic realm=\"git\"");
      return;
    }
    std::string query;
    for (const auto& [k, v] : req.params) {
      query += (query.empty() ? "" : "&") + k + "=" + v;
    }
    std::vector<std::string> argv = {"env",
                                     "GIT_PROJECT_ROOT=" + root_,
                                     "GIT_HTTP_EXPORT_ALL=1",
                                     "REQUEST_METHOD=" + req.method,
                                     "PATH_INFO=" + req.path,
                                     "QUERY_STRING=" + query,
                                     "REMOTE_USER=" + std::string(kUser),
                                     "REMOTE_ADDR=127.0.0.1",
                                     "CONTENT_TYPE=" + req.get_header_value("Content-Type"),
                                     "CONTENT_LENGTH=" + std::to_string(req.body.size())};
    if (req.has_header("Content-Encoding")) {
      argv.push_back("HTTP_CONTENT_ENCODING=" + req.get_header_value("Content-Encoding"));
    }
    argv.insert(argv.end(), {"git", "http-backend"});
    auto out = host::runCommand(argv, req.body);
    if (!out.isOk() || out->exitCode != 0) {
      res.status = 500;
      return;
    }
    // CGI output: headers, a blank line, the body.
    const std::string& o = out->out;
    size_t end = o.find("\r\n\r\n");
    size_t skip = 4;
    if (end == std::string::npos) {
      end = o.find("\n\n");
      skip = 2;
    }
    if (end == std::string::npos) {
      res.status = 500;
      return;
    }
    std::string contentType = "application/octet-stream";
    std::istringstream headers(o.substr(0, end));
    for (std::string line; std::getline(headers, line);) {
      if (!line.empty() && line.back() == '\r') {
        line.pop_back();
      }
      size_t colon = line.find(':');
      if (colon == std::string::npos) {
        continue;
      }
      std::string name = line.substr(0, colon);
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      if (name == "Status") {
        res.status = std::stoi(value);
      } else if (name == "Content-Type") {
        contentType = value;
      } else {
        res.set_header(name, value);
      }
    }
    res.set_content(o.substr(end + skip), contentType);
  }

  std::string root_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> requests_{0};
};

class GitHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GE(sodium_init(), 0);
    std::string tmpl = (fs::temp_directory_path() / "hyper-githttp-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    work_ = root_ + "/work";
    git({"init", "--quiet", "--bare", "-b", "main", root_ + "/repos/env.git"});
    git({"init", "--quiet", "-b", "main", work_});
    git({"-C", work_, "remote", "add", "origin", root_ + "/repos/env.git"});
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  void git(const std::vector<std::string>& args) { test::runGit(args); }
  void commitAndPush(const std::string& path, const std::string& content) {
    test::commitAndPush(work_, path, content);
  }

  std::unique_ptr<GitSource> open(const std::string& url, std::chrono::milliseconds timeout) {
    SourceSpec spec{url, "main", "", root_ + "/cache-" + std::to_string(++n_), timeout};
    auto src = GitSource::open(spec);
    EXPECT_TRUE(src.isOk()) << src.status().message();
    return src.isOk() ? std::move(src).value() : nullptr;
  }

  std::string root_, work_;
  int n_ = 0;
};

TEST_F(GitHttpTest, FetchesOverSmartHttpWithCredentialsFromTheUrl) {
  commitAndPush("a.yaml", test::networkManifest("a", "10.1.0.0/24"));
  GitHttpServer server(root_ + "/repos");
  std::string url = "http://" + std::string(kUser) + ":" + kPassword +
                    "@127.0.0.1:" + std::to_string(server.port()) + "/env.git";
  auto src = open(url, std::chrono::seconds(10));
  ASSERT_TRUE(src);
  EXPECT_EQ(src->describe(),
            "git http://127.0.0.1:" + std::to_string(server.port()) + "/env.git ref main");

  test::expectFetchesAndFollowsAPush(*src, work_);
  EXPECT_GT(server.requests(), 0);
}

// Every file under `dir` that contains `needle`: the cache must hold no credential.
std::vector<std::string> filesContaining(const std::string& dir, const std::string& needle) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) {
      continue;
    }
    std::ifstream in(e.path(), std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.find(needle) != std::string::npos) {
      out.push_back(e.path().string());
    }
  }
  return out;
}

// Credentials from a file (--source-credentials-file) instead of the URL: owner-only mode, one
// line user:token; the token never shows in describe(), errors or the cache.
TEST_F(GitHttpTest, CredentialsFromAFileWithOwnerOnlyMode) {
  commitAndPush("a.yaml", test::networkManifest("a", "10.1.0.0/24"));
  GitHttpServer server(root_ + "/repos");
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/env.git";
  const std::string file = root_ + "/git-credentials";
  std::ofstream(file) << kUser << ":" << kPassword << "\n";
  SourceSpec spec{url, "main", "", root_ + "/cache-file", std::chrono::seconds(10)};
  spec.credentialsFile = file;

  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  auto open644 = GitSource::open(spec);
  ASSERT_FALSE(open644.isOk()) << "a credentials file readable by others was accepted";
  EXPECT_NE(open644.status().message().find("read git credentials <- read secret file " + file +
                                            " <- it has mode 0644"),
            std::string::npos)
      << open644.status().message();
  EXPECT_EQ(open644.status().message().find(kPassword), std::string::npos);

  ASSERT_EQ(::chmod(file.c_str(), 0600), 0);
  auto src = GitSource::open(spec);
  ASSERT_TRUE(src.isOk()) << src.status().message();
  EXPECT_EQ((*src)->describe(), "git " + url + " ref main");
  test::expectFetchesAndFollowsAPush(**src, work_);
  EXPECT_EQ(filesContaining(root_ + "/cache-file", kPassword), std::vector<std::string>{});

  // One byte off: refused by the server, and the wrong token is scrubbed from the error.
  std::ofstream(file, std::ios::trunc) << kUser << ":" << kPassword << "X\n";
  auto r = (*src)->fetch();
  ASSERT_FALSE(r.isOk()) << "a fetch with a wrong token from the file succeeded";
  EXPECT_EQ(r.status().message().find(kPassword), std::string::npos) << r.status().message();

  // No colon: a format error that names the file and never echoes the content.
  std::ofstream(file, std::ios::trunc) << "just-a-token-value\n";
  spec.cacheDir = root_ + "/cache-file2";
  auto bad = GitSource::open(spec);
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("no ':' between user and token (expected one line "
                                        "\"user:token\")"),
            std::string::npos)
      << bad.status().message();
  EXPECT_EQ(bad.status().message().find("just-a-token-value"), std::string::npos);
}

TEST_F(GitHttpTest, AWrongPasswordIsAnAuthenticationErrorThatNeverShowsIt) {
  commitAndPush("a.yaml", test::networkManifest("a", "10.1.0.0/24"));
  GitHttpServer server(root_ + "/repos");
  std::string url =
      "http://hyper:not-the-password@127.0.0.1:" + std::to_string(server.port()) + "/env.git";
  auto src = open(url, std::chrono::seconds(10));
  ASSERT_TRUE(src);
  auto r = src->fetch();
  ASSERT_FALSE(r.isOk());
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find("authentication"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("not-the-password"), std::string::npos) << msg;
}

TEST_F(GitHttpTest, HttpsWithAPrivateCaNeedsTheCaFile) {
  commitAndPush("a.yaml", test::networkManifest("a", "10.1.0.0/24"));
  // A CA and a server certificate for localhost, made here (libgit2 1.5 matches host names, not
  // IP addresses, against a certificate).
  const std::string d = root_ + "/tls";
  fs::create_directories(d);
  auto run = [](std::vector<std::string> argv) {
    auto r = host::runChecked(argv);
    ASSERT_TRUE(r.isOk()) << r.status().message();
  };
  run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
       "/CN=hyper test CA", "-keyout", d + "/ca.key", "-out", d + "/ca.pem"});
  run({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
       d + "/server.key", "-out", d + "/server.csr"});
  std::ofstream(d + "/ext.cnf") << "subjectAltName=DNS:localhost\n";
  run({"openssl", "x509", "-req", "-in", d + "/server.csr", "-CA", d + "/ca.pem", "-CAkey",
       d + "/ca.key", "-CAcreateserial", "-days", "2", "-extfile", d + "/ext.cnf", "-out",
       d + "/server.pem"});
  GitHttpServer server(root_ + "/repos", d + "/server.pem", d + "/server.key");
  std::string url = "https://" + std::string(kUser) + ":" + kPassword +
                    "@localhost:" + std::to_string(server.port()) + "/env.git";

  // Not trusted without the CA.
  auto untrusted = open(url, std::chrono::seconds(10));
  ASSERT_TRUE(untrusted);
  auto r = untrusted->fetch();
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("certificate"), std::string::npos) << r.status().message();
  EXPECT_EQ(r.status().message().find(kPassword), std::string::npos) << r.status().message();

  SourceSpec spec{url, "main", "", root_ + "/cache-ca", std::chrono::seconds(10), d + "/ca.pem"};
  auto trusted = GitSource::open(spec);
  ASSERT_TRUE(trusted.isOk()) << trusted.status().message();
  auto snap = (*trusted)->fetch();
  ASSERT_TRUE(snap.isOk()) << snap.status().message();
  ASSERT_EQ(snap->files.size(), 1u);
  EXPECT_EQ(snap->files[0].path, "a.yaml");

  spec.caFile = d + "/missing.pem";
  auto missing = GitSource::open(spec);
  ASSERT_FALSE(missing.isOk());
  EXPECT_NE(missing.status().message().find("CA file " + d + "/missing.pem does not exist"),
            std::string::npos)
      << missing.status().message();
}

TEST_F(GitHttpTest, ARemoteThatNeverAnswersTimesOut) {
  test::SilentListener silent(16);
  auto src = open("http://127.0.0.1:" + std::to_string(silent.port()) + "/env.git",
                  std::chrono::milliseconds(700));
  ASSERT_TRUE(src);
  auto r = src->fetch();
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("no data from 127.0.0.1:" + std::to_string(silent.port()) +
                                      " for 700ms (network timeout)"),
            std::string::npos)
      << r.status().message();
}

TEST_F(GitHttpTest, AHostThatDropsConnectionsTimesOutConnecting) {
  test::SilentListener full(0);
  full.fillQueue();  // the kernel now drops SYNs to this port, as a firewall that drops would
  auto src = open("http://127.0.0.1:" + std::to_string(full.port()) + "/env.git",
                  std::chrono::milliseconds(700));
  ASSERT_TRUE(src);
  auto r = src->fetch();
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("connect to 127.0.0.1:" + std::to_string(full.port()) +
                                      " timed out after 700ms"),
            std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace hyper::controller
