#pragma once

#include <string>
#include <vector>

#include "base/sha256.h"
#include "source/source.h"

namespace hyper::testing {

// An in-memory Source for loop tests: set the files (a new revision), or an error.
class FakeSource : public controller::Source {
 public:
  std::string describe() const override { return "fake"; }

  Result<bool> changed() override {
    ++changedCalls;
    if (!error.empty()) {
      return Status::error(error);
    }
    return revision_ != fetched_;
  }

  Result<controller::Snapshot> fetch() override {
    ++fetchCalls;
    if (!error.empty()) {
      return Status::error(error);
    }
    fetched_ = revision_;
    controller::Snapshot s;
    s.revision = revision_;
    s.commit = revision_;
    s.message = "test revision";
    s.files = files_;
    s.rewound = rewindNext;
    s.previousCommit = rewindNext ? "fake:previous" : "";
    s.allowPrune = allowPrune;
    rewindNext = false;
    return s;
  }

  // A new revision; its id is the hash of the content.
  void set(std::vector<SourceFile> files) {
    files_ = std::move(files);
    std::string all = allowPrune ? "allow-prune\n" : "";
    for (const auto& f : files_) {
      all += f.path + '\0' + f.content + '\0';
    }
    revision_ = "fake:" + sha256Hex(all).substr(0, 12);
  }
  const std::string& revision() const { return revision_; }

  std::string error;        // non-empty: changed() and fetch() fail with it
  bool rewindNext = false;  // the next fetch reports a force-push
  bool allowPrune = false;  // the revision approves its own mass delete (Snapshot::allowPrune)
  int changedCalls = 0;
  int fetchCalls = 0;

 private:
  std::vector<SourceFile> files_;
  std::string revision_ = "fake:empty";
  std::string fetched_;
};

}  // namespace hyper::testing
