#include "hyperd/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "base/log_context.h"

namespace hyper::controller {
namespace {

// %* : the thread's reconcile id, "-" outside a reconcile (text lines).
class ReconcileIdFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string& id = currentReconcileId();
    const std::string& shown = id.empty() ? kNone : id;
    dest.append(shown.data(), shown.data() + shown.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return spdlog::details::make_unique<ReconcileIdFlag>();
  }

 private:
  inline static const std::string kNone = "-";
};

// The inside of a JSON string: the text escaped, without the quotes.
void appendJsonEscaped(const std::string& text, spdlog::memory_buf_t& dest) {
  std::string quoted =
      nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  dest.append(quoted.data() + 1, quoted.data() + quoted.size() - 1);
}

// %Q : the reconcile id, JSON-escaped, empty outside a reconcile (json lines).
class JsonReconcileIdFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    appendJsonEscaped(currentReconcileId(), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return spdlog::details::make_unique<JsonReconcileIdFlag>();
  }
};

// %J : the message, JSON-escaped (invalid UTF-8 replaced, never dropped).
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    appendJsonEscaped(std::string(msg.payload.data(), msg.payload.size()), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return spdlog::details::make_unique<JsonMessageFlag>();
  }
};

}  // namespace

Status setupLogging(const std::string& format, const std::string& level) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    return Status::error("log level \"" + level +
                         "\": expected trace, debug, info, warn, error, critical or off");
  }
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (format == "text") {
    formatter->add_flag<ReconcileIdFlag>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ [%*] %v");
  } else if (format == "json") {
    formatter->add_flag<JsonReconcileIdFlag>('Q').add_flag<JsonMessageFlag>('J').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","reconcileId":"%Q","msg":"%J"})");
  } else {
    return Status::error("log format \"" + format + "\": expected text or json");
  }
  spdlog::set_formatter(std::move(formatter));
  spdlog::set_level(lvl);
  return Status::ok();
}

}  // namespace hyper::controller
