// ManifestLoader::load (reconciler/loader.h) on one file of arbitrary bytes, validated against the
// built-in schemas, with the Build kind's file source field declared and an in-memory tree (no
// file is touched). Invariants: no crash; a valid load is reproducible (the same objects and
// revision from a fresh loader), and a second load of the same bytes is reported unchanged; every
// file source of a loaded object passed the path check and carries the tree's bytes and their
// digest. The input is also given to checkSourcePath whole: what it accepts is relative and
// never goes up.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/sha256.h"
#include "reconciler/file_sources.h"
#include "reconciler/loader.h"
#include "reconciler/schema.h"
#include "reconciler/source_tree.h"
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

// As providers/build/registration.cc declares it (this target links no provider).
std::map<std::string, hyper::FileSourceFields> fileSources() {
  auto fields =
      hyper::FileSourceFields::parse({"initramfs.files[*].source"}, {"script.source.path"});
  FUZZ_CHECK(fields.isOk());
  return {{"Build", *fields}};
}

// A small tree beside fuzz.yaml: two files, a symlink and a directory (also as an archive).
const hyper::MemoryTree& tree() {
  static const hyper::MemoryTree t = [] {
    using File = hyper::SourceTree::File;
    std::map<std::string, File> files;
    files["init.sh"].bytes = "#!/bin/sh\necho hi\n";
    files["web/init.sh"].bytes = std::string("\0binary\xff", 8);
    files["link"].refusal = File::Refusal::Symlink;
    files["link"].at = "link";
    files["web"].refusal = File::Refusal::NotAFile;
    files["web"].at = "web";
    files["web"].detail = "a directory";
    files["web/"].bytes = hyper::encodeDirectoryArchive(
        {{"init.sh", hyper::ArchiveEntry::Type::File, std::string("\0binary\xff", 8)}});
    return hyper::MemoryTree(std::move(files));
  }();
  return t;
}

// Every file source of `o` was checked and carries the bytes it names.
void checkFiles(const hyper::Object& o, const hyper::FileSourceFields& fields) {
  size_t sources = 0;
  fields.forEach(o.spec, [&](const std::string&, const hyper::Json& value, bool directory) {
    FUZZ_CHECK(value.is_string());
    const std::string source = value.get<std::string>();
    std::string path = source;
    if (directory && path.size() > 1 && path.back() == '/') {
      path.pop_back();
    }
    FUZZ_CHECK(hyper::checkSourcePath(path).empty());
    if (directory) {
      FUZZ_CHECK(o.files.count(source) == 1 &&
                 hyper::decodeDirectoryArchive(o.files.at(source)->bytes).isOk());
    }
    auto it = o.files.find(source);
    FUZZ_CHECK(it != o.files.end() && it->second != nullptr);
    FUZZ_CHECK(it->second->digest == "sha256:" + hyper::sha256Hex(it->second->bytes));
    ++sources;
  });
  FUZZ_CHECK(o.files.size() <= sources);
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
  limits.maxSourceFileBytes = 12;  // web/init.sh fits, init.sh does not
  return limits;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<hyper::SourceFile> files = {
      {"fuzz.yaml", std::string(reinterpret_cast<const char*>(data), size)}};
  const std::string whole(reinterpret_cast<const char*>(data), size);
  if (hyper::checkSourcePath(whole).empty()) {
    FUZZ_CHECK(!whole.empty() && whole[0] != '/' && whole.size() <= 1024);
    FUZZ_CHECK(whole != ".." && whole.rfind("../", 0) != 0 &&
               whole.find("/../") == std::string::npos &&
               (whole.size() < 3 || whole.compare(whole.size() - 3, 3, "/..") != 0));
  }

  static const auto sources = fileSources();
  hyper::ManifestLoader loader(schemas(), smallLimits(), sources);
  hyper::LoadResult first = loader.load(files, &tree());
  (void)first.diagnostics.format();
  hyper::LoadResult again = loader.load(files, &tree());
  FUZZ_CHECK(again.unchanged);
  FUZZ_CHECK(again.revision == first.revision);

  hyper::ManifestLoader fresh(schemas(), smallLimits(), sources);
  hyper::LoadResult second = fresh.load(files, &tree());
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
    if (auto fields = sources.find(first.objects[i]->id.kind); fields != sources.end()) {
      checkFiles(*first.objects[i], fields->second);
    }
  }
  return 0;
}
