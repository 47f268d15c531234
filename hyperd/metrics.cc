#include "hyperd/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace hyper::controller {
namespace {

enum Type { kCounter, kGauge, kHistogram };

const char* typeName(int type) {
  switch (type) {
    case kCounter:
      return "counter";
    case kGauge:
      return "gauge";
    default:
      return "histogram";
  }
}

// Misuse by hyper's own code (see the header): not recoverable, and not input.
[[noreturn]] void bug(const std::string& what) {
  std::fprintf(stderr, "hyper metrics: %s\n", what.c_str());
  std::abort();
}

bool validName(std::string_view s, bool allowColon) {
  if (s.empty()) {
    return false;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (allowColon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) {
      return false;
    }
  }
  return true;
}

MetricLabels canonicalLabels(const std::string& metric, const MetricLabels& labels,
                             bool histogram) {
  MetricLabels sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    const std::string& name = sorted[i].first;
    if (!validName(name, false) || name.rfind("__", 0) == 0 || (histogram && name == "le")) {
      bug("metric " + metric + ": invalid label name \"" + name + "\"");
    }
    if (i > 0 && sorted[i - 1].first == name) {
      bug("metric " + metric + ": label \"" + name + "\" given twice");
    }
  }
  return sorted;
}

std::string formatValue(double v) {
  if (std::isnan(v)) {
    return "NaN";
  }
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

std::string escapeLabelValue(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string escapeHelp(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="1",b="2"} with an optional extra pair last (le for buckets); empty when there are none.
std::string labelSet(const MetricLabels& labels, const char* extraName = nullptr,
                     const std::string& extraValue = "") {
  if (labels.empty() && !extraName) {
    return "";
  }
  std::string out = "{";
  bool first = true;
  auto add = [&](std::string_view name, std::string_view value) {
    if (!first) {
      out += ',';
    }
    first = false;
    out += name;
    out += "=\"";
    out += escapeLabelValue(value);
    out += '"';
  };
  for (const auto& [name, value] : labels) {
    add(name, value);
  }
  if (extraName) {
    add(extraName, extraValue);
  }
  out += '}';
  return out;
}

}  // namespace

void Counter::inc(double n) {
  if (n > 0) {
    value_.fetch_add(n, std::memory_order_relaxed);
  }
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  // Buckets are "less than or equal"; NaN lands in +Inf only.
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  if (std::isnan(v)) {
    i = bounds_.size();
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[i];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot out;
  out.bounds = bounds_;
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    out.cumulative.push_back(running);
  }
  out.sum = sum_;
  out.count = count_;
  return out;
}

struct Metrics::Family {
  std::string help;
  int type = kCounter;
  std::vector<double> buckets;
  std::map<MetricLabels, std::unique_ptr<Counter>> counters;
  std::map<MetricLabels, std::unique_ptr<Gauge>> gauges;
  std::map<MetricLabels, std::unique_ptr<Histogram>> histograms;
};

Metrics::Metrics() = default;
Metrics::~Metrics() = default;

Metrics::Family& Metrics::family(const std::string& name, const std::string& help, int type,
                                 const std::vector<double>* buckets) {
  if (!validName(name, true)) {
    bug("invalid metric name \"" + name + "\"");
  }
  auto& slot = families_[name];
  if (!slot) {
    slot = std::make_unique<Family>();
    slot->help = help;
    slot->type = type;
    if (buckets) {
      slot->buckets = *buckets;
    }
    return *slot;
  }
  if (slot->type != type || slot->help != help || (buckets && slot->buckets != *buckets)) {
    bug("metric " + name + " registered again as a " + typeName(type) +
        " with a different type, help or buckets");
  }
  return *slot;
}

Counter& Metrics::counter(const std::string& name, const std::string& help,
                          const MetricLabels& labels) {
  MetricLabels key = canonicalLabels(name, labels, false);
  std::lock_guard<std::mutex> lock(mu_);
  auto& series = family(name, help, kCounter, nullptr).counters[key];
  if (!series) {
    series = std::make_unique<Counter>();
  }
  return *series;
}

Gauge& Metrics::gauge(const std::string& name, const std::string& help,
                      const MetricLabels& labels) {
  MetricLabels key = canonicalLabels(name, labels, false);
  std::lock_guard<std::mutex> lock(mu_);
  auto& series = family(name, help, kGauge, nullptr).gauges[key];
  if (!series) {
    series = std::make_unique<Gauge>();
  }
  return *series;
}

Histogram& Metrics::histogram(const std::string& name, const std::string& help,
                              std::vector<double> buckets, const MetricLabels& labels) {
  buckets.erase(
      std::remove_if(buckets.begin(), buckets.end(), [](double b) { return !std::isfinite(b); }),
      buckets.end());
  std::sort(buckets.begin(), buckets.end());
  buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
  MetricLabels key = canonicalLabels(name, labels, true);
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = family(name, help, kHistogram, &buckets);
  auto& series = f.histograms[key];
  if (!series) {
    series = std::make_unique<Histogram>(f.buckets);
  }
  return *series;
}

std::string Metrics::render() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + escapeHelp(f->help) + "\n";
    out += "# TYPE " + name + " " + typeName(f->type) + "\n";
    for (const auto& [labels, c] : f->counters) {
      out += name + labelSet(labels) + " " + formatValue(c->value()) + "\n";
    }
    for (const auto& [labels, g] : f->gauges) {
      out += name + labelSet(labels) + " " + formatValue(g->value()) + "\n";
    }
    for (const auto& [labels, h] : f->histograms) {
      Histogram::Snapshot s = h->snapshot();
      for (size_t i = 0; i < s.cumulative.size(); ++i) {
        std::string le = i < s.bounds.size() ? formatValue(s.bounds[i]) : "+Inf";
        out += name + "_bucket" + labelSet(labels, "le", le) + " " +
               std::to_string(s.cumulative[i]) + "\n";
      }
      out += name + "_sum" + labelSet(labels) + " " + formatValue(s.sum) + "\n";
      out += name + "_count" + labelSet(labels) + " " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

std::vector<double> defaultDurationBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
}

}  // namespace hyper::controller
