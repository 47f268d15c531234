#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconciler/managed_record.h"
#include "reconciler/record_list.h"

namespace hyper {
struct Revision;  // reconciler/engine.h
}

namespace hyper::controller {

// When a revision deletes so much that it is more likely a mistake (an emptied repository, a
// wrong sub-path, a bad merge) than an intent, it is held until someone approves it (hyperd), or
// refused unless --yes (hyperctl apply --prune). Argo CD's automated prune refuses to delete
// everything for the same reason.
struct HoldPolicy {
  // Held when it would delete every managed object (an empty revision does, when anything is
  // managed). false: never for this reason alone.
  bool deleteAll = true;
  // Held when more than this percentage of the managed objects would be deleted. 100: never for
  // this reason alone.
  int maxDeletedPercent = 100;
  // Held when more than this percentage of the running VMs would be deleted (2 of 4 applies, 3 of
  // 4 is held; deleting the only running VM is held). 100: never for this reason alone.
  int maxDeletedRunningVmsPercent = 50;
  // Which managed objects are running VMs (or other running work): KindRegistry::runningObjects(),
  // from the kinds' records. Null: none are.
  std::function<bool(const ManagedRecord&)> running;
};

// What a revision's prune would delete, counted against the inventory: a managed object that the
// revision no longer has is deleted by a prune; nothing else is. A running VM is a managed object
// for which `running` says so (its kind's KindRecord::running: a VM whose last applied spec does
// not say `running: false`).
struct DeletionCounts {
  size_t objects = 0;  // in the revision
  size_t managed = 0;
  size_t deleted = 0;
  size_t runningVms = 0;
  size_t deletedRunningVms = 0;

  nlohmann::json toJson() const;
};

struct HoldVerdict {
  bool hold = false;
  // Why, one line: "deletes every managed object (3 of 3)" or "deletes 3 of 4 running VMs (more
  // than 50%)". Empty when not held.
  std::string reason;
  DeletionCounts counts;
};

DeletionCounts countDeletions(const Revision& revision, const RecordList& managed,
                              const std::function<bool(const ManagedRecord&)>& running);
HoldVerdict judgeDeletions(const DeletionCounts& counts, const HoldPolicy& policy);

// The marker by which a commit approves its own mass delete: a line of its message (a git
// trailer) that reads exactly `Hyper-Allow-Prune: yes` (the key in any case, spaces after the
// colon and at the end of the line allowed). It belongs to that one commit, so a later commit is
// judged anew, and an empty repository or a directory source never carries it.
bool messageAllowsPrune(const std::string& message);

}  // namespace hyper::controller
