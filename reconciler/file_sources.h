#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "reconciler/diagnostic.h"
#include "reconciler/directory_archive.h"
#include "reconciler/field_path.h"
#include "reconciler/object.h"
#include "reconciler/source_tree.h"

namespace hyper {

// The fields of a kind that name file sources (KindRecord::fileSources): paths under spec such
// as "initramfs.files[*].source" whose string values are files of the manifests' tree, relative
// to the directory of the manifest that declares the object. The loader reads them
// (FileSourceResolver) into Object::files; the kind's provider takes the bytes from there.
//
// Directory sources (KindRecord::directorySources, like a script Build's source.path) name a
// directory instead: the loader reads it whole into a directory archive (directory_archive.h),
// kept in Object::files like a file's bytes.
class FileSourceFields {
 public:
  // Checks the syntax as SecretFields::parse does; the error names the bad path.
  static Result<FileSourceFields> parse(const std::vector<std::string>& paths,
                                        const std::vector<std::string>& directoryPaths = {});
  FileSourceFields() = default;

  bool empty() const { return patterns_.empty(); }
  // Every field of `spec` that the declarations name, with its path from the object
  // ("spec.initramfs.files[0].source") and whether it names a directory, in declaration (files
  // first) then document order.
  void forEach(
      const Json& spec,
      const std::function<void(const std::string&, const Json&, bool directory)>& visit) const;

 private:
  std::vector<std::pair<FieldPattern, bool>> patterns_;  // and whether it names a directory
};

// What is wrong with `path` as a file source, or "" when it is a plain relative path: names
// joined by '/', none empty, "." or "..", not absolute, no NUL, at most 1024 bytes. The text
// follows the quoted path in a diagnostic.
std::string checkSourcePath(std::string_view path);

// The size limits of file sources (LoaderLimits has them).
struct FileSourceLimits {
  size_t maxFileBytes = 16 << 20;   // one file source
  size_t maxTotalBytes = SIZE_MAX;  // all of a revision's file sources together
  ArchiveLimits directory;          // one directory source
};

// Reads the file sources of one load's objects. Each distinct file (dir/path) is read once per
// load, so a file named by two objects costs one read and counts once towards the total.
class FileSourceResolver {
 public:
  // `tree` null: nothing can be read here; every file source is an error saying so.
  FileSourceResolver(const SourceTree* tree, FileSourceLimits limits);

  // `object` itself when `fields` name no file source in its spec; a copy with Object::files
  // filled when every one was read; null when one was refused or missing (each is an error in
  // `diagnostics` at the field, with its path: the object is left out of the revision, as an
  // object that fails its schema is).
  std::shared_ptr<const Object> resolve(const std::shared_ptr<const Object>& object,
                                        const FileSourceFields& fields, Diagnostics& diagnostics);

  // One line "dir/path\0digest\n" per file read (or refused: then what was wrong), sorted: what
  // the revision id adds for them (empty when none was read, so that a revision without file
  // sources keeps its id).
  std::string revisionInput() const;

 private:
  struct Outcome {
    std::shared_ptr<const SourceBlob> blob;  // null: `problem` says why
    std::string problem;                     // follows the quoted source string
    std::string limit;                       // a limit's name when that is the problem
  };
  const Outcome& readOnce(const std::string& dir, const std::string& path, bool directory);

  const SourceTree* tree_;
  FileSourceLimits limits_;
  size_t totalBytes_ = 0;
  std::map<std::string, Outcome> reads_;  // by joinSourcePath(dir, path) ("/" after a directory)
};

// The directory of a manifest file as SourceFile::path names it: "envs/a.yaml" -> "envs",
// "a.yaml" -> "", "/a.yaml" -> "/".
std::string manifestDirectory(const std::string& manifestPath);

}  // namespace hyper
