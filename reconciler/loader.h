#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "reconciler/diagnostic.h"
#include "reconciler/file_sources.h"
#include "reconciler/managed_record.h"
#include "reconciler/object.h"
#include "reconciler/record_list.h"
#include "reconciler/schema.h"
#include "reconciler/yaml_json.h"

namespace hyper {

struct SourceFile {
  std::string path;  // as shown in diagnostics
  std::string content;
  // A reader that saw the file's size before reading it and found it over maxFileBytes leaves
  // `content` empty and says how big it was; the loader reports it like any file over the limit.
  size_t unreadBytes = 0;
};

// Reads manifest files: each path is a file or a directory searched recursively for *.yaml,
// *.yml and *.json (hidden files and directories skipped), in sorted order. Each SourceFile::path
// is the path as found from the given one, so DirectoryTree("") reads their file sources.
Result<std::vector<SourceFile>> readManifestFiles(const std::vector<std::string>& paths);

// What one revision may cost, checked before anything is parsed (sizes and counts) or while it is
// converted (YamlLimits), and always before schema validation. Defaults are far beyond a real
// host's manifests (hyper_bench loads 100000 objects in 1000 files within them); a revision over
// any of them is invalid like any other: reported with the limit's name, nothing applied.
struct LoaderLimits {
  size_t maxFileBytes = 4 << 20;
  // Manifest files and file sources together.
  size_t maxRevisionBytes = size_t{256} << 20;
  // One file source (KindRecord::fileSources): never read past it.
  size_t maxSourceFileBytes = 16 << 20;
  // One directory source (KindRecord::directorySources): its files' bytes, its entries (files,
  // directories and symlinks) and its depth.
  size_t maxSourceDirectoryBytes = size_t{64} << 20;
  size_t maxSourceDirectoryEntries = 10000;
  size_t maxSourceDirectoryDepth = 64;
  size_t maxFiles = 100000;
  size_t maxDocuments = 250000;  // in the whole revision
  YamlLimits yaml;
};

struct LoadResult {
  std::vector<std::shared_ptr<const Object>> objects;  // schema-valid, unique, sorted by kind/name
  Diagnostics diagnostics;
  // "dir:" + sha256 over the sorted file hashes, and those of the file sources read (when any)
  std::string revision;
  bool unchanged = false;  // same content as the previous load(): nothing was re-parsed
};

// Parses and schema-validates manifests. Keeps a cache keyed by file content hash, so an
// unchanged file is never re-parsed and an unchanged revision costs one hash per file.
//
// File sources (`fileSources`: the kinds' KindRecord::fileSources, by kind) are read at every
// load, after parsing, through the tree given to load(): the cache holds parsed objects, never
// their files, so a file source that changed under an unchanged manifest is read anew and
// changes the revision id (FileSourceResolver).
class ManifestLoader {
 public:
  explicit ManifestLoader(std::shared_ptr<const SchemaRegistry> schemas,
                          LoaderLimits limits = LoaderLimits{},
                          std::map<std::string, FileSourceFields> fileSources = {});

  // `tree` reads the file sources relative to each manifest's directory (SourceFile::path); null:
  // none can be read, and an object with one is an error.
  // `shareSpecs`: inventory records sorted by kind then name (Inventory::snapshot); an object
  // parsed now whose spec equals its record's holds the record's tree rather than a second one
  // (SharedJson). The records are not kept.
  LoadResult load(const std::vector<SourceFile>& files, const SourceTree* tree = nullptr,
                  const RecordList* shareSpecs = nullptr);

  // Pieces of large files parsed, and taken as the last load left them, since this loader was
  // made (parseFile).
  size_t piecesParsed() const { return piecesParsed_; }
  size_t piecesReused() const { return piecesReused_; }
  // A file of at least this many bytes is parsed in pieces of kPieceMinBytes and more, cut by
  // content (splitYamlStreamByContent), kPieceMaxBytes and one document at most. Small enough
  // that one edit in a file of 100 Networks and their policies (some 30 KB) re-parses about 40
  // documents rather than 200 (yaml-cpp reads some 5 MB/s: 6 ms of a push's 42 at 64 KiB).
  static constexpr size_t kPiecewiseFileBytes = 16 << 10;
  static constexpr size_t kPieceMinBytes = 4 << 10;
  static constexpr size_t kPieceMaxBytes = 64 << 10;

 private:
  struct CachedFile {
    size_t documents = 0;  // non-empty documents, valid or not
    size_t starts = 0;     // every document, empty ones too (what maxDocumentsPerFile counts)
    std::vector<std::shared_ptr<const Object>> objects;
    Diagnostics diagnostics;
    // A file parsed in pieces: each clean piece by its first line, whether it is the last and
    // its content's hash, for the next version of the file to take unchanged pieces from.
    std::map<std::string, std::shared_ptr<const CachedFile>> pieces;
    size_t piecesParsed = 0;
    size_t piecesReused = 0;
  };
  // `previous`: the last load's file at the same path, or null.
  CachedFile parseFile(const SourceFile& file, const CachedFile* previous) const;
  // Parses and checks YAML text of `fileName` (the whole file, or a piece of it after
  // `linesBefore` lines).
  CachedFile parseText(const std::string& text, std::shared_ptr<const std::string> fileName,
                       int linesBefore) const;
  // Runs parse(i) for every item, on up to kMaxLoadThreads threads (one per core) when there
  // are enough of them to be worth the threads; returns when all are done.
  static constexpr size_t kMaxLoadThreads = 8;
  // `itemsPerThread`: the fewest items worth a thread (one costs some 50 us to start: below a few
  // dozen files one thread parses them all; a piece of a large file is worth one).
  static void parseAll(const std::vector<size_t>& items, const std::function<void(size_t)>& parse,
                       size_t itemsPerThread = 32);

  std::shared_ptr<const SchemaRegistry> schemas_;
  LoaderLimits limits_;
  std::map<std::string, FileSourceFields> fileSources_;             // by kind; kinds with any
  std::map<std::string, std::shared_ptr<const CachedFile>> cache_;  // content hash -> parsed
  // The last load's file at each path (its pieces are looked up there).
  std::map<std::string, std::shared_ptr<const CachedFile>> byPath_;
  size_t piecesParsed_ = 0;
  size_t piecesReused_ = 0;
  std::string lastRevision_;
  const RecordList* shareSpecs_ = nullptr;  // during load() only
};

}  // namespace hyper
