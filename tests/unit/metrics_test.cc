#include "hyperd/metrics.h"

#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace hyper::controller {
namespace {

// One sample line of the text format, parsed back: name, labels (unescaped), value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string value;
};

// A strict reader for what render() must produce; fails the test on anything malformed.
std::vector<Sample> parseSamples(const std::string& text) {
  std::vector<Sample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("#", 0) == 0) {
      continue;
    }
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') {
      s.name += line[i++];
    }
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        EXPECT_NE(eq, std::string::npos) << line;
        std::string name = line.substr(i, eq - i);
        i = eq + 1;
        EXPECT_EQ(line[i], '"') << line;
        ++i;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            ++i;
            char c = line[i];
            EXPECT_TRUE(c == '\\' || c == '"' || c == 'n') << "bad escape in " << line;
            value += c == 'n' ? '\n' : c;
          } else {
            value += line[i];
          }
          ++i;
        }
        ++i;  // closing quote
        s.labels[name] = value;
        if (line[i] == ',') {
          ++i;
        }
      }
      ++i;  // '}'
    }
    EXPECT_EQ(line[i], ' ') << line;
    s.value = line.substr(i + 1);
    out.push_back(std::move(s));
  }
  return out;
}

std::string valueOf(const std::vector<Sample>& samples, const std::string& name,
                    const std::map<std::string, std::string>& labels = {}) {
  for (const auto& s : samples) {
    if (s.name == name && s.labels == labels) {
      return s.value;
    }
  }
  return "<absent>";
}

size_t countLines(const std::string& text, const std::string& line) {
  size_t n = 0;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) {
    n += l == line ? 1 : 0;
  }
  return n;
}

TEST(MetricsTest, CountersAndGaugesWithLabels) {
  Metrics m;
  m.counter("hyper_actions_total", "Actions executed, by result.", {{"result", "ok"}}).inc();
  m.counter("hyper_actions_total", "Actions executed, by result.", {{"result", "ok"}}).inc(2);
  m.counter("hyper_actions_total", "Actions executed, by result.", {{"result", "error"}}).inc();
  Gauge& ready = m.gauge("hyper_objects", "Objects by condition.", {{"condition", "Ready"}});
  ready.set(7);
  ready.inc();
  ready.dec(3);
  m.gauge("hyper_up", "1 when hyperd runs.").set(1);

  std::string text = m.render();
  auto samples = parseSamples(text);
  EXPECT_EQ(valueOf(samples, "hyper_actions_total", {{"result", "ok"}}), "3");
  EXPECT_EQ(valueOf(samples, "hyper_actions_total", {{"result", "error"}}), "1");
  EXPECT_EQ(valueOf(samples, "hyper_objects", {{"condition", "Ready"}}), "5");
  EXPECT_EQ(valueOf(samples, "hyper_up"), "1");
  EXPECT_EQ(countLines(text, "hyper_up 1"), 1u);  // no empty braces without labels
  EXPECT_EQ(countLines(text, "# HELP hyper_actions_total Actions executed, by result."), 1u);
  EXPECT_EQ(countLines(text, "# TYPE hyper_actions_total counter"), 1u);
  EXPECT_EQ(countLines(text, "# TYPE hyper_objects gauge"), 1u);
  EXPECT_EQ(samples.size(), 4u);
  // HELP and TYPE come before the family's samples.
  EXPECT_LT(text.find("# TYPE hyper_actions_total"), text.find("hyper_actions_total{"));
}

TEST(MetricsTest, SameSeriesIsTheSameObjectWhateverTheLabelOrder) {
  Metrics m;
  Counter& a = m.counter("x_total", "x", {{"a", "1"}, {"b", "2"}});
  Counter& b = m.counter("x_total", "x", {{"b", "2"}, {"a", "1"}});
  EXPECT_EQ(&a, &b);
  Counter& other = m.counter("x_total", "x", {{"a", "1"}, {"b", "3"}});
  EXPECT_NE(&a, &other);
  for (int i = 0; i < 100; ++i) {  // references survive growth of the registry
    m.counter("y_total", "y", {{"i", std::to_string(i)}});
  }
  a.inc(5);
  EXPECT_EQ(valueOf(parseSamples(m.render()), "x_total", {{"a", "1"}, {"b", "2"}}), "5");
  a.inc(-3);  // counters never go down
  EXPECT_EQ(a.value(), 5);
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  Metrics m;
  const std::string nasty = "C:\\dir \"quoted\"\nnext line";
  m.counter("hyper_errors_total", "Errors.\nSecond \\ line", {{"error", nasty}}).inc();
  std::string text = m.render();
  EXPECT_NE(text.find(R"(hyper_errors_total{error="C:\\dir \"quoted\"\nnext line"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# HELP hyper_errors_total Errors.\\nSecond \\\\ line\n"), std::string::npos)
      << text;
  // Exactly three lines: the value's newline did not split the sample.
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3);
  auto samples = parseSamples(text);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].labels.at("error"), nasty);
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Metrics m;
  Histogram& h =
      m.histogram("hyper_reconcile_duration_seconds", "Reconcile duration.", {10, 0.1, 1, 1});
  for (double v : {0.05, 0.1, 0.5, 5.0, 50.0}) {
    h.observe(v);
  }
  std::string text = m.render();
  auto samples = parseSamples(text);
  const std::string n = "hyper_reconcile_duration_seconds";
  EXPECT_EQ(countLines(text, "# TYPE " + n + " histogram"), 1u);
  EXPECT_EQ(valueOf(samples, n + "_bucket", {{"le", "0.1"}}), "2");  // le is inclusive
  EXPECT_EQ(valueOf(samples, n + "_bucket", {{"le", "1"}}), "3");
  EXPECT_EQ(valueOf(samples, n + "_bucket", {{"le", "10"}}), "4");
  EXPECT_EQ(valueOf(samples, n + "_bucket", {{"le", "+Inf"}}), "5");
  EXPECT_EQ(valueOf(samples, n + "_count"), "5");
  EXPECT_DOUBLE_EQ(std::stod(valueOf(samples, n + "_sum")), 55.65);
  // Buckets in ascending order, +Inf last, then _sum and _count.
  std::vector<std::string> order;
  for (const auto& s : samples) {
    order.push_back(s.name + (s.labels.count("le") ? ":" + s.labels.at("le") : ""));
  }
  EXPECT_EQ(order, (std::vector<std::string>{n + "_bucket:0.1", n + "_bucket:1", n + "_bucket:10",
                                             n + "_bucket:+Inf", n + "_sum", n + "_count"}));
}

TEST(MetricsTest, HistogramWithLabelsPutsLeLast) {
  Metrics m;
  m.histogram("d_seconds", "d", {1}, {{"provider", "net"}}).observe(0.5);
  std::string text = m.render();
  EXPECT_NE(text.find("d_seconds_bucket{provider=\"net\",le=\"1\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("d_seconds_bucket{provider=\"net\",le=\"+Inf\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("d_seconds_count{provider=\"net\"} 1\n"), std::string::npos);
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  Metrics m;
  Counter& c = m.counter("c_total", "c");
  Histogram& h = m.histogram("h_seconds", "h", {0.5});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        h.observe(i % 2 ? 1.0 : 0.0);
        if (i % 1000 == 0) {
          (void)m.render();
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  auto samples = parseSamples(m.render());
  EXPECT_EQ(valueOf(samples, "c_total"), "40000");
  EXPECT_EQ(valueOf(samples, "h_seconds_bucket", {{"le", "0.5"}}), "20000");
  EXPECT_EQ(valueOf(samples, "h_seconds_count"), "40000");
  EXPECT_EQ(valueOf(samples, "h_seconds_sum"), "20000");
}

TEST(MetricsTest, ReRegisteringWithAnotherTypeIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Metrics m;
  m.counter("x_total", "x");
  EXPECT_DEATH(m.gauge("x_total", "x"), "registered again");
  EXPECT_DEATH(m.counter("bad-name", "x"), "invalid metric name");
  EXPECT_DEATH(m.histogram("h", "h", {1}, {{"le", "1"}}), "invalid label name");
}

}  // namespace
}  // namespace hyper::controller
