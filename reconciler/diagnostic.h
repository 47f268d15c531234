#pragma once

#include <string>
#include <vector>

#include "reconciler/object_id.h"

namespace hyper {

// Where something is in the manifests. Lines and columns are 1-based; 0 means unknown.
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;

  bool known() const { return !file.empty(); }
  std::string str() const;  // "file:line:column", or "file" when line is unknown
};

enum class Severity { Error, Warning };

// A finding about input (a manifest, a provider reply), shaped like terraform-plugin-framework's
// diag.Diagnostic: it says where, which field, what was found and what was expected.
struct Diagnostic {
  Severity severity = Severity::Error;
  SourceLocation where;
  ObjectId object;        // empty when the finding is about no one object (a file, a dump)
  std::string fieldPath;  // "spec.egress.allow[0].cidr", empty for the whole document
  std::string summary;    // what is wrong and what was expected

  // "file:line:col: Network/lab: spec.cidr: invalid CIDR ..."
  std::string format() const;
};

class Diagnostics {
 public:
  void add(Diagnostic d) { items_.push_back(std::move(d)); }
  void error(ObjectId object, std::string fieldPath, std::string summary) {
    add({Severity::Error, {}, std::move(object), std::move(fieldPath), std::move(summary)});
  }
  void append(const Diagnostics& other) {
    items_.insert(items_.end(), other.items_.begin(), other.items_.end());
  }
  bool hasErrors() const;
  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }
  const std::vector<Diagnostic>& items() const { return items_; }
  std::vector<Diagnostic>& items() { return items_; }
  // Sorted by file, line, column; one per line.
  std::string format() const;

 private:
  std::vector<Diagnostic> items_;
};

}  // namespace hyper
