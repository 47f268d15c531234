// diffJson is declared in plan.h: the diff exists to produce a plan's FieldChanges.
#include "reconciler/plan.h"

#include <set>

namespace hyper {

namespace {

// A missing value and an object are both "a set of fields" (the missing one has none), so a
// field added under a new parent is reported leaf by leaf rather than as one opaque blob.
bool isFieldSet(const Json& v) { return v.is_object() || v.is_null(); }

const Json& fieldOf(const Json& v, const std::string& key) {
  static const Json kNull;
  if (!v.is_object()) {
    return kNull;
  }
  auto it = v.find(key);
  return it == v.end() ? kNull : *it;
}

}  // namespace

void diffJson(const std::string& path, const Json& before, const Json& after,
              std::vector<FieldChange>& out) {
  if (before == after) {
    return;
  }
  if (isFieldSet(before) && isFieldSet(after)) {
    std::set<std::string> keys;
    if (before.is_object()) {
      for (auto it = before.begin(); it != before.end(); ++it) {
        keys.insert(it.key());
      }
    }
    if (after.is_object()) {
      for (auto it = after.begin(); it != after.end(); ++it) {
        keys.insert(it.key());
      }
    }
    size_t reported = out.size();
    for (const auto& k : keys) {
      diffJson(appendKey(path, k), fieldOf(before, k), fieldOf(after, k), out);
    }
    // The values differ but no field does: {} against null, or {"a": null} against {}. Report the
    // whole value so that "no changes" always means "equal".
    if (out.size() != reported) {
      return;
    }
  }
  out.push_back({path, before, after});
}

}  // namespace hyper
