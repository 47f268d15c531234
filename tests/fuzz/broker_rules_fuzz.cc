// The broker's rule-file parser (broker/rules.h) on arbitrary bytes. Public functions only:
// broker/ is not changed here. Invariants: no crash; parsing is deterministic (the same rules
// twice), and the file form of the rules (rulesToJson) parses back to the same rules.
#include <cstddef>
#include <cstdint>
#include <string>

#include "broker/rules.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto first = hyper::broker::parseRules(text, "fuzz.rules");
  auto second = hyper::broker::parseRules(text, "fuzz.rules");
  FUZZ_CHECK(first.isOk() == second.isOk());
  if (!first.isOk()) {
    FUZZ_CHECK(first.status().message() == second.status().message());
    return 0;
  }
  std::string a = hyper::broker::rulesToJson(first->rules)
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string b = hyper::broker::rulesToJson(second->rules)
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  FUZZ_CHECK(a == b);
  // What rulesToJson writes is a rule file that parses back to the same rules.
  std::string strict;
  try {
    strict = hyper::broker::rulesToJson(first->rules).dump();
  } catch (const nlohmann::json::exception&) {
    return 0;  // invalid UTF-8 in a string: the strict dump refuses it
  }
  auto again = hyper::broker::parseRules(strict, "fuzz.rules");
  FUZZ_CHECK(again.isOk());
  FUZZ_CHECK(hyper::broker::rulesToJson(again->rules).dump() == strict);
  return 0;
}
