#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hyper::store {

// The content-addressed artifact store under `<state-dir>/store`, shared by every build and
// read by the VMs that boot from its artifacts:
//   sha256/<hex>       an artifact, immutable (0444), named by the SHA-256 of its bytes, shared
//                      by every build that produced the same bytes
//   keys/<key>.json    what the build with that key produced ({"artifacts": {NAME: {"digest",
//                      "size"}}, ...}): a key found here whose artifacts are all present is a
//                      cache hit that does no work
//   tmp/               artifacts being written; renamed into sha256/ once whole and fsynced
// A digest is written "sha256:<64 hex>" everywhere outside the store's own paths.
class ArtifactStore {
 public:
  // Nothing is read or made until used: reading a store that does not exist finds nothing, and
  // the first put() or recordKey() makes the directories.
  explicit ArtifactStore(std::string root) : root_(std::move(root)) {}

  const std::string& root() const { return root_; }

  // Stores `bytes` (written to tmp/, fsynced, made read-only, renamed; the directory fsynced)
  // and returns its digest. Storing bytes already there writes nothing.
  Result<std::string> put(std::string_view bytes);

  // A fresh, empty directory under tmp/ (on the store's filesystem) for a build to write large
  // outputs into; adopt() then moves them into place without a copy. The caller removes it; gc
  // removes what a crash left.
  Result<std::string> makeScratchDir(const std::string& label);
  // Stores the file at `path` (inside a scratch directory, or anywhere on the store's
  // filesystem), which is consumed: hashed while read, made read-only, fsynced and renamed into
  // sha256/ (or removed when the store already has those bytes). Returns its digest.
  Result<std::string> adopt(const std::string& path);

  // "sha256:<hex>" of well-formed digests: true when the artifact is in the store.
  bool has(const std::string& digest) const;
  // The artifact's path, or "" for a digest that is not "sha256:" and 64 lowercase hex digits.
  std::string pathOf(const std::string& digest) const;
  // Reads an artifact back, checking that its bytes still have its digest (an artifact changed
  // on disk is an error that says so). More than `maxBytes` is an error.
  Result<std::string> read(const std::string& digest, size_t maxBytes) const;

  // The signed provenance of an artifact (a DSSE envelope, provenance.h), kept beside it as
  // provenance/<hex>.dsse.json; the last build that produced the bytes wrote it.
  Status putProvenance(const std::string& digest, const nlohmann::json& envelope);
  Result<nlohmann::json> provenanceOf(const std::string& digest) const;

  // What collectGarbage did (or, dry, would do).
  struct GcReport {
    size_t kept = 0;
    uint64_t keptBytes = 0;
    std::vector<std::string> removed;  // digests
    uint64_t removedBytes = 0;
    size_t recordsRemoved = 0;  // keys/*.json naming a removed artifact
  };
  // Removes every artifact whose digest is not in `keep`, the key records that name one, and
  // whatever tmp/ holds (writes a crash cut short). The caller holds the state lock, so no build
  // writes meanwhile. Files in sha256/ that are not named by a digest are left alone.
  Result<GcReport> collectGarbage(const std::set<std::string>& keep, bool dryRun = false);

  // Records what the build with `key` (64 hex) produced; atomically, replacing any earlier record.
  Status recordKey(const std::string& key, const nlohmann::json& result);
  // The record of `key` when it exists and every artifact it names is present.
  std::optional<nlohmann::json> lookupKey(const std::string& key) const;

 private:
  Status makeDirectories() const;
  std::string root_;
};

// "sha256:<hex>" of `bytes`.
std::string digestOf(std::string_view bytes);
// "sha256:<hex>" of a file's bytes, read in blocks (a kernel's modules are hundreds of MB).
Result<std::string> digestOfFile(const std::string& path);
// True for "sha256:" followed by 64 lowercase hex digits.
bool isDigest(std::string_view digest);

}  // namespace hyper::store
