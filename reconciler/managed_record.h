#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reconciler/object.h"

namespace hyper {

// What the inventory knows of an object hyper created: the spec it last applied, the provider's
// handles (what it made on the host, and a fingerprint of it as written), and where it came from.
// Only objects with a ManagedRecord are ever deleted by --prune.
struct ManagedRecord {
  ObjectId id;
  std::string provider;
  std::map<std::string, std::string> labels;
  SharedJson spec;          // last applied desired spec (shared with the object's: SharedJson)
  std::string specHash;     // sha256 of canonicalJson(spec)
  Json handles;             // provider-owned, e.g. {"bridge": "hb-lab"}
  std::string fingerprint;  // provider-owned digest of the host state as hyper left it
  std::string revision;     // source revision it was applied from
  int64_t appliedAt = 0;    // unix seconds
};

// The build keys (a reproducible kind's handles "key") a revision's content was applied with, by
// "Kind/name", newest first (Inventory::contentKeys).
using KeptKeys = std::map<std::string, std::vector<std::string>>;

}  // namespace hyper
