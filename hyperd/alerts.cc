#include "hyperd/alerts.h"

#include <algorithm>
#include <array>
#include <cmath>

#include <httplib.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include "hyperd/metrics.h"
#include "hyperd/webhook_auth.h"

namespace hyper::controller {
namespace {

// Newlines would split a log line, letting a crafted summary forge lines.
std::string oneLine(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  return out;
}

std::string dumpJson(const nlohmann::json& j) {
  // Replace invalid UTF-8 instead of throwing: details carry host-provided strings.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string randomId() {
  if (sodium_init() < 0) {
    return "unknown";
  }
  std::array<unsigned char, 16> raw{};
  randombytes_buf(raw.data(), raw.size());
  std::array<char, 33> hex{};
  sodium_bin2hex(hex.data(), hex.size(), raw.data(), raw.size());
  return std::string(hex.data(), 32);
}

struct ParsedUrl {
  std::string origin;  // scheme://authority
  std::string path;    // "/..." with the query
};

Result<ParsedUrl> parseWebhookUrl(const std::string& url) {
  size_t schemeEnd = url.find("://");
  std::string scheme = schemeEnd == std::string::npos ? "" : url.substr(0, schemeEnd);
  if (scheme != "http" && scheme != "https") {
    return Status::error("expected an http:// or https:// URL");
  }
  size_t authStart = schemeEnd + 3;
  size_t pathStart = url.find_first_of("/?#", authStart);
  std::string authority = url.substr(
      authStart, pathStart == std::string::npos ? std::string::npos : pathStart - authStart);
  if (authority.empty()) {
    return Status::error(scheme + ":// URL without a host");
  }
  if (authority.find('@') != std::string::npos) {
    return Status::error(scheme +
                         ":// URL with user information (expected none: sign alerts with a "
                         "secretFile instead)");
  }
  if (authority.find_first_of(" \t\r\n") != std::string::npos) {
    return Status::error(scheme + ":// URL with white space in its host");
  }
  ParsedUrl out;
  out.origin = scheme + "://" + authority;
  out.path = pathStart == std::string::npos ? "/" : url.substr(pathStart);
  if (out.path[0] != '/') {
    out.path = "/" + out.path;
  }
  size_t fragment = out.path.find('#');
  if (fragment != std::string::npos) {
    out.path.resize(fragment);
  }
  return out;
}

}  // namespace

nlohmann::json alertToJson(const Alert& alert) {
  return {{"kind", alert.kind},
          {"object", alert.object},
          {"revision", alert.revision},
          {"summary", alert.summary},
          {"details", alert.details},
          {"at", alert.at},
          {"reconcileId", alert.reconcileId}};
}

LogAlertSink::LogAlertSink(std::shared_ptr<spdlog::logger> logger) : logger_(std::move(logger)) {}

void LogAlertSink::send(const Alert& alert) {
  std::string line = "alert " + oneLine(alert.kind);
  if (!alert.object.empty()) {
    line += " " + oneLine(alert.object);
  }
  line += " revision=" + oneLine(alert.revision.empty() ? "-" : alert.revision);
  line += " reconcile=" + oneLine(alert.reconcileId.empty() ? "-" : alert.reconcileId);
  line += ": " + oneLine(alert.summary);
  if (!alert.details.is_null()) {
    line += " details=" + dumpJson(alert.details);  // dump() escapes newlines itself
  }
  auto logger = logger_ ? logger_ : spdlog::default_logger();
  logger->warn("{}", line);
}

Result<std::unique_ptr<WebhookAlertSink>> WebhookAlertSink::create(
    const std::string& url, std::optional<std::string> secret, Options options) {
  auto parsed = parseWebhookUrl(url);
  if (!parsed) {
    return parsed.status().withContext("alert webhook");
  }
  if (options.retry.maxAttempts < 1 || options.queueCapacity < 1 || options.retry.multiplier < 1 ||
      options.retry.initialBackoff.count() < 0 || options.retry.requestTimeout.count() <= 0) {
    return Status::error("alert webhook " + parsed->origin +
                         " <- invalid delivery policy (expected maxAttempts >= 1, a queue of at "
                         "least 1, multiplier >= 1 and a positive request timeout)");
  }
  if (secret && secret->empty()) {
    return Status::error("alert webhook " + parsed->origin +
                         " <- empty signing secret (expected none, or a non-empty one)");
  }
  return std::unique_ptr<WebhookAlertSink>(
      new WebhookAlertSink(parsed->origin, parsed->path, std::move(secret), std::move(options)));
}

WebhookAlertSink::WebhookAlertSink(std::string origin, std::string path,
                                   std::optional<std::string> secret, Options options)
    : origin_(std::move(origin)),
      path_(std::move(path)),
      displayUrl_(origin_),
      secret_(std::move(secret)),
      options_(std::move(options)) {
  if (options_.metrics) {
    const char* help = "Alerts sent to webhooks, by outcome.";
    deliveredMetric_ =
        &options_.metrics->counter("hyper_alert_webhook_total", help, {{"result", "delivered"}});
    failedMetric_ =
        &options_.metrics->counter("hyper_alert_webhook_total", help, {{"result", "failed"}});
    droppedMetric_ =
        &options_.metrics->counter("hyper_alert_webhook_total", help, {{"result", "dropped"}});
    attemptsMetric_ = &options_.metrics->counter("hyper_alert_webhook_attempts_total",
                                                 "HTTP requests made to deliver alerts.");
  }
  worker_ = std::thread([this] { run(); });
}

WebhookAlertSink::~WebhookAlertSink() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    stats_.dropped += queue_.size();
    if (droppedMetric_) {
      droppedMetric_->inc(static_cast<double>(queue_.size()));
    }
    queue_.clear();
  }
  wake_.notify_all();
  worker_.join();
}

spdlog::logger& WebhookAlertSink::log() const {
  return options_.logger ? *options_.logger : *spdlog::default_logger_raw();
}

void WebhookAlertSink::count(Counter* c) {
  if (c) {
    c->inc();
  }
}

void WebhookAlertSink::send(const Alert& alert) {
  Pending item{dumpJson(alertToJson(alert)), randomId(), alert.kind};
  uint64_t dropped = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      return;
    }
    if (queue_.size() >= options_.queueCapacity) {
      queue_.pop_front();
      dropped = ++stats_.dropped;
    }
    queue_.push_back(std::move(item));
  }
  wake_.notify_one();
  if (dropped > 0) {
    count(droppedMetric_);
    if (dropped == 1 || dropped % 100 == 0) {
      log().warn("alert webhook {}: queue full ({} alerts), dropped the oldest ({} dropped so far)",
                 displayUrl_, options_.queueCapacity, dropped);
    }
  }
}

bool WebhookAlertSink::flush(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_.wait_for(lock, timeout, [this] { return queue_.empty() && !inFlight_; });
}

WebhookAlertSink::Stats WebhookAlertSink::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void WebhookAlertSink::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) {
      break;
    }
    Pending item = std::move(queue_.front());
    queue_.pop_front();
    inFlight_ = true;
    lock.unlock();
    deliver(item);
    lock.lock();
    inFlight_ = false;
    if (queue_.empty()) {
      idle_.notify_all();
    }
  }
  inFlight_ = false;
  idle_.notify_all();
}

void WebhookAlertSink::deliver(const Pending& item) {
  const WebhookRetryPolicy& retry = options_.retry;
  httplib::Headers headers = {{"X-Hyper-Delivery", item.deliveryId},
                              {"X-Hyper-Alert-Kind", item.kind},
                              {"User-Agent", "hyperd"}};
  if (secret_) {
    headers.emplace("X-Hyper-Signature-256", "sha256=" + hmacSha256Hex(*secret_, item.body));
  }
  httplib::Client client(origin_);
  client.set_connection_timeout(retry.requestTimeout);
  client.set_read_timeout(retry.requestTimeout);
  client.set_write_timeout(retry.requestTimeout);

  auto backoff = retry.initialBackoff;
  std::string lastError;
  for (int attempt = 1; attempt <= retry.maxAttempts; ++attempt) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.attempts;
    }
    count(attemptsMetric_);
    httplib::Result res = client.Post(path_, headers, item.body, "application/json");
    if (res && res->status >= 200 && res->status < 300) {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.delivered;
      count(deliveredMetric_);
      return;
    }
    if (res && res->status < 500) {
      // The receiver understood and refused: sending the same body again will not help.
      log().warn("alert webhook {}: {} alert {} rejected with HTTP {}, not retrying", displayUrl_,
                 item.kind, item.deliveryId, res->status);
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.failed;
      count(failedMetric_);
      return;
    }
    lastError = res ? "HTTP " + std::to_string(res->status)
                    : "request failed (" + httplib::to_string(res.error()) + ")";
    if (attempt == retry.maxAttempts) {
      break;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (wake_.wait_for(lock, backoff, [this] { return stopping_; })) {
      ++stats_.dropped;  // shutting down mid-retry: abandoned, not refused
      count(droppedMetric_);
      return;
    }
    lock.unlock();
    backoff =
        std::min(retry.maxBackoff,
                 std::chrono::duration_cast<std::chrono::milliseconds>(backoff * retry.multiplier));
  }
  log().warn("alert webhook {}: {} alert {} not delivered after {} attempts, last: {}", displayUrl_,
             item.kind, item.deliveryId, retry.maxAttempts, lastError);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.failed;
  count(failedMetric_);
}

AlertFanout::AlertFanout(std::vector<std::shared_ptr<AlertSink>> sinks)
    : sinks_(std::move(sinks)) {}

void AlertFanout::add(std::shared_ptr<AlertSink> sink) {
  std::lock_guard<std::mutex> lock(mu_);
  sinks_.push_back(std::move(sink));
}

size_t AlertFanout::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sinks_.size();
}

void AlertFanout::send(const Alert& alert) {
  std::vector<std::shared_ptr<AlertSink>> sinks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sinks = sinks_;
  }
  for (const auto& sink : sinks) {
    sink->send(alert);
  }
}

bool AlertFanout::flush(std::chrono::milliseconds timeout) {
  std::vector<std::shared_ptr<AlertSink>> sinks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sinks = sinks_;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool all = true;
  for (const auto& sink : sinks) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    all = sink->flush(std::max(left, std::chrono::milliseconds(0))) && all;
  }
  return all;
}

}  // namespace hyper::controller
