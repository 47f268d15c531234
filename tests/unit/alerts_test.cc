#include "hyperd/alerts.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "hyperd/metrics.h"
#include "hyperd/webhook_auth.h"

namespace hyper::controller {
namespace {

using namespace std::chrono_literals;

// A real HTTP receiver on 127.0.0.1, port chosen by the kernel. `respond` picks the status of
// the n-th request (1-based).
class Receiver {
 public:
  struct Request {
    std::string body;
    std::string path;
    httplib::Headers headers;
    std::chrono::steady_clock::time_point at;
  };

  explicit Receiver(std::function<int(int)> respond = [](int) { return 200; })
      : respond_(std::move(respond)) {
    server_.Post(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
      int n = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back({req.body, req.path, req.headers, std::chrono::steady_clock::now()});
        n = static_cast<int>(requests_.size());
      }
      res.status = respond_(n);
      res.set_content("{}", "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    // bind_to_any_port also listens, so requests queue in the kernel until the thread accepts.
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~Receiver() { stop(); }

  void stop() {
    if (thread_.joinable()) {
      // stop() does nothing before the listening thread has started running.
      while (!server_.is_running()) {
        std::this_thread::sleep_for(1ms);
      }
      server_.stop();
      thread_.join();
    }
  }
  int port() const { return port_; }
  std::string url(const std::string& path = "/hooks/alerts") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<Request> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  std::function<int(int)> respond_;
  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Request> requests_;
};

// A port with nothing listening on it: bound by a server that is then closed.
int closedPort() {
  Receiver r;
  int port = r.port();
  r.stop();
  return port;
}

Alert sampleAlert(const std::string& summary = "bridge hb-lab deleted by hand") {
  Alert a;
  a.kind = "drift";
  a.object = "Network/lab";
  a.revision = "git:0123456789abcdef0123456789abcdef01234567";
  a.summary = summary;
  a.details = {{"field", "spec.mtu"}, {"desired", 1500}, {"observed", 9000}};
  a.at = 1700000000;
  a.reconcileId = "r-42";
  return a;
}

WebhookAlertSink::Options fastOptions(int maxAttempts = 5) {
  WebhookAlertSink::Options o;
  o.retry.maxAttempts = maxAttempts;
  o.retry.initialBackoff = 5ms;
  o.retry.maxBackoff = 50ms;
  o.retry.requestTimeout = 2000ms;
  return o;
}

struct CapturedLog {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger;
  CapturedLog() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    logger = std::make_shared<spdlog::logger>("test", sink);
    logger->set_pattern("%l %v");
  }
  std::string text() {
    logger->flush();
    return out.str();
  }
};

std::string header(const Receiver::Request& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "<absent>" : it->second;
}

TEST(AlertsTest, WebhookBodyCarriesEveryField) {
  Receiver receiver;
  auto sink = WebhookAlertSink::create(receiver.url(), std::nullopt, fastOptions());
  ASSERT_TRUE(sink) << sink.status().message();
  (*sink)->send(sampleAlert());
  ASSERT_TRUE((*sink)->flush(5s));

  auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].path, "/hooks/alerts");
  EXPECT_EQ(header(requests[0], "Content-Type"), "application/json");
  EXPECT_EQ(header(requests[0], "X-Hyper-Signature-256"), "<absent>");
  EXPECT_EQ(header(requests[0], "X-Hyper-Alert-Kind"), "drift");
  EXPECT_EQ(header(requests[0], "X-Hyper-Delivery").size(), 32u);
  auto body = nlohmann::json::parse(requests[0].body);
  EXPECT_EQ(body["kind"], "drift");
  EXPECT_EQ(body["object"], "Network/lab");
  EXPECT_EQ(body["revision"], "git:0123456789abcdef0123456789abcdef01234567");
  EXPECT_EQ(body["summary"], "bridge hb-lab deleted by hand");
  EXPECT_EQ(body["details"]["observed"], 9000);
  EXPECT_EQ(body["at"], 1700000000);
  EXPECT_EQ(body["reconcileId"], "r-42");
  auto stats = (*sink)->stats();
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.attempts, 1u);
  EXPECT_EQ(stats.failed, 0u);
}

TEST(AlertsTest, WebhookSignatureVerifiesWithTheSecret) {
  Receiver receiver;
  const std::string secret = "alert-signing-key-7f3a";
  auto sink = WebhookAlertSink::create(receiver.url(), secret, fastOptions());
  ASSERT_TRUE(sink) << sink.status().message();
  (*sink)->send(sampleAlert());
  ASSERT_TRUE((*sink)->flush(5s));
  auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 1u);
  std::string signature = header(requests[0], "X-Hyper-Signature-256");
  EXPECT_EQ(signature, "sha256=" + hmacSha256Hex(secret, requests[0].body));
  EXPECT_TRUE(verifyGithubSignature(secret, requests[0].body, signature));
  EXPECT_FALSE(verifyGithubSignature("another-key", requests[0].body, signature));
  EXPECT_EQ(requests[0].body.find(secret), std::string::npos);
  for (const auto& [name, value] : requests[0].headers) {
    EXPECT_EQ(value.find(secret), std::string::npos) << name;
  }
}

TEST(AlertsTest, RetriesServerErrorsWithTheSameDelivery) {
  Receiver receiver([](int n) { return n <= 2 ? 503 : 200; });
  auto options = fastOptions();
  options.retry.initialBackoff = 20ms;
  options.retry.maxBackoff = 1000ms;
  Metrics metrics;
  options.metrics = &metrics;
  auto sink = WebhookAlertSink::create(receiver.url(), "k", options);
  ASSERT_TRUE(sink);
  (*sink)->send(sampleAlert());
  ASSERT_TRUE((*sink)->flush(10s));

  auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 3u);
  for (const auto& r : requests) {
    EXPECT_EQ(r.body, requests[0].body);
    EXPECT_EQ(header(r, "X-Hyper-Delivery"), header(requests[0], "X-Hyper-Delivery"));
  }
  // Exponential: at least 20 ms before the second attempt, 40 ms before the third.
  EXPECT_GE(requests[1].at - requests[0].at, 20ms);
  EXPECT_GE(requests[2].at - requests[1].at, 40ms);
  auto stats = (*sink)->stats();
  EXPECT_EQ(stats.attempts, 3u);
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.failed, 0u);
  std::string text = metrics.render();
  EXPECT_NE(text.find("hyper_alert_webhook_attempts_total 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("hyper_alert_webhook_total{result=\"delivered\"} 1\n"), std::string::npos);
}

TEST(AlertsTest, ClientErrorIsNotRetried) {
  Receiver receiver([](int) { return 400; });
  auto sink = WebhookAlertSink::create(receiver.url(), std::nullopt, fastOptions());
  ASSERT_TRUE(sink);
  (*sink)->send(sampleAlert());
  ASSERT_TRUE((*sink)->flush(5s));
  EXPECT_EQ(receiver.requests().size(), 1u);
  auto stats = (*sink)->stats();
  EXPECT_EQ(stats.attempts, 1u);
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(stats.delivered, 0u);
}

TEST(AlertsTest, GivesUpAfterMaxAttempts) {
  Receiver receiver([](int) { return 500; });
  auto sink = WebhookAlertSink::create(receiver.url(), std::nullopt, fastOptions(3));
  ASSERT_TRUE(sink);
  (*sink)->send(sampleAlert());
  ASSERT_TRUE((*sink)->flush(5s));
  EXPECT_EQ(receiver.requests().size(), 3u);
  EXPECT_EQ((*sink)->stats().failed, 1u);
}

TEST(AlertsTest, RetriesConnectionErrors) {
  auto sink = WebhookAlertSink::create("http://127.0.0.1:" + std::to_string(closedPort()) + "/x",
                                       std::nullopt, fastOptions(4));
  ASSERT_TRUE(sink);
  (*sink)->send(sampleAlert());
  ASSERT_TRUE((*sink)->flush(10s));
  auto stats = (*sink)->stats();
  EXPECT_EQ(stats.attempts, 4u);
  EXPECT_EQ(stats.failed, 1u);
}

TEST(AlertsTest, SendNeverBlocksAndDropsTheOldestWhenFull) {
  std::atomic<bool> release{false};
  Receiver receiver([&](int) {
    while (!release) {
      std::this_thread::sleep_for(5ms);
    }
    return 200;
  });
  auto options = fastOptions();
  options.queueCapacity = 3;
  auto sink = WebhookAlertSink::create(receiver.url(), std::nullopt, options);
  ASSERT_TRUE(sink);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    (*sink)->send(sampleAlert("alert " + std::to_string(i)));
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, 500ms);  // the receiver holds every request until released
  EXPECT_FALSE((*sink)->flush(50ms));
  release = true;
  ASSERT_TRUE((*sink)->flush(10s));

  auto stats = (*sink)->stats();
  EXPECT_EQ(stats.delivered + stats.dropped, 10u);
  EXPECT_GE(stats.dropped, 6u);  // at most one in flight and three queued
  std::vector<std::string> summaries;
  for (const auto& r : receiver.requests()) {
    summaries.push_back(nlohmann::json::parse(r.body)["summary"]);
  }
  ASSERT_GE(summaries.size(), 3u);
  // The newest three survive, in order.
  EXPECT_EQ(std::vector<std::string>(summaries.end() - 3, summaries.end()),
            (std::vector<std::string>{"alert 7", "alert 8", "alert 9"}));
}

TEST(AlertsTest, DestructionCutsBackoffShort) {
  auto options = fastOptions();
  options.retry.initialBackoff = 30s;
  options.retry.maxBackoff = 30s;
  auto sink = WebhookAlertSink::create("http://127.0.0.1:" + std::to_string(closedPort()) + "/x",
                                       std::nullopt, options);
  ASSERT_TRUE(sink);
  (*sink)->send(sampleAlert());
  for (int i = 0; i < 400 && (*sink)->stats().attempts == 0; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ((*sink)->stats().attempts, 1u);
  auto start = std::chrono::steady_clock::now();
  sink->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(AlertsTest, LogsNeverContainTheSecretOrTheUrlPath) {
  CapturedLog log;
  const std::string secret = "hmac-secret-do-not-log";
  Receiver refusing([](int) { return 403; });
  Receiver failing([](int) { return 502; });
  for (const std::string& url :
       {refusing.url("/services/T0KEN-in-path"), failing.url("/services/T0KEN-in-path"),
        "http://127.0.0.1:" + std::to_string(closedPort()) + "/services/T0KEN-in-path"}) {
    auto options = fastOptions(2);
    options.logger = log.logger;
    auto sink = WebhookAlertSink::create(url, secret, options);
    ASSERT_TRUE(sink);
    (*sink)->send(sampleAlert());
    ASSERT_TRUE((*sink)->flush(10s));
    EXPECT_EQ((*sink)->stats().failed, 1u);
  }
  std::string text = log.text();
  EXPECT_NE(text.find("HTTP 403, not retrying"), std::string::npos) << text;
  EXPECT_NE(text.find("not delivered after 2 attempts, last: HTTP 502"), std::string::npos) << text;
  EXPECT_NE(text.find("http://127.0.0.1:" + std::to_string(refusing.port())), std::string::npos);
  EXPECT_EQ(text.find(secret), std::string::npos) << text;
  EXPECT_EQ(text.find("T0KEN"), std::string::npos) << text;
}

TEST(AlertsTest, CreateRejectsBadUrlsWithoutEchoingThem) {
  for (const char* url :
       {"ftp://example.com/x", "example.com/hook", "http:///T0KEN", "https://user:T0KEN@host/x"}) {
    auto sink = WebhookAlertSink::create(url, std::nullopt);
    ASSERT_FALSE(sink) << url;
    EXPECT_EQ(sink.status().message().find("T0KEN"), std::string::npos) << sink.status().message();
  }
  EXPECT_FALSE(WebhookAlertSink::create("http://127.0.0.1:1/x", std::string()));  // empty secret
  auto options = fastOptions(0);
  EXPECT_FALSE(WebhookAlertSink::create("http://127.0.0.1:1/x", std::nullopt, options));
}

TEST(AlertsTest, LogSinkWritesOneWarnLine) {
  CapturedLog log;
  LogAlertSink sink(log.logger);
  sink.send(sampleAlert("tap vm-web0 missing\nforged: second line"));
  std::string text = log.text();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_EQ(text.rfind("warning alert drift Network/lab revision=git:0123456789abcdef", 0), 0u)
      << text;
  EXPECT_NE(text.find("reconcile=r-42: tap vm-web0 missing\\nforged: second line"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(details={"desired":1500,"field":"spec.mtu","observed":9000})"),
            std::string::npos)
      << text;
}

class RecordingSink : public AlertSink {
 public:
  explicit RecordingSink(bool flushes = true) : flushes_(flushes) {}
  void send(const Alert& alert) override { got.push_back(alert.summary); }
  bool flush(std::chrono::milliseconds) override { return flushes_; }
  std::vector<std::string> got;

 private:
  bool flushes_;
};

TEST(AlertsTest, FanoutSendsToEverySink) {
  auto a = std::make_shared<RecordingSink>();
  auto b = std::make_shared<RecordingSink>();
  AlertFanout fanout({a});
  fanout.add(b);
  EXPECT_EQ(fanout.size(), 2u);
  fanout.send(sampleAlert("one"));
  fanout.send(sampleAlert("two"));
  EXPECT_EQ(a->got, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(b->got, (std::vector<std::string>{"one", "two"}));
  EXPECT_TRUE(fanout.flush(1s));
  fanout.add(std::make_shared<RecordingSink>(false));
  EXPECT_FALSE(fanout.flush(1s));
}

TEST(AlertsTest, FanoutDeliversToARealWebhook) {
  Receiver receiver;
  auto webhook = WebhookAlertSink::create(receiver.url(), std::nullopt, fastOptions());
  ASSERT_TRUE(webhook);
  auto recording = std::make_shared<RecordingSink>();
  AlertFanout fanout({std::shared_ptr<AlertSink>(std::move(webhook).value()), recording});
  fanout.send(sampleAlert("via fanout"));
  ASSERT_TRUE(fanout.flush(5s));
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(receiver.requests()[0].body)["summary"], "via fanout");
  EXPECT_EQ(recording->got, (std::vector<std::string>{"via fanout"}));
}

}  // namespace
}  // namespace hyper::controller
