#include "controller/hold.h"

#include <algorithm>
#include <cctype>

#include "reconciler/engine.h"

namespace hyper::controller {

namespace {

// more than `percent`% of `whole`, in integers: part * 100 > whole * percent.
bool over(size_t part, size_t whole, int percent) {
  return whole > 0 && part * 100 > whole * static_cast<size_t>(std::clamp(percent, 0, 100));
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

nlohmann::json DeletionCounts::toJson() const {
  return {{"objects", objects},
          {"managed", managed},
          {"deleted", deleted},
          {"runningVms", runningVms},
          {"deletedRunningVms", deletedRunningVms}};
}

DeletionCounts countDeletions(const Revision& revision, const RecordList& managed,
                              const std::function<bool(const ManagedRecord&)>& running) {
  DeletionCounts c;
  c.objects = revision.objects.size();
  c.managed = managed.size();
  // Both are in id order (the inventory's and a revision's): one walk finds every record's
  // object. A record out of order starts the walk again.
  auto next = revision.objects.begin();
  const ObjectId* previous = nullptr;
  for (const auto& r : managed) {
    if (previous && r.id < *previous) {
      next = revision.objects.begin();
    }
    previous = &r.id;
    while (next != revision.objects.end() && (*next)->id < r.id) {
      ++next;
    }
    bool gone = next == revision.objects.end() || (*next)->id != r.id;
    bool runs = running && running(r);
    c.deleted += gone ? 1 : 0;
    c.runningVms += runs ? 1 : 0;
    c.deletedRunningVms += gone && runs ? 1 : 0;
  }
  return c;
}

HoldVerdict judgeDeletions(const DeletionCounts& counts, const HoldPolicy& policy) {
  HoldVerdict v;
  v.counts = counts;
  auto of = [](size_t a, size_t b) { return std::to_string(a) + " of " + std::to_string(b); };
  if (policy.deleteAll && counts.managed > 0 && counts.deleted == counts.managed) {
    v.hold = true;
    v.reason = "deletes every managed object (" + of(counts.deleted, counts.managed) + ")";
  } else if (over(counts.deleted, counts.managed, policy.maxDeletedPercent)) {
    v.hold = true;
    v.reason = "deletes " + of(counts.deleted, counts.managed) + " managed objects (more than " +
               std::to_string(policy.maxDeletedPercent) + "%)";
  } else if (over(counts.deletedRunningVms, counts.runningVms,
                  policy.maxDeletedRunningVmsPercent)) {
    v.hold = true;
    v.reason = "deletes " + of(counts.deletedRunningVms, counts.runningVms) +
               " running VMs (more than " + std::to_string(policy.maxDeletedRunningVmsPercent) +
               "%)";
  }
  return v;
}

bool messageAllowsPrune(const std::string& message) {
  static const std::string kKey = "hyper-allow-prune:";
  size_t start = 0;
  while (start <= message.size()) {
    size_t end = message.find('\n', start);
    if (end == std::string::npos) {
      end = message.size();
    }
    std::string line = message.substr(start, end - start);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) {
      line.pop_back();
    }
    if (line.size() > kKey.size() && lower(line.substr(0, kKey.size())) == kKey) {
      std::string value = line.substr(kKey.size());
      value.erase(0, value.find_first_not_of(" \t"));
      if (value == "yes") {
        return true;
      }
    }
    start = end + 1;
  }
  return false;
}

}  // namespace hyper::controller
