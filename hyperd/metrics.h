#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hyper::controller {

// Label pairs of one series, e.g. {{"result", "ok"}, {"kind", "Network"}}. Order does not matter:
// a series is identified by its sorted pairs.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// A value that only goes up (Prometheus counter). Thread-safe, lock-free.
class Counter {
 public:
  void inc(double n = 1);  // n < 0 is ignored: a counter never goes down
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down (Prometheus gauge). Thread-safe, lock-free.
class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  void dec(double n = 1) { value_.fetch_add(-n, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into fixed buckets (Prometheus histogram). Thread-safe; a snapshot is
// consistent (count equals the +Inf bucket).
class Histogram {
 public:
  // `bounds`: upper bounds, sorted ascending and distinct (checked by Metrics::histogram).
  explicit Histogram(std::vector<double> bounds);

  void observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is (last bound, +Inf)
  double sum_ = 0;
  uint64_t count_ = 0;
};

// A small registry of metrics rendered in the Prometheus text exposition format (version 0.0.4)
// for GET /metrics. Every accessor returns a reference that stays valid for the life of the
// registry, so hot paths look a series up once and keep it.
//
// Names and label names are chosen by hyper's own code, so an invalid one, or a name registered
// again with another type, help text, or bucket layout, is a bug and aborts. Label *values* are
// input (object names, error kinds) and are escaped.
class Metrics {
 public:
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  Counter& counter(const std::string& name, const std::string& help,
                   const MetricLabels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const MetricLabels& labels = {});
  // `buckets`: the upper bounds (the +Inf bucket is implicit); sorted here, duplicates and
  // infinities dropped. Every series of one name has the same buckets.
  Histogram& histogram(const std::string& name, const std::string& help,
                       std::vector<double> buckets, const MetricLabels& labels = {});

  // Families sorted by name, series by labels; HELP and TYPE once per family.
  std::string render() const;

 private:
  struct Family;
  Family& family(const std::string& name, const std::string& help, int type,
                 const std::vector<double>* buckets);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>> families_;
};

// Buckets for durations in seconds, from 5 ms to 5 min.
std::vector<double> defaultDurationBuckets();

}  // namespace hyper::controller
