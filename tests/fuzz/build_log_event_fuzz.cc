// A build's log line as the events route reads it (providers/build/build_events.h). The log holds
// what a builder VM's steps printed, so its bytes are the guest's: not trusted. Invariants: no
// crash, no hang; every event has a known type, the line number it was given, and serialises
// (with invalid UTF-8 replaced, as the route does); a step number is never negative; a step's
// text is a part of the line; a final line is a status.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "providers/build/build_events.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string line(reinterpret_cast<const char*>(data), size);
  const int64_t number = static_cast<int64_t>(size) + 1;
  nlohmann::json e = hyper::providers::build::buildLogEvent(line, number);
  FUZZ_CHECK(e.is_object());
  FUZZ_CHECK(e.value("line", int64_t{-1}) == number);
  const std::string type = e.value("type", "");
  FUZZ_CHECK(type == "step" || type == "log" || type == "status");
  if (e.contains("step")) {
    FUZZ_CHECK(e["step"].is_number_integer() && e["step"].get<int64_t>() >= 0);
  }
  if (type == "step") {
    static const std::set<std::string> phases = {"start", "exit", "signal"};
    FUZZ_CHECK(phases.count(e.value("phase", "")) == 1);
  }
  if (type == "log" || type == "status") {
    FUZZ_CHECK(line.find(e.value("text", std::string("\x01missing"))) != std::string::npos);
  }
  if (hyper::providers::build::isFinalBuildLine(line)) {
    FUZZ_CHECK(type == "status");
  }
  const std::string wire = e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  FUZZ_CHECK(!wire.empty() && wire.find('\n') == std::string::npos);
  return 0;
}
