#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace spdlog {
class logger;
}

namespace hyper::controller {

class Counter;
class Metrics;

// Something an operator should hear about without running a command: an object drifted from the
// applied revision, a reconcile failed, or a revision was rejected as a whole.
struct Alert {
  std::string kind;         // "drift" | "reconcile-error" | "revision-rejected"
  std::string object;       // "Network/lab", or empty when the alert is about the whole revision
  std::string revision;     // the revision applied or rejected ("git:<commit>", "dir:<hash>")
  std::string summary;      // one line for people
  nlohmann::json details;   // e.g. the field-level difference; never secret values
  int64_t at = 0;           // unix seconds
  std::string reconcileId;  // the reconcile that raised it, as in the log lines
};

// The webhook body: {"kind", "object", "revision", "summary", "details", "at", "reconcileId"}.
nlohmann::json alertToJson(const Alert& alert);

// Where alerts go. send() is called from the reconcile loop: it must not block on I/O, must not
// throw, and may be called from any thread.
class AlertSink {
 public:
  virtual ~AlertSink() = default;
  virtual void send(const Alert& alert) = 0;
  // Waits until every alert sent so far is delivered or given up, at most `timeout` (shutdown,
  // tests). True when nothing is left.
  virtual bool flush(std::chrono::milliseconds timeout) {
    (void)timeout;
    return true;
  }
};

// One warn line per alert: "alert drift Network/lab revision=git:ab12 reconcile=r-7: <summary>
// details={...}". Newlines in the summary are escaped so that an alert stays one line.
class LogAlertSink : public AlertSink {
 public:
  // A null logger means spdlog's default logger at the time of each send.
  explicit LogAlertSink(std::shared_ptr<spdlog::logger> logger = nullptr);
  void send(const Alert& alert) override;

 private:
  std::shared_ptr<spdlog::logger> logger_;
};

struct WebhookRetryPolicy {
  int maxAttempts = 5;  // including the first; at least 1
  std::chrono::milliseconds initialBackoff{500};
  std::chrono::milliseconds maxBackoff{30000};
  double multiplier = 2.0;
  std::chrono::milliseconds requestTimeout{5000};  // connect, and each read and write
};

// POSTs each alert as JSON to an HTTP(S) receiver. Delivery happens on a background thread from a
// bounded queue: send() only enqueues, and when the queue is full the oldest alert is dropped
// (counted, and logged on the first drop and every 100th). Connection errors and 5xx responses
// are retried with exponential backoff up to maxAttempts; any other non-2xx response (4xx,
// redirects) is final. Each request carries the same body and `X-Hyper-Delivery` id on every
// attempt, so a receiver can de-duplicate; with a secret, `X-Hyper-Signature-256:
// sha256=<hex HMAC-SHA256(secret, body)>` (GitHub's scheme, see webhook_auth.h).
//
// The URL's path and query may carry a token (Slack-style URLs do), so logs and errors show only
// scheme://host:port. The secret is never logged.
class WebhookAlertSink : public AlertSink {
 public:
  struct Options {
    WebhookRetryPolicy retry;
    size_t queueCapacity = 256;
    std::shared_ptr<spdlog::logger> logger;  // null: spdlog's default logger
    // Not owned; must outlive the sink. Counts hyper_alert_webhook_total{result=delivered|failed|
    // dropped} and hyper_alert_webhook_attempts_total.
    Metrics* metrics = nullptr;
  };
  struct Stats {
    uint64_t delivered = 0;
    uint64_t failed = 0;   // given up: a final response, or every attempt failed
    uint64_t dropped = 0;  // pushed out of a full queue, or abandoned at destruction
    uint64_t attempts = 0;
  };

  // `url`: http:// or https://, no userinfo. An invalid URL or policy is an error.
  static Result<std::unique_ptr<WebhookAlertSink>> create(const std::string& url,
                                                          std::optional<std::string> secret,
                                                          Options options);
  static Result<std::unique_ptr<WebhookAlertSink>> create(const std::string& url,
                                                          std::optional<std::string> secret) {
    return create(url, std::move(secret), Options{});
  }
  // Stops at once: an attempt in flight finishes (bounded by requestTimeout), backoff waits are
  // cut short, and what is still queued is abandoned. Call flush() first to deliver it.
  ~WebhookAlertSink() override;

  void send(const Alert& alert) override;
  bool flush(std::chrono::milliseconds timeout) override;
  Stats stats() const;
  const std::string& displayUrl() const { return displayUrl_; }  // scheme://host[:port]

 private:
  struct Pending {
    std::string body;
    std::string deliveryId;
    std::string kind;
  };

  WebhookAlertSink(std::string origin, std::string path, std::optional<std::string> secret,
                   Options options);
  void run();
  void deliver(const Pending& item);
  spdlog::logger& log() const;
  void count(Counter* c);

  const std::string origin_;  // scheme://host:port, for httplib::Client
  const std::string path_;    // path and query
  const std::string displayUrl_;
  const std::optional<std::string> secret_;
  const Options options_;
  Counter* deliveredMetric_ = nullptr;
  Counter* failedMetric_ = nullptr;
  Counter* droppedMetric_ = nullptr;
  Counter* attemptsMetric_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable wake_;  // work queued, or stopping
  std::condition_variable idle_;  // queue drained and nothing in flight
  std::deque<Pending> queue_;
  bool inFlight_ = false;
  bool stopping_ = false;
  Stats stats_;
  std::thread worker_;
};

// Sends every alert to each of its sinks, in order.
class AlertFanout : public AlertSink {
 public:
  AlertFanout() = default;
  explicit AlertFanout(std::vector<std::shared_ptr<AlertSink>> sinks);
  void add(std::shared_ptr<AlertSink> sink);
  size_t size() const;

  void send(const Alert& alert) override;
  // Flushes each sink within what is left of the one `timeout`; true if all finished.
  bool flush(std::chrono::milliseconds timeout) override;

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<AlertSink>> sinks_;
};

}  // namespace hyper::controller
