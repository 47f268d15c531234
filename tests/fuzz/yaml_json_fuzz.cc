// YAML -> JSON conversion (reconciler/yaml_json.h) on arbitrary bytes, with small limits so that
// the fuzzer reaches every limit's error path. Invariants: no crash; a document without errors
// serialises to JSON that parses back to the same value.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "reconciler/yaml_json.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string content(reinterpret_cast<const char*>(data), size);
  auto fileName = std::make_shared<const std::string>("fuzz.yaml");
  hyper::YamlLimits limits;
  limits.maxDepth = 32;
  limits.maxNodesPerDocument = 5000;
  limits.maxBytesPerDocument = 256 << 10;
  limits.maxStringBytes = 16 << 10;
  limits.maxDocumentsPerFile = 100;
  hyper::Diagnostics diagnostics;
  auto docs = hyper::parseYamlDocuments(content, fileName, diagnostics, limits);
  FUZZ_CHECK(docs.size() <= limits.maxDocumentsPerFile);
  for (const auto& doc : docs) {
    if (doc.hasErrors) {
      continue;
    }
    std::string text = doc.value.dump(-1, ' ', false, hyper::Json::error_handler_t::replace);
    hyper::Json back = hyper::Json::parse(text, nullptr, /*allow_exceptions=*/false);
    FUZZ_CHECK(!back.is_discarded());
    // Strings with invalid UTF-8 are replaced on dump; compare only when there were none.
    std::string strict;
    try {
      strict = doc.value.dump();
    } catch (const hyper::Json::exception&) {
      continue;
    }
    FUZZ_CHECK(back == doc.value || back.dump() == strict);
  }
  (void)diagnostics.format();
  return 0;
}
