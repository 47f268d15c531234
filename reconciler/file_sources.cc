#include "reconciler/file_sources.h"

#include "base/sha256.h"

namespace hyper {

namespace {

constexpr size_t kMaxSourcePathBytes = 1024;

constexpr const char* kInside = "expected a path inside it (no \"..\", not absolute, no symlinks)";

// The source string as a diagnostic quotes it: JSON-escaped, cut to 60 characters.
std::string quoted(const std::string& source) {
  std::string text = Json(source).dump(-1, ' ', false, Json::error_handler_t::replace);
  return text.size() > 60 ? text.substr(0, 57) + "..." : text;
}

std::string limitText(size_t value) {
  return " (expected at most " + std::to_string(value) + "; see docs/design.md, \"Limits\")";
}

}  // namespace

Result<FileSourceFields> FileSourceFields::parse(const std::vector<std::string>& paths,
                                                 const std::vector<std::string>& directoryPaths) {
  FileSourceFields out;
  for (const auto* list : {&paths, &directoryPaths}) {
    for (const auto& p : *list) {
      auto pattern = parseFieldPath(p, /*wildcards=*/true);
      if (!pattern) {
        return Status::error(std::string(list == &paths ? "file" : "directory") +
                             " source field \"" + p +
                             "\" is not a field path under spec (expected names joined "
                             "by '.', each optionally followed by [*] or [N])");
      }
      out.patterns_.emplace_back(std::move(*pattern), list == &directoryPaths);
    }
  }
  return out;
}

void FileSourceFields::forEach(
    const Json& spec,
    const std::function<void(const std::string&, const Json&, bool directory)>& visit) const {
  for (const auto& [pattern, directory] : patterns_) {
    const bool isDirectory = directory;
    forEachField(spec, pattern, "spec", [&](const std::string& path, const Json& value) {
      visit(path, value, isDirectory);
    });
  }
}

std::string checkSourcePath(std::string_view path) {
  if (path.empty()) {
    return "is empty: expected a path relative to the manifest's directory";
  }
  if (path.size() > kMaxSourcePathBytes) {
    return "is longer than " + std::to_string(kMaxSourcePathBytes) +
           " bytes: expected a path relative to the manifest's directory";
  }
  if (path.front() == '/') {
    return std::string("leaves the manifest's directory: ") + kInside;
  }
  bool plain = path.find('\0') == std::string_view::npos;
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('/', start);
    end = end == std::string_view::npos ? path.size() : end;
    std::string_view segment = path.substr(start, end - start);
    if (segment == "..") {
      return std::string("leaves the manifest's directory: ") + kInside;
    }
    plain = plain && !segment.empty() && segment != ".";
    start = end + 1;
  }
  if (!plain) {
    return "is not a plain relative path: expected names joined by \"/\" (no empty or \".\" "
           "segment, no NUL)";
  }
  return "";
}

std::string manifestDirectory(const std::string& manifestPath) {
  size_t slash = manifestPath.rfind('/');
  if (slash == std::string::npos) {
    return "";
  }
  return slash == 0 ? "/" : manifestPath.substr(0, slash);
}

FileSourceResolver::FileSourceResolver(const SourceTree* tree, FileSourceLimits limits)
    : tree_(tree), limits_(limits) {}

const FileSourceResolver::Outcome& FileSourceResolver::readOnce(const std::string& dir,
                                                                const std::string& path,
                                                                bool directory) {
  const std::string where = joinSourcePath(dir, path);
  auto [it, inserted] = reads_.try_emplace(directory ? where + "/" : where);
  Outcome& out = it->second;
  if (!inserted) {
    return out;
  }
  if (tree_ == nullptr) {
    out.problem = std::string("cannot be read here: no source tree was given (") +
                  (directory ? "directory" : "file") +
                  " sources are read from the manifests' directory or git commit)";
    return out;
  }
  auto read = directory ? tree_->readDirectory(dir, path, limits_.directory)
                        : tree_->read(dir, path, limits_.maxFileBytes);
  if (!read.isOk()) {
    out.problem = "cannot be read <- " + read.status().message();
    return out;
  }
  const std::string at = joinSourcePath(dir, read->at);
  const char* expected = directory ? "a directory" : "a file";
  switch (read->refusal) {
    case SourceTree::File::Refusal::None:
      break;
    case SourceTree::File::Refusal::Missing:
      out.problem = "not found: " + at + " does not exist (expected " + expected +
                    " at that path from the manifest's directory)";
      return out;
    case SourceTree::File::Refusal::Symlink:
      out.problem = "reaches a symlink (" + at + "): expected a path inside the manifest's " +
                    "directory (no \"..\", not absolute, no symlinks)";
      return out;
    case SourceTree::File::Refusal::NotAFile:
      if (directory && read->at == path) {
        out.problem =
            "is not a directory: " + at + " is " + read->detail + " (expected a directory)";
      } else if (directory) {
        out.problem = "holds " + at + ", which is " + read->detail +
                      " (expected files, directories and symlinks only)";
      } else {
        out.problem =
            "is not a regular file: " + at + " is " + read->detail + " (expected a regular file)";
      }
      return out;
    case SourceTree::File::Refusal::TooBig:
      out.limit = directory ? "maxSourceDirectoryBytes" : "maxSourceFileBytes";
      out.problem = directory ? "(" + where + ") has more than " +
                                    std::to_string(limits_.directory.maxBytes) +
                                    " bytes in its files, counting up to " + at +
                                    limitText(limits_.directory.maxBytes)
                              : "(" + where + ") has " + std::to_string(read->size) + " bytes" +
                                    limitText(limits_.maxFileBytes);
      return out;
    case SourceTree::File::Refusal::TooMany:
      if (read->detail == "levels") {
        out.limit = "maxSourceDirectoryDepth";
        out.problem = "(" + where + ") is deeper than " +
                      std::to_string(limits_.directory.maxDepth) + " levels at " + at +
                      limitText(limits_.directory.maxDepth);
      } else {
        out.limit = "maxSourceDirectoryEntries";
        out.problem = "(" + where + ") has more than " +
                      std::to_string(limits_.directory.maxEntries) + " entries, counting up to " +
                      at + limitText(limits_.directory.maxEntries);
      }
      return out;
  }
  if (read->bytes.size() > limits_.maxTotalBytes ||
      totalBytes_ > limits_.maxTotalBytes - read->bytes.size()) {
    out.limit = "maxRevisionBytes";
    out.problem = "(" + where + ", " + std::to_string(read->bytes.size()) +
                  " bytes) takes the revision's manifest and source files over the limit" +
                  limitText(limits_.maxTotalBytes);
    return out;
  }
  totalBytes_ += read->bytes.size();
  auto blob = std::make_shared<SourceBlob>();
  blob->digest = "sha256:" + sha256Hex(read->bytes);
  blob->bytes = std::move(read->bytes);
  out.blob = std::move(blob);
  return out;
}

std::shared_ptr<const Object> FileSourceResolver::resolve(
    const std::shared_ptr<const Object>& object, const FileSourceFields& fields,
    Diagnostics& diagnostics) {
  if (fields.empty()) {
    return object;
  }
  const std::string dir = manifestDirectory(object->sourceMap.file());
  std::map<std::string, std::shared_ptr<const SourceBlob>> files;
  bool failed = false;
  bool any = false;
  fields.forEach(object->spec, [&](const std::string& fieldPath, const Json& value,
                                   bool directory) {
    any = true;
    auto error = [&](const std::string& summary) {
      diagnostics.add({Severity::Error, object->locate(fieldPath), object->id, fieldPath, summary});
      failed = true;
    };
    if (!value.is_string()) {
      error(
          "a file source must be a string: expected a path relative to the manifest's "
          "directory");
      return;
    }
    const std::string source = value.get<std::string>();
    // A directory may be written with a "/" after it ("app/").
    const std::string path = directory && source.size() > 1 && source.back() == '/'
                                 ? source.substr(0, source.size() - 1)
                                 : source;
    if (std::string problem = checkSourcePath(path); !problem.empty()) {
      error(quoted(source) + " " + problem);
      return;
    }
    const Outcome& read = readOnce(dir, path, directory);
    if (!read.blob) {
      error(read.limit.empty()
                ? quoted(source) + " " + read.problem
                : "limit " + read.limit + " exceeded: " + quoted(source) + " " + read.problem);
      return;
    }
    files.emplace(source, read.blob);
  });
  if (!any) {
    return object;
  }
  if (failed) {
    return nullptr;
  }
  auto copy = std::make_shared<Object>(*object);
  copy->files = std::move(files);
  return copy;
}

std::string FileSourceResolver::revisionInput() const {
  std::string out;
  for (const auto& [where, outcome] : reads_) {
    // A refusal is part of it too: the same manifests once the missing file is there are another
    // revision, not the one rejected before.
    out += where;
    out += '\0';
    out += outcome.blob ? outcome.blob->digest : "refused: " + outcome.limit + outcome.problem;
    out += '\n';
  }
  return out;
}

}  // namespace hyper
