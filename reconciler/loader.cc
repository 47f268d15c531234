#include "reconciler/loader.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "base/file.h"
#include "base/names.h"
#include "base/sha256.h"
#include "reconciler/yaml_json.h"

namespace hyper {
namespace fs = std::filesystem;

namespace {

bool isManifestFile(const fs::path& p) {
  std::string ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

bool isHidden(const fs::path& p) {
  std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

std::map<std::string, std::string> stringMap(const Json& metadata, const char* field) {
  std::map<std::string, std::string> out;
  auto it = metadata.find(field);
  if (it != metadata.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      if (v.is_string()) {
        out[k] = v.get<std::string>();
      }
    }
  }
  return out;
}

// `target` is `root` or below it (both canonical: absolute, no symlinks, no "..").
bool isWithin(const fs::path& target, const fs::path& root) {
  auto t = target.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++t) {
    if (r->empty()) {
      continue;  // a trailing separator
    }
    if (t == target.end() || *t != *r) {
      return false;
    }
  }
  return true;
}

// A symlink met while walking `root`: where it leads, when that is inside `root`; an error naming
// it when it leads out (a manifest tree must not read /etc or another tenant's files through a
// link); nullopt when it leads nowhere (dangling: skipped, as before).
Result<std::optional<fs::path>> resolveInside(const fs::path& link, const fs::path& root) {
  std::error_code ec;
  fs::path target = fs::canonical(link, ec);
  if (ec) {
    return std::optional<fs::path>();
  }
  if (!isWithin(target, root)) {
    return Status::error(link.string() + " is a symlink to " + target.string() + ", outside " +
                         root.string() + " (links may only point inside the tree)");
  }
  return std::optional<fs::path>(target);
}

}  // namespace

Result<std::vector<SourceFile>> readManifestFiles(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const auto& root : paths) {
    std::error_code ec;
    fs::file_status st = fs::status(root, ec);
    if (ec || !fs::exists(st)) {
      return Status::error("read manifests " + root + " <- no such file or directory");
    }
    if (fs::is_regular_file(st)) {
      files.push_back(root);
      continue;
    }
    if (!fs::is_directory(st)) {
      return Status::error("read manifests " + root + " <- not a file or directory");
    }
    std::vector<std::string> found;
    fs::path canonicalRoot = fs::canonical(root, ec);
    if (ec) {
      return Status::error("read manifests " + root + " <- " + ec.message());
    }
    fs::recursive_directory_iterator it(root, fs::directory_options::follow_directory_symlink, ec);
    if (ec) {
      return Status::error("read manifests " + root + " <- " + ec.message());
    }
    for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) {
        return Status::error("read manifests " + root + " <- " + ec.message());
      }
      if (isHidden(it->path())) {
        if (it->is_directory()) {
          it.disable_recursion_pending();
        }
        continue;
      }
      std::error_code linkEc;
      if (it->is_symlink(linkEc)) {
        auto inside = resolveInside(it->path(), canonicalRoot);
        if (!inside.isOk()) {
          return inside.status().withContext("read manifests " + root);
        }
        if (!inside->has_value()) {
          continue;  // dangling
        }
      }
      if (it->is_regular_file() && isManifestFile(it->path())) {
        found.push_back(it->path().string());
      }
    }
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  // Sizes before contents: a file over the default maxFileBytes, or any file once the revision
  // is over maxRevisionBytes or maxFiles, is passed on with its size and never read, so a huge
  // file in a watched directory costs a stat, not its size in memory. The loader reports it.
  const LoaderLimits limits;
  std::vector<SourceFile> out;
  out.reserve(files.size());
  size_t total = 0;
  for (const auto& f : files) {
    struct stat st {};
    size_t size = ::stat(f.c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
    total += size;
    if (size > limits.maxFileBytes || total > limits.maxRevisionBytes ||
        out.size() >= limits.maxFiles) {
      out.push_back({f, "", size});
      continue;
    }
    HYPER_ASSIGN_OR_RETURN(std::string content, readFile(f));
    out.push_back({f, std::move(content)});
  }
  return out;
}

ManifestLoader::ManifestLoader(std::shared_ptr<const SchemaRegistry> schemas, LoaderLimits limits,
                               std::map<std::string, FileSourceFields> fileSources)
    : schemas_(std::move(schemas)), limits_(limits), fileSources_(std::move(fileSources)) {}

ManifestLoader::CachedFile ManifestLoader::parseFile(const SourceFile& file,
                                                     const CachedFile* previous) const {
  CachedFile out;
  size_t fileBytes = std::max(file.content.size(), file.unreadBytes);
  if (fileBytes > limits_.maxFileBytes) {
    out.diagnostics.add({Severity::Error,
                         {file.path, 0, 0},
                         {},
                         "",
                         "limit maxFileBytes exceeded: the file has " + std::to_string(fileBytes) +
                             " bytes (expected at most " + std::to_string(limits_.maxFileBytes) +
                             "; see docs/design.md, \"Limits\")"});
    return out;
  }
  auto fileName = std::make_shared<const std::string>(file.path);
  // A large file is parsed in pieces on every core (one file of 2,000 documents was a sixth of
  // a first apply's time), cut where its content says (splitYamlStreamByContent), and a piece
  // this loader parsed at the last load, with the same text at the same line, is taken as it
  // was: one document changed in a file of 10,000 re-parses the hundred or so around it. Only a
  // clean result is taken from the pieces: anything they report is reported from the whole file
  // instead, exactly as it would be alone.
  if (file.content.size() >= kPiecewiseFileBytes) {
    std::vector<YamlPiece> pieces =
        splitYamlStreamByContent(file.content, kPieceMinBytes, kPieceMaxBytes);
    if (pieces.size() > 1) {
      std::vector<std::string> keys(pieces.size());
      std::vector<std::shared_ptr<const CachedFile>> done(pieces.size());
      std::vector<size_t> toParse;
      for (size_t i = 0; i < pieces.size(); ++i) {
        keys[i] = std::to_string(pieces[i].linesBefore) + (pieces[i].last ? " last " : " more ") +
                  sha256Hex(pieces[i].text);
        if (previous) {
          if (auto cached = previous->pieces.find(keys[i]); cached != previous->pieces.end()) {
            done[i] = cached->second;
          }
        }
        if (!done[i]) {
          toParse.push_back(i);
        }
      }
      auto parse = [&](size_t i) {
        CachedFile piece;
        try {
          piece = parseText(pieces[i].parseText(), fileName, pieces[i].linesBefore);
        } catch (const std::exception& e) {
          piece.diagnostics.error({}, "", e.what());  // the whole file is parsed again
        }
        done[i] = std::make_shared<const CachedFile>(std::move(piece));
      };
      parseAll(toParse, parse, /*itemsPerThread=*/1);
      bool clean = true;
      size_t documents = 0;
      size_t starts = 0;
      for (const auto& piece : done) {
        clean = clean && piece->diagnostics.empty();
        documents += piece->documents;
        starts += piece->starts;
      }
      // Every piece but the last was parsed with one document start more (YamlPiece::parseText).
      starts -= pieces.size() - 1;
      if (clean && starts <= limits_.yaml.maxDocumentsPerFile) {
        out.documents = documents;
        out.starts = starts;
        for (size_t i = 0; i < pieces.size(); ++i) {
          out.objects.insert(out.objects.end(), done[i]->objects.begin(), done[i]->objects.end());
          out.pieces[keys[i]] = done[i];
        }
        out.piecesParsed = toParse.size();
        out.piecesReused = pieces.size() - toParse.size();
        return out;
      }
    }
  }
  return parseText(file.content, fileName, 0);
}

ManifestLoader::CachedFile ManifestLoader::parseText(const std::string& text,
                                                     std::shared_ptr<const std::string> fileName,
                                                     int linesBefore) const {
  CachedFile out;
  std::vector<YamlDocument> docs =
      parseYamlDocuments(text, fileName, out.diagnostics, limits_.yaml, linesBefore, &out.starts);
  out.documents = docs.size();
  for (auto& doc : docs) {
    std::string kind, name;
    if (doc.value.is_object()) {
      if (doc.value.contains("kind") && doc.value["kind"].is_string()) {
        kind = doc.value["kind"].get<std::string>();
      }
      const Json* meta = doc.value.contains("metadata") ? &doc.value["metadata"] : nullptr;
      if (meta && meta->is_object() && meta->contains("name") && (*meta)["name"].is_string()) {
        name = (*meta)["name"].get<std::string>();
      }
    }
    ObjectId label = !kind.empty() && !name.empty() ? ObjectId{kind, name} : ObjectId{};
    size_t errorsBefore = out.diagnostics.size();
    schemas_->validate(doc.value, doc.sourceMap, label, out.diagnostics);
    if (!name.empty()) {
      std::string problem = checkDnsLabel(name);
      if (!problem.empty()) {
        out.diagnostics.add({Severity::Error, doc.sourceMap.locate("metadata.name"), label,
                             "metadata.name", "name \"" + name + "\" " + problem});
      }
    }
    for (size_t i = errorsBefore; i < out.diagnostics.size(); ++i) {
      if (out.diagnostics.items()[i].where.line == 0) {
        out.diagnostics.items()[i].where = doc.where;
      }
    }
    if (out.diagnostics.size() != errorsBefore || doc.hasErrors) {
      continue;
    }
    auto object = std::make_shared<Object>();
    object->id = {kind, name};
    const Json& meta = doc.value["metadata"];
    object->labels = stringMap(meta, "labels");
    object->annotations = stringMap(meta, "annotations");
    // Copied, not moved: the copies are made after the file's YAML node trees are freed, so what
    // a revision keeps is allocated together rather than scattered between the holes the trees
    // leave, which slowed every later allocation (hyper_bench: a third less CPU for a cold load
    // of 10k objects). A copy also has no spare capacity.
    object->spec = doc.value["spec"];
    Json& spec = object->spec.mut();
    if (auto it = spec.find(kEnvelopeSpecField); it != spec.end()) {
      object->driftPolicy = *it == "alert" ? DriftPolicy::Alert : DriftPolicy::Correct;
      spec.erase(it);
    }
    if (shareSpecs_) {
      auto record =
          std::lower_bound(shareSpecs_->begin(), shareSpecs_->end(), object->id,
                           [](const ManagedRecord& r, const ObjectId& id) { return r.id < id; });
      if (record != shareSpecs_->end() && record->id == object->id) {
        object->spec.shareIfEqual(record->spec);
      }
    }
    object->where = doc.where;
    object->sourceMap = doc.sourceMap;
    out.objects.push_back(std::move(object));
  }
  return out;
}

void ManifestLoader::parseAll(const std::vector<size_t>& items,
                              const std::function<void(size_t)>& parse, size_t itemsPerThread) {
  size_t threads = std::min<size_t>({std::max(1u, std::thread::hardware_concurrency()),
                                     kMaxLoadThreads, items.size() / itemsPerThread});
  if (threads <= 1) {
    for (size_t i : items) {
      parse(i);
    }
    return;
  }
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t at = next++; at < items.size(); at = next++) {
      parse(items[at]);
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (size_t t = 1; t < threads; ++t) {
    pool.emplace_back(work);
  }
  work();
  for (auto& t : pool) {
    t.join();
  }
}

LoadResult ManifestLoader::load(const std::vector<SourceFile>& files, const SourceTree* tree,
                                const RecordList* shareSpecs) {
  shareSpecs_ = shareSpecs;
  struct Forget {
    const RecordList*& records;
    ~Forget() { records = nullptr; }
  } forget{shareSpecs_};
  LoadResult result;
  std::map<std::string, std::shared_ptr<const CachedFile>> nextCache;
  std::string revisionInput;
  std::vector<std::pair<const SourceFile*, std::string>> hashed;
  hashed.reserve(files.size());
  for (const auto& f : files) {
    Sha256 content;  // the content, then its unread size: not a copy of the two joined
    content.update(f.content);
    content.update(std::to_string(f.unreadBytes));
    std::string hash = content.hex();
    revisionInput += f.path;
    revisionInput += '\0';
    revisionInput += hash;
    revisionInput += '\n';
    hashed.emplace_back(&f, std::move(hash));
  }
  result.revision = "dir:" + sha256Hex(revisionInput).substr(0, 16);

  // Counts and sizes first: a revision over them is refused before anything is parsed.
  auto revisionLimit = [&](const SourceFile& at, const char* limit, size_t value,
                           const std::string& what) {
    result.diagnostics.add({Severity::Error,
                            {at.path, 0, 0},
                            {},
                            "",
                            "limit " + std::string(limit) + " exceeded: " + what +
                                " (expected at most " + std::to_string(value) +
                                "; see docs/design.md, \"Limits\")"});
    lastRevision_.clear();
    return result;
  };
  if (files.size() > limits_.maxFiles) {
    return revisionLimit(files[limits_.maxFiles], "maxFiles", limits_.maxFiles,
                         "the revision has " + std::to_string(files.size()) + " manifest files");
  }
  size_t totalBytes = 0;
  for (const auto& f : files) {
    totalBytes += std::max(f.content.size(), f.unreadBytes);
    if (totalBytes > limits_.maxRevisionBytes) {
      return revisionLimit(f, "maxRevisionBytes", limits_.maxRevisionBytes,
                           "the revision's manifest files add up to more bytes, counting up "
                           "to this one");
    }
  }

  // File sources count towards the revision's bytes after the manifests.
  FileSourceResolver sources(tree,
                             {limits_.maxSourceFileBytes,
                              limits_.maxRevisionBytes - totalBytes,
                              {limits_.maxSourceDirectoryEntries, limits_.maxSourceDirectoryBytes,
                               limits_.maxSourceDirectoryDepth}});

  // Parsed objects remember their file name, so the cache key is the path and the content.
  // Files not in the cache are parsed and checked on every core first (parseFile is const and
  // each file's result its own); what follows stays in file order.
  std::vector<std::string> keys;
  keys.reserve(hashed.size());
  std::vector<std::shared_ptr<const CachedFile>> fresh(hashed.size());
  std::vector<size_t> toParse;
  for (size_t i = 0; i < hashed.size(); ++i) {
    keys.push_back(hashed[i].first->path + '\0' + hashed[i].second);
    if (cache_.count(keys.back()) == 0) {
      toParse.push_back(i);
    }
  }
  parseAll(toParse, [&](size_t i) {
    auto previous = byPath_.find(hashed[i].first->path);
    fresh[i] = std::make_shared<const CachedFile>(
        parseFile(*hashed[i].first, previous == byPath_.end() ? nullptr : previous->second.get()));
  });
  for (size_t i : toParse) {
    piecesParsed_ += fresh[i]->piecesParsed;
    piecesReused_ += fresh[i]->piecesReused;
  }
  std::map<std::string, std::shared_ptr<const CachedFile>> nextByPath;
  std::unordered_map<ObjectIdView, const Object*, ObjectIdViewHash> seen;
  size_t documents = 0;
  for (size_t i = 0; i < hashed.size(); ++i) {
    const SourceFile* file = hashed[i].first;
    const std::string& key = keys[i];
    std::shared_ptr<const CachedFile> parsed = fresh[i];
    if (!parsed) {
      parsed = cache_.at(key);
    }
    nextCache[key] = parsed;
    nextByPath[file->path] = parsed;
    result.diagnostics.append(parsed->diagnostics);
    documents += parsed->documents;
    if (documents > limits_.maxDocuments) {
      result.objects.clear();
      return revisionLimit(*file, "maxDocuments", limits_.maxDocuments,
                           "the revision has more documents, counting up to this file");
    }
    for (const auto& object : parsed->objects) {
      auto [pos, inserted] = seen.emplace(ObjectIdView(object->id), object.get());
      if (!inserted) {
        result.diagnostics.add({Severity::Error, object->where, object->id, "",
                                object->id.str() + " is defined twice (first at " +
                                    pos->second->where.str() +
                                    "; expected each kind/name once per revision)"});
        continue;
      }
      if (auto fields = fileSources_.find(object->id.kind); fields != fileSources_.end()) {
        // A copy with its files, or null (refused: the diagnostics say why).
        if (auto resolved = sources.resolve(object, fields->second, result.diagnostics)) {
          result.objects.push_back(std::move(resolved));
        }
        continue;
      }
      result.objects.push_back(object);
    }
  }
  if (std::string read = sources.revisionInput(); !read.empty()) {
    result.revision = "dir:" + sha256Hex(revisionInput + "sources\n" + read).substr(0, 16);
  }
  result.unchanged = !lastRevision_.empty() && result.revision == lastRevision_;
  cache_ = std::move(nextCache);
  byPath_ = std::move(nextByPath);
  lastRevision_ = result.revision;
  std::sort(result.objects.begin(), result.objects.end(),
            [](const auto& a, const auto& b) { return a->id < b->id; });
  return result;
}

}  // namespace hyper
