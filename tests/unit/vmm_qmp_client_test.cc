#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "providers/vmm/qmp_client.h"

namespace hyper::providers::vmm {
namespace {

using Json = nlohmann::json;
using Millis = std::chrono::milliseconds;

// A QMP server double on a Unix socket: accepts one client, sends the greeting, answers
// qmp_capabilities, then hands each further request to `script`, which writes raw bytes back
// (so a test controls framing: split lines, events first, no reply at all).
class FakeQmpServer {
 public:
  using Script = std::function<void(int fd, const Json& request)>;

  explicit FakeQmpServer(Script script) : script_(std::move(script)) {
    path_ = (std::filesystem::temp_directory_path() /
             ("hyper-qmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++)))
                .string();
    listenFd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    ::unlink(path_.c_str());
    EXPECT_EQ(::bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listenFd_, 1), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeQmpServer() {
    ::shutdown(listenFd_, SHUT_RDWR);
    if (clientFd_ >= 0) {
      ::shutdown(clientFd_, SHUT_RDWR);
    }
    thread_.join();
    ::close(listenFd_);
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  static void send(int fd, const std::string& bytes) {
    ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

 private:
  void serve() {
    int fd = ::accept(listenFd_, nullptr, nullptr);
    if (fd < 0) {
      return;
    }
    clientFd_ = fd;
    send(fd, R"({"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": ["oob"]}})"
             "\r\n");
    std::string buf;
    char chunk[4096];
    for (;;) {
      ssize_t r = ::read(fd, chunk, sizeof chunk);
      if (r <= 0) {
        break;
      }
      buf.append(chunk, static_cast<size_t>(r));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        Json req = Json::parse(buf.substr(0, nl));
        buf.erase(0, nl + 1);
        if (req["execute"] == "qmp_capabilities") {
          send(fd, Json{{"return", Json::object()}, {"id", req["id"]}}.dump() + "\r\n");
        } else {
          script_(fd, req);
        }
      }
    }
    ::close(fd);
  }

  static inline int counter_ = 0;
  Script script_;
  std::string path_;
  int listenFd_ = -1;
  int clientFd_ = -1;
  std::thread thread_;
};

TEST(VmmQmpClient, NegotiatesAndReturnsTheReply) {
  FakeQmpServer server([](int fd, const Json& req) {
    EXPECT_EQ(req["execute"], "query-status");
    FakeQmpServer::send(
        fd, Json{{"return", {{"status", "running"}, {"running", true}}}, {"id", req["id"]}}.dump() +
                "\r\n");
  });
  auto qmp = QmpClient::connect(server.path());
  ASSERT_TRUE(qmp.isOk()) << qmp.status().message();
  EXPECT_EQ((*qmp)->greeting()["QMP"]["version"]["qemu"]["major"], 7);
  auto r = (*qmp)->execute("query-status");
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ((*r)["status"], "running");
}

TEST(VmmQmpClient, KeepsEventsThatArriveBeforeTheReplyAndReassemblesSplitLines) {
  FakeQmpServer server([](int fd, const Json& req) {
    // QEMU sends POWERDOWN before the reply to system_powerdown; split mid-object on purpose.
    std::string event = R"({"timestamp": {"seconds": 1, "microseconds": 2}, "event": "POWERDOWN"})";
    std::string reply = Json{{"return", Json::object()}, {"id", req["id"]}}.dump();
    std::string all = event + "\r\n" + reply + "\r\n";
    FakeQmpServer::send(fd, all.substr(0, 10));
    std::this_thread::sleep_for(Millis(20));
    FakeQmpServer::send(fd, all.substr(10, 70));
    std::this_thread::sleep_for(Millis(20));
    FakeQmpServer::send(fd, all.substr(80));
  });
  auto qmp = QmpClient::connect(server.path());
  ASSERT_TRUE(qmp.isOk()) << qmp.status().message();
  auto r = (*qmp)->execute("system_powerdown");
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_TRUE(r->is_object());
  ASSERT_EQ((*qmp)->events().size(), 1u);
  EXPECT_EQ((*qmp)->events()[0]["event"], "POWERDOWN");
  auto e = (*qmp)->waitEvent("POWERDOWN", Millis(1000));
  ASSERT_TRUE(e.isOk()) << e.status().message();
}

TEST(VmmQmpClient, ErrorReplyCarriesClassAndDescription) {
  FakeQmpServer server([](int fd, const Json& req) {
    FakeQmpServer::send(
        fd, Json{{"error",
                  {{"class", "CommandNotFound"}, {"desc", "The command nope has not been found"}}},
                 {"id", req["id"]}}
                    .dump() +
                "\n");
  });
  auto qmp = QmpClient::connect(server.path());
  ASSERT_TRUE(qmp.isOk()) << qmp.status().message();
  auto r = (*qmp)->execute("nope");
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("QMP nope <- CommandNotFound: The command nope"),
            std::string::npos)
      << r.status().message();
}

TEST(VmmQmpClient, TimesOutWhenNoReplyComes) {
  FakeQmpServer server([](int, const Json&) {});
  auto qmp = QmpClient::connect(server.path());
  ASSERT_TRUE(qmp.isOk()) << qmp.status().message();
  auto r = (*qmp)->execute("query-status", Json(), Millis(200));
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("timed out"), std::string::npos) << r.status().message();
}

TEST(VmmQmpClient, GarbageIsAnErrorNotACrash) {
  FakeQmpServer server([](int fd, const Json&) { FakeQmpServer::send(fd, "{not json\n"); });
  auto qmp = QmpClient::connect(server.path());
  ASSERT_TRUE(qmp.isOk()) << qmp.status().message();
  auto r = (*qmp)->execute("query-status");
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("bad QMP message"), std::string::npos)
      << r.status().message();
}

TEST(VmmQmpClient, ConnectToMissingSocketNamesThePath) {
  auto qmp = QmpClient::connect("/nonexistent/qmp.sock");
  ASSERT_FALSE(qmp.isOk());
  EXPECT_NE(qmp.status().message().find("/nonexistent/qmp.sock"), std::string::npos);
}

}  // namespace
}  // namespace hyper::providers::vmm
