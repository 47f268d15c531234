#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace hyper::broker {

// Where this host lets the broker give a run its own cgroup with pids.max and memory.max: a
// cgroup2 mount whose root offers the pids and memory controllers, else the cgroup v1 pids and
// memory hierarchies (a hybrid host such as one with v1 controllers and an empty v2 `unified`
// mount). Each path is the broker's parent group under that mount (created at detection, which
// proves it writable); empty when not available.
struct CgroupSupport {
  std::string v2;        // <cgroup2 mount>/<parent>, with +pids +memory in its subtree_control
  std::string v1Pids;    // <v1 pids mount>/<parent>
  std::string v1Memory;  // <v1 memory mount>/<parent>
  std::string missing;   // what is missing, for the start-up warning; empty when nothing is

  bool pids() const { return !v2.empty() || !v1Pids.empty(); }
  bool memory() const { return !v2.empty() || !v1Memory.empty(); }
};

// Reads the mount table (the text of /proc/self/mounts) and creates `parent` under the mounts it
// can use: at the root of a cgroup2 mount (where controllers can be enabled whatever holds
// processes), and in v1 under the broker's own group of each hierarchy (`selfCgroupText`, the text
// of /proc/self/cgroup). Never fails: what cannot be used is named in `missing`.
CgroupSupport detectCgroups(const std::string& mountsText, const std::string& selfCgroupText,
                            const std::string& parent);

// One run's cgroup (one directory per hierarchy used), created with its limits before the run
// starts. The child moves itself in by writing "0" to each procsFds() descriptor before it drops
// privileges. The destructor kills whatever is still inside (processes that left the run's
// process group) and removes the directories.
class RunCgroup {
 public:
  // `pidsMax` / `memoryMax` of 0 mean no limit of that kind. A limit the host cannot apply is
  // left out (the caller was told at start); an error means a usable hierarchy refused.
  static Result<std::unique_ptr<RunCgroup>> create(const CgroupSupport& support,
                                                   const std::string& name, long long pidsMax,
                                                   long long memoryMax);
  ~RunCgroup();
  RunCgroup(const RunCgroup&) = delete;
  RunCgroup& operator=(const RunCgroup&) = delete;

  const std::vector<int>& procsFds() const { return procsFds_; }
  const std::vector<std::string>& dirs() const { return dirs_; }

 private:
  RunCgroup() = default;
  std::vector<std::string> dirs_;
  std::vector<int> procsFds_;
};

}  // namespace hyper::broker
