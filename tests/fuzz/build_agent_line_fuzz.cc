// What a builder VM's agent says to the host (guest/build_protocol.h): not trusted. Input: one
// line, parsed as the host does; and the same bytes as a job's JSON (what the agent parses).
// Invariants: no crash, no hang; output chunks are never larger than kOutputChunk; a parsed step
// number is never negative.
#include <cstddef>
#include <cstdint>
#include <string>

#include "guest/build_protocol.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto line = hyper::guest::parseAgentLine(text);
  if (line.isOk()) {
    FUZZ_CHECK(line->data.size() <= hyper::guest::kMaxBuildLine);
    if (line->kind == hyper::guest::AgentLine::Kind::Out ||
        line->kind == hyper::guest::AgentLine::Kind::Err) {
      FUZZ_CHECK(line->data.size() <= hyper::guest::kOutputChunk);
      FUZZ_CHECK(line->step >= 0);
    }
  } else {
    FUZZ_CHECK(line.status().message().size() < 400);
  }
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_discarded()) {
    auto job = hyper::guest::BuildJob::fromJson(json);
    if (job.isOk()) {
      FUZZ_CHECK(job->steps.size() <= 64);
      auto again = hyper::guest::BuildJob::fromJson(job->toJson());
      FUZZ_CHECK(again.isOk() && again->steps == job->steps && again->env == job->env);
    }
  }
  return 0;
}
