// hyperd's config parser (hyperd/config.h: parseConfig from text) on arbitrary bytes.
// parseConfig reads the secret and key files a valid config names; a fuzz target must not read
// the host's files, so inputs that could name one (any "File" key, written plainly or through a
// YAML escape) are skipped. Invariants: no crash; a config that parses parses again the same.
#include <cstddef>
#include <cstdint>
#include <string>

#include "hyperd/config.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  if (text.find("File") != std::string::npos || text.find('\\') != std::string::npos) {
    return 0;
  }
  auto first = hyper::controller::parseConfig(text, "fuzz.yaml");
  auto second = hyper::controller::parseConfig(text, "fuzz.yaml");
  FUZZ_CHECK(first.isOk() == second.isOk());
  if (!first.isOk()) {
    FUZZ_CHECK(first.status().message() == second.status().message());
    return 0;
  }
  FUZZ_CHECK(first->source.url == second->source.url);
  FUZZ_CHECK(first->listenPort == second->listenPort);
  FUZZ_CHECK(first->alerts.size() == second->alerts.size());
  FUZZ_CHECK(first->listenPort >= 0 && first->listenPort <= 65535);
  FUZZ_CHECK(first->parallelism > 0);
  return 0;
}
