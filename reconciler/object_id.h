#pragma once

#include <compare>
#include <string>
#include <utility>

namespace hyper {

// Identity of a manifest object: kind/name. Names are DNS labels (validated at load). An empty
// id (no kind, no name) stands for "no object": a diagnostic about a whole file or a provider.
struct ObjectId {
  std::string kind;
  std::string name;

  // Not an aggregate on purpose: in a braced Diagnostic{...} a string in the object's place would
  // otherwise silently fill kind and name from the next fields.
  ObjectId() = default;
  ObjectId(std::string k, std::string n) : kind(std::move(k)), name(std::move(n)) {}

  std::string str() const { return kind + "/" + name; }
  bool empty() const { return kind.empty() && name.empty(); }
  bool operator==(const ObjectId&) const = default;
  auto operator<=>(const ObjectId&) const = default;
};

}  // namespace hyper
