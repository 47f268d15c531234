// ManifestLoader::load (reconciler/loader.h) on one file of arbitrary bytes, validated against the
// built-in schemas. Invariants: no crash; a valid load is reproducible (the same objects and
// revision from a fresh loader), and a second load of the same bytes is reported unchanged.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reconciler/loader.h"
#include "reconciler/schema.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

std::shared_ptr<const hyper::SchemaRegistry> schemas() {
  static const std::shared_ptr<const hyper::SchemaRegistry> registry = [] {
    auto r = hyper::SchemaRegistry::builtin();
    FUZZ_CHECK(r.isOk());
    return *r;
  }();
  return registry;
}

hyper::LoaderLimits smallLimits() {
  hyper::LoaderLimits limits;
  limits.maxFileBytes = 256 << 10;
  limits.maxDocuments = 200;
  limits.yaml.maxDepth = 32;
  limits.yaml.maxNodesPerDocument = 5000;
  limits.yaml.maxBytesPerDocument = 256 << 10;
  limits.yaml.maxStringBytes = 16 << 10;
  limits.yaml.maxDocumentsPerFile = 100;
  return limits;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<hyper::SourceFile> files = {
      {"fuzz.yaml", std::string(reinterpret_cast<const char*>(data), size)}};
  hyper::ManifestLoader loader(schemas(), smallLimits());
  hyper::LoadResult first = loader.load(files);
  (void)first.diagnostics.format();
  hyper::LoadResult again = loader.load(files);
  FUZZ_CHECK(again.unchanged);
  FUZZ_CHECK(again.revision == first.revision);

  hyper::ManifestLoader fresh(schemas(), smallLimits());
  hyper::LoadResult second = fresh.load(files);
  FUZZ_CHECK(second.revision == first.revision);
  FUZZ_CHECK(second.objects.size() == first.objects.size());
  FUZZ_CHECK(second.diagnostics.hasErrors() == first.diagnostics.hasErrors());
  for (size_t i = 0; i < first.objects.size(); ++i) {
    FUZZ_CHECK(first.objects[i]->id == second.objects[i]->id);
    FUZZ_CHECK(hyper::canonicalJson(first.objects[i]->spec) ==
               hyper::canonicalJson(second.objects[i]->spec));
    if (i > 0) {
      FUZZ_CHECK(first.objects[i - 1]->id < first.objects[i]->id);  // sorted and unique
    }
  }
  return 0;
}
