#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconciler/diagnostic.h"
#include "reconciler/object_id.h"
#include "reconciler/shared_json.h"

namespace hyper {

using Json = nlohmann::json;

inline constexpr std::string_view kApiVersion = "hyper.dev/v1alpha1";

// Maps field paths of one YAML document ("spec.egress.allow[0].cidr") to where they are written.
// Kept compact because a revision holds one per object: one file name shared by every document
// of a file, and the paths stored back to back in one string rather than one string each
// (hyper_bench: half the size, some 800 bytes less per object). Once written (seal()), the paths
// and positions are a shape that documents of the same layout share: the same paths at the same
// columns, on the same lines counted from the document's first. A repository's Networks, or its
// VMs made from one template, then keep one shape between them and a line each.
class SourceMap {
 public:
  SourceMap() = default;
  explicit SourceMap(std::shared_ptr<const std::string> file) : file_(std::move(file)) {}

  // Before seal(): one more path, in document order.
  void add(std::string_view path, int line, int column);
  // Done adding: takes the process's shape of the same layout, if one is alive, instead of this
  // map's own. Later add() calls copy the shape first.
  void seal();
  // The location of `path`, or of its nearest written ancestor ("spec.mtu" absent -> "spec").
  SourceLocation locate(std::string_view path) const;
  const std::string& file() const;
  // Whether this map and `other` hold one shape (not merely equal ones).
  bool sharesShapeWith(const SourceMap& other) const {
    return shape_ != nullptr && shape_ == other.shape_;
  }

  struct Entry {
    uint32_t pathEnd;  // the path is paths[previous entry's pathEnd, pathEnd)
    int line;          // counted from the map's firstLine_ (0: on it)
    int column;
    bool operator==(const Entry&) const = default;
  };
  struct Shape {
    std::string paths;
    std::vector<Entry> entries;
    bool operator==(const Shape&) const = default;
  };

 private:
  std::shared_ptr<const std::string> file_;
  // Written in place only while this map alone holds it and has not sealed it.
  std::shared_ptr<Shape> shape_;
  int firstLine_ = 0;  // the line of the first path added
  bool sealed_ = false;
};

// One validated manifest document.
// How the controller treats drift of an object (spec.driftPolicy, defined once in
// schemas/object.schema.json for every kind): repair it, or only report it.
enum class DriftPolicy { Correct, Alert };

// The field of spec that belongs to the envelope, not to the kind: the loader takes it out of
// spec into Object::driftPolicy, so no kind's schema or provider sees it.
inline constexpr const char* kEnvelopeSpecField = "driftPolicy";

// A file a manifest names as a file source (KindRecord::fileSources), as read for one revision.
struct SourceBlob {
  std::string digest;  // "sha256:<64 hex>" of bytes
  std::string bytes;
};

struct Object {
  ObjectId id;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  // Schema-valid; the provider parses it into its typed spec. Shared with the object's copies
  // and with its inventory record while they are equal (SharedJson).
  SharedJson spec;
  std::optional<DriftPolicy> driftPolicy;  // spec.driftPolicy; empty: the controller's default
  SourceLocation where;                    // the document's first line
  SourceMap sourceMap;
  // The file sources of the spec, keyed by the string as written there ("web/init.sh"), read by
  // the loader from the tree the manifest came from at the same revision. Every file source of
  // an object in a loaded revision is here; empty for kinds without file sources and for
  // objects rebuilt from the inventory (objectFromRecord).
  std::map<std::string, std::shared_ptr<const SourceBlob>> files;

  // Where a field of this object is written; the document when the field is absent.
  SourceLocation locate(std::string_view fieldPath) const;
};

// Joins field-path segments: appendKey("spec", "cidr") == "spec.cidr", appendIndex("x", 2) ==
// "x[2]".
std::string appendKey(std::string_view path, std::string_view key);
std::string appendIndex(std::string_view path, size_t index);

// Canonical serialisation used for hashing: keys sorted, no whitespace.
std::string canonicalJson(const Json& value);

}  // namespace hyper
