// hyperd's API (hyperd/api.h, hyperd/http_server.h) under hostile clients: a real server
// on port 0, a controller over the fake provider and source, and raw sockets that frame requests
// the way an attacker would (chunked, compressed, without a length, a byte at a time).

#include "hyperd/api.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "controller/client.h"
#include "host/command.h"
#include "hyperd/loop.h"
#include "hyperd/webhook_auth.h"
#include "tests/fakes/fake_provider.h"
#include "tests/fakes/fake_source.h"
#include "tests/fakes/loop_world.h"

namespace hyper::controller {
namespace {

using hyper::testing::FakeProvider;
using hyper::testing::FakeSource;
using SteadyClock = std::chrono::steady_clock;

constexpr char kToken[] = "api-test-token";
constexpr char kGithubSecret[] = "api-test-webhook-secret";
// Generous: a deadline that only a broken server reaches. No test asserts how fast anything is.
constexpr auto kGenerous = std::chrono::seconds(60);

// Produces a body piece by piece: fills `buf` (at most `cap` bytes) and returns how many; 0 at
// the end. Lets a test send hundreds of megabytes without holding them.
using BodySource = std::function<size_t(char* buf, size_t cap)>;

BodySource fixedBody(std::string body) {
  auto rest = std::make_shared<std::string>(std::move(body));
  auto off = std::make_shared<size_t>(0);
  return [rest, off](char* buf, size_t cap) {
    size_t n = std::min(cap, rest->size() - *off);
    std::memcpy(buf, rest->data() + *off, n);
    *off += n;
    return n;
  };
}

// `total` bytes of 'x' in chunks of 64 KiB, in chunked transfer coding, then the last chunk.
BodySource chunkedBody(uint64_t total) {
  auto sent = std::make_shared<uint64_t>(0);
  auto done = std::make_shared<bool>(false);
  return [total, sent, done](char* buf, size_t cap) -> size_t {
    constexpr size_t kChunk = 64 * 1024;
    if (*done) {
      return 0;
    }
    if (*sent >= total) {
      *done = true;
      std::memcpy(buf, "0\r\n\r\n", 5);
      return 5;
    }
    std::string head = "10000\r\n";  // 64 KiB in hex
    if (cap < head.size() + kChunk + 2) {
      return 0;
    }
    std::memcpy(buf, head.data(), head.size());
    std::memset(buf + head.size(), 'x', kChunk);
    std::memcpy(buf + head.size() + kChunk, "\r\n", 2);
    *sent += kChunk;
    return head.size() + kChunk + 2;
  };
}

// A gzip stream of `inflated` zero bytes (a compression bomb: about a thousandth of its size).
std::string gzipOfZeros(size_t inflated) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string zeros(1 << 20, '\0');
  std::string out;
  char buf[65536];
  size_t left = inflated;
  int flush = Z_NO_FLUSH;
  while (flush != Z_FINISH) {
    size_t n = std::min(left, zeros.size());
    left -= n;
    flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
    z.next_in = reinterpret_cast<Bytef*>(zeros.data());
    z.avail_in = static_cast<uInt>(n);
    do {
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      deflate(&z, flush);
      out.append(buf, sizeof buf - z.avail_out);
    } while (z.avail_out == 0);
  }
  deflateEnd(&z);
  return out;
}

// A client on a raw TCP socket, so that a test can frame a request as a hostile client would.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  int localPort() const {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
  }

  bool send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Sends `head`, then the body, and stops sending as soon as the server answers or closes: a
  // server that refuses early must be seen to do so. Returns the answer (see readAnswer).
  std::string exchange(const std::string& head, const BodySource& body) {
    if (!send(head)) {
      return readAnswer();
    }
    std::vector<char> buf(256 * 1024);
    size_t len = 0;
    size_t off = 0;
    auto deadline = SteadyClock::now() + kGenerous;
    while (SteadyClock::now() < deadline) {
      if (off == len) {
        len = body ? body(buf.data(), buf.size()) : 0;
        off = 0;
        if (len == 0) {
          break;
        }
      }
      pollfd p{fd_, POLLIN | POLLOUT, 0};
      if (::poll(&p, 1, 1000) <= 0) {
        continue;
      }
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        break;  // an answer (or a close) before the body was all sent
      }
      ssize_t n = ::send(fd_, buf.data() + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        break;
      }
      off += n > 0 ? static_cast<size_t>(n) : 0;
    }
    return readAnswer();
  }

  // The response's head and, when it has a Content-Length, its body; what arrived when the
  // server closed; or "" when nothing came within the deadline.
  std::string readAnswer() {
    std::string got;
    auto deadline = SteadyClock::now() + kGenerous;
    while (SteadyClock::now() < deadline) {
      size_t headEnd = got.find("\r\n\r\n");
      if (headEnd != std::string::npos) {
        size_t want = 0;
        size_t cl = got.find("Content-Length: ");
        if (cl != std::string::npos && cl < headEnd) {
          want = std::stoul(got.substr(cl + 16));
        }
        if (got.size() >= headEnd + 4 + want) {
          return got;
        }
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 1000) <= 0) {
        continue;
      }
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        return got;
      }
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }

  // The head of a response only (an event stream's body never ends).
  std::string readHead() {
    std::string got;
    auto deadline = SteadyClock::now() + kGenerous;
    while (got.find("\r\n\r\n") == std::string::npos && SteadyClock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 1000) <= 0) {
        continue;
      }
      char c;
      if (::recv(fd_, &c, 1, 0) != 1) {
        break;
      }
      got += c;
    }
    return got;
  }

  // True once the server has closed the connection (what it sent before is dropped).
  bool closedByServer() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) {
      return false;
    }
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

int statusOf(const std::string& answer) {
  if (answer.rfind("HTTP/1.1 ", 0) != 0 || answer.size() < 12) {
    return -1;
  }
  return std::atoi(answer.substr(9, 3).c_str());
}

std::string signature(const std::string& body) {
  return "sha256=" + hmacSha256Hex(kGithubSecret, body);
}

// A push payload of exactly `size` bytes (JSON, padded).
std::string pushPayload(size_t size) {
  std::string body = R"({"ref":"refs/heads/main","pad":")";
  const std::string tail = "\"}";
  body.append(size - body.size() - tail.size(), 'p');
  return body + tail;
}

// /proc/self/status field in bytes (VmRSS, VmHWM).
uint64_t procStatusBytes(const std::string& field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::stoull(line.substr(field.size() + 1)) * 1024;
    }
  }
  ADD_FAILURE() << field << " not in /proc/self/status";
  return 0;
}

// Peak resident memory from here on is measured against the resident memory now.
class PeakMemory {
 public:
  PeakMemory() {
    std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to VmRSS
    base_ = procStatusBytes("VmRSS");
  }
  uint64_t rise() const {
    uint64_t hwm = procStatusBytes("VmHWM");
    return hwm > base_ ? hwm - base_ : 0;
  }

 private:
  uint64_t base_ = 0;
};

constexpr uint64_t kMiB = 1 << 20;

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto world = test::LoopWorld::create("api-test", {"FakeThing"});
    ASSERT_TRUE(world.isOk()) << world.status().message();
    world_ = std::move(*world);
    dir_ = world_->dir();
    engine_ = &world_->engine();
    inventory_ = &world_->inventory();
    events_ = &world_->events();
    controller_ = std::make_unique<Controller>(*engine_, *inventory_, *events_, source_, sink_,
                                               metrics_, LoopOptions{});
  }
  void TearDown() override {
    if (events_) {
      events_->close();  // event streams end at once
    }
    api_.reset();
    controller_.reset();
  }

  static ApiOptions defaults() {
    ApiOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.token = kToken;
    o.githubSecret = kGithubSecret;
    return o;
  }
  void start(ApiOptions options = defaults()) {
    api_ = std::make_unique<ApiServer>(*controller_, *events_, metrics_, std::move(options));
    Status s = api_->start();
    ASSERT_TRUE(s.isOk()) << s.message();
  }
  int port() const { return api_->port(); }

  std::string get(const std::string& path) {
    RawClient c(port());
    return c.exchange("GET " + path + " HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " +
                          std::string(kToken) + "\r\n\r\n",
                      nullptr);
  }
  std::string signedWebhook() {
    std::string body = pushPayload(200);
    RawClient c(port());
    return c.exchange(
        "POST /v1/hooks/git HTTP/1.1\r\nHost: t\r\nContent-Type: "
        "application/json\r\nX-Hub-Signature-256: " +
            signature(body) + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n",
        fixedBody(body));
  }

  std::unique_ptr<test::LoopWorld> world_;  // outlives the controller (declared first)
  std::string dir_;
  Engine* engine_ = nullptr;
  Inventory* inventory_ = nullptr;
  EventLog* events_ = nullptr;
  FakeSource source_;
  struct NullSink : AlertSink {
    void send(const Alert&) override {}
  } sink_;
  Metrics metrics_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<ApiServer> api_;
};

// --- Request bodies: refused from their headers, before they are read -------------------------

struct BodyCase {
  std::string name;
  std::string method;
  std::string path;
  bool token;             // Authorization: Bearer <token>
  bool sign;              // X-Hub-Signature-256 over the body
  std::string framing;    // extra header lines (Content-Length, Transfer-Encoding, ...)
  std::string body;       // sent after the head unless the server answers first
  int expected;           // status
  std::string answerHas;  // a part of the answer
};

std::string lengthOf(size_t n) { return "Content-Length: " + std::to_string(n) + "\r\n"; }

std::vector<BodyCase> bodyCases() {
  const std::string atCap = pushPayload(1 << 20);
  const std::string overCap = pushPayload((1 << 20) + 1);
  const std::string small = pushPayload(200);
  const std::string plan = R"({"files": []})";
  std::string chunked = "c8\r\n" + small + "\r\n0\r\n\r\n";
  return {
      // The webhook's cap (1 MiB), exactly and one byte over.
      {"WebhookAtCapIsAccepted", "POST", "/v1/hooks/git", false, true, lengthOf(atCap.size()),
       atCap, 202, "accepted"},
      {"WebhookOneByteOverCapIsRefused", "POST", "/v1/hooks/git", false, true,
       lengthOf(overCap.size()), overCap, 413, "1048577 bytes is over the limit of 1048576"},
      // Unauthenticated: 401 from the headers; the 300 MB it announces is never read.
      {"UnsignedWebhookIsRefusedBeforeItsBody", "POST", "/v1/hooks/git", false, false,
       lengthOf(300 * kMiB), "", 401, "missing or bad signature"},
      {"ChunkedBodyIsRefused", "POST", "/v1/hooks/git", false, true,
       "Transfer-Encoding: chunked\r\n", chunked, 411, "Content-Length"},
      {"BodyWithoutLengthIsRefused", "POST", "/v1/hooks/git", false, true, "", small, 411,
       "Content-Length header is required"},
      {"GzipBodyIsRefused", "POST", "/v1/hooks/git", false, true,
       "Content-Encoding: gzip\r\n" + lengthOf(small.size()), small, 415, "uncompressed"},
      {"UpperCaseGzipBodyIsRefused", "POST", "/v1/hooks/git", false, true,
       "Content-Encoding: GZIP\r\n" + lengthOf(small.size()), small, 415, "uncompressed"},
      {"BrotliBodyIsRefused", "POST", "/v1/hooks/git", false, true,
       "Content-Encoding: br\r\n" + lengthOf(small.size()), small, 415, "\\\"br\\\""},
      {"IdentityEncodingIsAccepted", "POST", "/v1/hooks/git", false, true,
       "Content-Encoding: identity\r\n" + lengthOf(small.size()), small, 202, "accepted"},
      {"SecondEncodingHeaderIsSeen", "POST", "/v1/hooks/git", false, true,
       "Content-Encoding: identity\r\nContent-Encoding: gzip\r\n" + lengthOf(small.size()), small,
       415, "uncompressed"},
      {"TwoLengthsAreRefused", "POST", "/v1/hooks/git", false, true,
       lengthOf(small.size()) + lengthOf(small.size()), small, 400, "more than one"},
      {"SignedLengthIsRefused", "POST", "/v1/hooks/git", false, true, "Content-Length: +200\r\n",
       small, 400, "decimal"},
      // /v1/plan has its own, larger cap (32 MiB); other routes 64 KiB.
      {"PlanOverCapIsRefused", "POST", "/v1/plan", true, false, lengthOf((32 << 20) + 1), "", 413,
       "33554433 bytes is over the limit of 33554432"},
      {"PlanWithinCapIsServed", "POST", "/v1/plan", true, false, lengthOf(plan.size()), plan, 200,
       "\"ok\""},
      {"PlanWithoutTokenIsRefusedBeforeItsBody", "POST", "/v1/plan", false, false,
       lengthOf(300 * kMiB), "", 401, "bearer token"},
      {"OtherRouteOverItsCapIsRefused", "POST", "/v1/suspend", true, false,
       lengthOf((64 << 10) + 1), "", 413, "65537 bytes"},
      {"OtherRouteAtItsCapIsServed", "POST", "/v1/suspend", true, false, lengthOf(64 << 10),
       std::string(64 << 10, 'x'), 200, "suspended"},
      {"EmptyPostIsServed", "POST", "/v1/resume", true, false, lengthOf(0), "", 200, "suspended"},
      {"GetWithBodyIsRefused", "GET", "/v1/status", true, false, lengthOf(5), "hello", 400,
       "takes no body"},
  };
}

class ApiBodyTest : public ApiServerTest, public ::testing::WithParamInterface<BodyCase> {};

TEST_P(ApiBodyTest, Answers) {
  const BodyCase& c = GetParam();
  start();
  std::string head = c.method + " " + c.path + " HTTP/1.1\r\nHost: t\r\n";
  if (c.token) {
    head += "Authorization: Bearer " + std::string(kToken) + "\r\n";
  }
  if (c.sign) {
    head += "X-Hub-Signature-256: " + signature(c.body) + "\r\n";
  }
  head += c.framing + "\r\n";
  RawClient client(port());
  ASSERT_TRUE(client.connected());
  std::string answer = client.exchange(head, fixedBody(c.body));
  EXPECT_EQ(statusOf(answer), c.expected) << answer;
  EXPECT_NE(answer.find(c.answerHas), std::string::npos) << answer;
  if (c.expected >= 400) {
    // Nothing after a refused request is read as a request: the server closes.
    EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ApiBodyTest, ::testing::ValuesIn(bodyCases()),
                         [](const auto& info) { return info.param.name; });

TEST_F(ApiServerTest, ExpectContinueIsAnsweredWithTheRefusal) {
  start();
  RawClient client(port());
  // A client that waits for 100 Continue learns of the refusal before it sends anything.
  ASSERT_TRUE(
      client.send("POST /v1/hooks/git HTTP/1.1\r\nHost: t\r\nX-Hub-Signature-256: sha256=00\r\n"
                  "Expect: 100-continue\r\n" +
                  lengthOf(2 * kMiB) + "\r\n"));
  std::string answer = client.readAnswer();
  EXPECT_EQ(statusOf(answer), 413) << answer;

  RawClient within(port());
  ASSERT_TRUE(
      within.send("POST /v1/hooks/git HTTP/1.1\r\nHost: t\r\nX-Hub-Signature-256: sha256=00\r\n"
                  "Expect: 100-continue\r\n" +
                  lengthOf(100) + "\r\n"));
  EXPECT_EQ(statusOf(within.readHead()), 100);
}

// --- Memory: what the 21c7f09 server buffered (511 MB, 512 MB) -------------------------------

TEST_F(ApiServerTest, ChunkedBodyAndGzipBombAreRefusedWithBoundedMemory) {
  start();
  const uint64_t kBound = 32 * kMiB;
  {
    // The gauge itself: a 64 MiB rise is seen (else the bounds below would prove nothing).
    PeakMemory peak;
    std::vector<char> touched(64 * kMiB, 1);
    EXPECT_GE(peak.rise(), 60 * kMiB);
    EXPECT_EQ(touched[12345], 1);
  }
  {
    PeakMemory peak;
    RawClient client(port());
    std::string answer = client.exchange(
        "POST /v1/hooks/git HTTP/1.1\r\nHost: t\r\nX-Hub-Signature-256: sha256=00\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        chunkedBody(300 * kMiB));
    EXPECT_EQ(statusOf(answer), 411) << answer;
    std::printf("300 MB chunked body: peak memory rose by %.1f MiB\n",
                static_cast<double>(peak.rise()) / kMiB);
    EXPECT_LT(peak.rise(), kBound);
  }
  std::string bomb = gzipOfZeros(300 * kMiB);
  ASSERT_LT(bomb.size(), 2 * kMiB);
  {
    PeakMemory peak;
    // Unsigned, like the one in the issue; and signed-looking, which gets past the header check.
    for (std::string auth : {std::string(), std::string("X-Hub-Signature-256: sha256=00\r\n")}) {
      RawClient client(port());
      std::string answer =
          client.exchange("POST /v1/hooks/git HTTP/1.1\r\nHost: t\r\n" + auth +
                              "Content-Encoding: gzip\r\n" + lengthOf(bomb.size()) + "\r\n",
                          fixedBody(bomb));
      EXPECT_EQ(statusOf(answer), auth.empty() ? 401 : 415) << answer;
    }
    std::printf("gzip bomb of %zu bytes (300 MiB inflated): peak memory rose by %.1f MiB\n",
                bomb.size(), static_cast<double>(peak.rise()) / kMiB);
    EXPECT_LT(peak.rise(), kBound);
  }
  // Still serving.
  EXPECT_EQ(statusOf(get("/healthz")), 200);
}

// --- Time and threads -------------------------------------------------------------------------

TEST_F(ApiServerTest, FollowersOverTheCapAreRefusedAndTheWebhookStillAnswers) {
  ApiOptions o = defaults();
  o.http.longRequests = 4;
  o.http.reserveThreads = 2;
  start(o);
  const std::string follow =
      "GET /v1/events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
      "Authorization: Bearer " +
      std::string(kToken) + "\r\n\r\n";
  std::vector<std::unique_ptr<RawClient>> followers;
  for (size_t i = 0; i < o.http.longRequests; ++i) {
    followers.push_back(std::make_unique<RawClient>(port()));
    ASSERT_TRUE(followers.back()->send(follow));
    std::string head = followers.back()->readHead();
    ASSERT_EQ(statusOf(head), 200) << "follower " << i << ": " << head;  // the Nth still gets in
  }
  RawClient over(port());
  std::string refused = over.exchange(follow, nullptr);
  EXPECT_EQ(statusOf(refused), 503) << refused;
  EXPECT_NE(refused.find("too many event streams"), std::string::npos) << refused;
  // hyperctl events -f (ApiClient::follow) says why, not only the status code.
  controller::ApiClient client({"http://127.0.0.1:" + std::to_string(port()), std::string(kToken)});
  Status followed = client.follow(-1, 10, [](const nlohmann::json&) { return true; });
  ASSERT_FALSE(followed.isOk());
  EXPECT_NE(followed.message().find("HTTP 503: too many event streams"), std::string::npos)
      << followed.message();

  // While the followers hold their threads: /healthz and a signed webhook answer (at all: the
  // deadline is the generous one; nothing here is a timing assertion).
  std::string health = get("/healthz");
  EXPECT_EQ(statusOf(health), 200) << health;
  std::string hook = signedWebhook();
  EXPECT_EQ(statusOf(hook), 202) << hook;
  // More short requests than the reserve has threads, one after another, all answered.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(statusOf(get("/v1/status")), 200);
  }

  // A follower that leaves gives its slot back.
  followers.pop_back();
  auto deadline = SteadyClock::now() + kGenerous;
  bool admitted = false;
  while (!admitted && SteadyClock::now() < deadline) {
    RawClient again(port());
    again.send(follow);
    admitted = statusOf(again.readHead()) == 200;
    if (!admitted) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  EXPECT_TRUE(admitted);
}

TEST_F(ApiServerTest, SlowLorisIsCutOff) {
  ApiOptions o = defaults();
  o.http.requestTimeout = std::chrono::milliseconds(1000);
  start(o);
  RawClient loris(port());
  ASSERT_TRUE(loris.send("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: "));
  // One byte at a time, never finishing its headers: only a deadline for the whole request (not
  // one per read) ends it.
  auto deadline = SteadyClock::now() + kGenerous;
  bool cut = false;
  while (!cut && SteadyClock::now() < deadline) {
    cut = !loris.send("a") || loris.closedByServer();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(cut) << "the server still reads a request begun " << kGenerous.count() << " s ago";
  EXPECT_EQ(statusOf(get("/healthz")), 200);
}

// A request head of exactly `size` bytes (request line, headers, blank line).
std::string headOfSize(size_t size) {
  std::string head = "GET /healthz HTTP/1.1\r\nHost: t\r\n";
  for (int i = 0; head.size() + 2 < size; ++i) {
    std::string name = "X-Pad-" + std::to_string(i) + ": ";
    size_t room = size - 2 - head.size();
    // Lines of 4000 bytes; the last one takes what is left (never less than 100).
    size_t line = room <= 4000 ? room : (room - 4000 < 100 ? room - 100 : 4000);
    head += name + std::string(line - name.size() - 2, 'v') + "\r\n";
  }
  return head + "\r\n";
}

TEST_F(ApiServerTest, RequestHeadIsBoundedToTheByte) {
  start();
  const size_t limit = defaults().http.headerBytes;
  ASSERT_EQ(headOfSize(limit).size(), limit);
  ASSERT_EQ(headOfSize(limit + 1).size(), limit + 1);
  RawClient at(port());
  std::string answer = at.exchange(headOfSize(limit), nullptr);
  EXPECT_EQ(statusOf(answer), 200) << answer.substr(0, 200);
  RawClient over(port());
  answer = over.exchange(headOfSize(limit + 1), nullptr);
  EXPECT_EQ(statusOf(answer), 400) << answer.substr(0, 200);
}

// --- Descriptors ------------------------------------------------------------------------------

int portOf(int fd, bool peer) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                : getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (rc != 0 || addr.ss_family != AF_INET) {
    return -1;
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

TEST_F(ApiServerTest, ApiSocketsAreCloseOnExecAndNoChildInheritsThem) {
  start();
  RawClient follower(port());
  ASSERT_TRUE(
      follower.send("GET /v1/events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
                    "Authorization: Bearer " +
                    std::string(kToken) + "\r\n\r\n"));
  ASSERT_EQ(statusOf(follower.readHead()), 200);  // accepted and being served

  bool listener = false;
  bool accepted = false;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    int fd = std::atoi(entry.path().filename().c_str());
    if (portOf(fd, /*peer=*/false) != port()) {
      continue;
    }
    int peer = portOf(fd, /*peer=*/true);
    bool isListener = peer < 0;
    bool isAccepted = peer == follower.localPort();
    if (!isListener && !isAccepted) {
      continue;
    }
    (isListener ? listener : accepted) = true;
    EXPECT_NE(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0)
        << (isListener ? "listening" : "accepted") << " socket " << fd;
  }
  EXPECT_TRUE(listener);
  EXPECT_TRUE(accepted);

  // And a child started meanwhile has stdin, stdout and stderr only.
  auto r = host::runCommand({"sh", "-c", "ls /proc/$$/fd"});
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->out, "0\n1\n2\n");
}

// --- The status page and the viewer token ------------------------------------------------------

std::string request(int port, const std::string& method, const std::string& path,
                    const std::string& token) {
  RawClient c(port);
  return c.exchange(method + " " + path + " HTTP/1.1\r\nHost: t\r\n" +
                        (token.empty() ? "" : "Authorization: Bearer " + token + "\r\n") +
                        (method == "POST" ? "Content-Length: 0\r\n" : "") + "\r\n",
                    nullptr);
}

TEST_F(ApiServerTest, ThePageIsServedWithoutATokenAndOnlyItsOwnScriptMayRun) {
  start();
  std::string page = request(port(), "GET", "/", "");
  EXPECT_EQ(statusOf(page), 200) << page;
  EXPECT_NE(page.find("Content-Type: text/html"), std::string::npos) << page;
  EXPECT_NE(page.find("Content-Security-Policy: default-src 'none'; script-src 'self'"),
            std::string::npos)
      << page;
  EXPECT_NE(page.find("<script src=\"/ui/app.js\" defer></script>"), std::string::npos);
  EXPECT_EQ(page.find("<script>"), std::string::npos) << "an inline script the policy would block";
  std::string js = request(port(), "GET", "/ui/app.js", "");
  EXPECT_EQ(statusOf(js), 200);
  EXPECT_NE(js.find("Content-Type: text/javascript"), std::string::npos);
  EXPECT_NE(js.find("sessionStorage"), std::string::npos);
  EXPECT_EQ(js.find(".innerHTML"), std::string::npos) << "values must go in as text";
  EXPECT_EQ(statusOf(request(port(), "GET", "/ui/style.css", "")), 200);
  EXPECT_EQ(statusOf(request(port(), "GET", "/ui/other.js", "")), 404);
  // The data is not: without a token, 401.
  EXPECT_EQ(statusOf(request(port(), "GET", "/v1/objects", "")), 401);
}

TEST_F(ApiServerTest, TheViewerTokenReadsAndIsRefusedEverythingElse) {
  ApiOptions o = defaults();
  o.viewerToken = "viewer-token-for-tests";
  start(o);
  EXPECT_EQ(statusOf(request(port(), "GET", "/v1/status", o.viewerToken)), 200);
  EXPECT_EQ(statusOf(request(port(), "GET", "/v1/objects", o.viewerToken)), 200);
  for (const char* path : {"/v1/reconcile", "/v1/suspend", "/v1/approve", "/v1/plan"}) {
    std::string refused = request(port(), "POST", path, o.viewerToken);
    EXPECT_EQ(statusOf(refused), 403) << path << ": " << refused;
    EXPECT_NE(refused.find("the viewer token only reads"), std::string::npos) << refused;
  }
  EXPECT_FALSE(controller_->suspended());
  EXPECT_EQ(statusOf(request(port(), "POST", "/v1/suspend", kToken)), 200);
  EXPECT_TRUE(controller_->suspended());
  EXPECT_EQ(statusOf(request(port(), "GET", "/v1/status", "viewer-token-for-test")), 401);
  // Without a viewer token configured, nothing but the API token opens /v1/.
  api_.reset();
  start();
  EXPECT_EQ(statusOf(request(port(), "GET", "/v1/status", o.viewerToken)), 401);
}

TEST_F(ApiServerTest, AnObjectsLogIsServedFromItsEndAsText) {
  const std::string log = dir_ + "/vm-web.console";
  std::string text;
  for (int i = 0; i < 2000; ++i) {
    text += "line " + std::to_string(i) + "\n";
  }
  std::ofstream(log) << text;
  ApiOptions o = defaults();
  o.logs = [&](const std::string& kind, const std::string& name) -> std::optional<LogFiles> {
    if (kind != "VM") {
      return std::nullopt;
    }
    return LogFiles{{name == "web" ? log : dir_ + "/nope"}, "kept while the VM runs"};
  };
  start(o);
  std::string tail = request(port(), "GET", "/v1/logs/VM/web?bytes=100", kToken);
  EXPECT_EQ(statusOf(tail), 200) << tail;
  const std::string body = tail.substr(tail.find("\r\n\r\n") + 4);
  EXPECT_EQ(body.substr(0, 10), "line 1990\n") << body;  // whole lines only
  std::string cut = request(port(), "GET", "/v1/logs/VM/web?bytes=95", kToken);
  EXPECT_EQ(cut.substr(cut.find("\r\n\r\n") + 4, 10), "line 1991\n") << cut;
  EXPECT_EQ(body.substr(body.size() - 10), "line 1999\n") << body;
  EXPECT_LE(body.size(), 100u);
  std::string gone = request(port(), "GET", "/v1/logs/VM/other", kToken);
  EXPECT_EQ(statusOf(gone), 404);
  EXPECT_NE(gone.find("kept while the VM runs"), std::string::npos) << gone;
  EXPECT_EQ(statusOf(request(port(), "GET", "/v1/logs/Network/lab", kToken)), 404);
  EXPECT_EQ(statusOf(request(port(), "GET", "/v1/logs/VM/..%2Fx", kToken)), 404);
  EXPECT_EQ(statusOf(request(port(), "GET", "/v1/logs/VM/web", "")), 401);
}

}  // namespace
}  // namespace hyper::controller
