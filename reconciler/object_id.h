#pragma once

#include <compare>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
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

// An id by its strings, for hash tables keyed by ids held elsewhere (which outlive the table):
// a lookup hashes two strings rather than comparing a dozen, and copies nothing.
struct ObjectIdView {
  std::string_view kind;
  std::string_view name;
  explicit ObjectIdView(const ObjectId& id) : kind(id.kind), name(id.name) {}
  bool operator==(const ObjectIdView&) const = default;
};

struct ObjectIdViewHash {
  size_t operator()(const ObjectIdView& v) const {
    size_t h = std::hash<std::string_view>()(v.kind);
    return h ^
           (std::hash<std::string_view>()(v.name) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  }
};

}  // namespace hyper
