#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "reconciler/diagnostic.h"
#include "reconciler/object.h"
#include "reconciler/schema.h"
#include "reconciler/status.h"

namespace hyper {

struct SourceFile {
  std::string path;  // as shown in diagnostics
  std::string content;
};

// Reads manifest files: each path is a file or a directory searched recursively for *.yaml,
// *.yml and *.json (hidden files and directories skipped), in sorted order.
Result<std::vector<SourceFile>> readManifestFiles(const std::vector<std::string>& paths);

struct LoadResult {
  std::vector<std::shared_ptr<const Object>> objects;  // schema-valid, unique, sorted by kind/name
  Diagnostics diagnostics;
  std::string revision;    // "dir:" + sha256 over the sorted file hashes
  bool unchanged = false;  // same content as the previous load(): nothing was re-parsed
};

// Parses and schema-validates manifests. Keeps a cache keyed by file content hash, so an
// unchanged file is never re-parsed and an unchanged revision costs one hash per file.
class ManifestLoader {
 public:
  explicit ManifestLoader(std::shared_ptr<const SchemaRegistry> schemas);

  LoadResult load(const std::vector<SourceFile>& files);

 private:
  struct CachedFile {
    std::vector<std::shared_ptr<const Object>> objects;
    Diagnostics diagnostics;
  };
  CachedFile parseFile(const SourceFile& file) const;

  std::shared_ptr<const SchemaRegistry> schemas_;
  std::map<std::string, std::shared_ptr<const CachedFile>> cache_;  // content hash -> parsed
  std::string lastRevision_;
};

}  // namespace hyper
