#include "hyperd/logging.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "base/log_context.h"

namespace hyper::controller {
namespace {

// Routes the default logger to a string for the test and puts the previous one back after.
class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  }
  void TearDown() override { spdlog::set_default_logger(previous_); }

  std::vector<std::string> lines() {
    std::vector<std::string> out;
    std::istringstream in(out_.str());
    for (std::string line; std::getline(in, line);) {
      out.push_back(line);
    }
    return out;
  }

  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST_F(LoggingTest, TextLinesNameTheReconcile) {
  ASSERT_TRUE(setupLogging("text", "info").isOk());
  spdlog::info("outside");
  {
    ReconcileIdScope scope("r-abc123");
    spdlog::warn("Network/lab: created");
  }
  spdlog::debug("below the level");
  auto l = lines();
  ASSERT_EQ(l.size(), 2u) << out_.str();
  EXPECT_NE(l[0].find(" info [-] outside"), std::string::npos) << l[0];
  EXPECT_NE(l[1].find(" warning [r-abc123] Network/lab: created"), std::string::npos) << l[1];
}

TEST_F(LoggingTest, JsonLinesAreOneObjectEach) {
  ASSERT_TRUE(setupLogging("json", "debug").isOk());
  {
    ReconcileIdScope scope("r-9");
    spdlog::error("quote \" backslash \\ newline \n tab \t done");
  }
  spdlog::debug("no reconcile");
  auto l = lines();
  ASSERT_EQ(l.size(), 2u) << out_.str();
  auto first = nlohmann::json::parse(l[0]);
  EXPECT_EQ(first["level"], "error");
  EXPECT_EQ(first["reconcileId"], "r-9");
  EXPECT_EQ(first["msg"], "quote \" backslash \\ newline \n tab \t done");
  EXPECT_FALSE(first["time"].get<std::string>().empty());
  auto second = nlohmann::json::parse(l[1]);
  EXPECT_EQ(second["reconcileId"], "");
  EXPECT_EQ(second["level"], "debug");
}

TEST_F(LoggingTest, UnknownFormatsAndLevelsAreErrors) {
  auto bad = setupLogging("xml", "info");
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.message(), "log format \"xml\": expected text or json");
  bad = setupLogging("text", "loud");
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.message(),
            "log level \"loud\": expected trace, debug, info, warn, error, critical or off");
}

}  // namespace
}  // namespace hyper::controller
