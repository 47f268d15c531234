#pragma once

#include <sys/types.h>

#include <map>
#include <mutex>

namespace hyper::broker {

// What one caller (uid) may hold of the daemon at once, and what the daemon holds in all. The
// defaults are far above what a build ever needs (make -j starts one client per recipe, and each
// holds one connection) and far below what exhausts the daemon (a thread and a few descriptors per
// connection).
struct CallerLimits {
  int maxConnections = 512;       // all callers together
  int maxConnectionsPerUid = 64;  // open connections of one uid, queued and running included
  int maxQueuedPerUid = 32;       // requests of one uid waiting for a rule's slot
  int queueTimeoutSec = 600;      // longest wait for a slot before the request is refused
};

// A count per uid against a limit: tryAdd takes one unit unless the uid already holds `limit`.
// Thread-safe.
class UidCounter {
 public:
  bool tryAdd(uid_t uid, int limit);
  void remove(uid_t uid);
  int count(uid_t uid) const;

 private:
  mutable std::mutex mu_;
  std::map<uid_t, int> counts_;
};

}  // namespace hyper::broker
