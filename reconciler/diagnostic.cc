#include "reconciler/diagnostic.h"

#include <algorithm>
#include <tuple>

namespace hyper {

std::string SourceLocation::str() const {
  if (file.empty()) {
    return "";
  }
  if (line <= 0) {
    return file;
  }
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

std::string Diagnostic::format() const {
  std::string out;
  if (where.known()) {
    out += where.str() + ": ";
  }
  out += severity == Severity::Error ? "error: " : "warning: ";
  if (!object.empty()) {
    out += object.str() + ": ";
  }
  if (!fieldPath.empty()) {
    // A path holds the manifest's own keys, which may be huge: a person needs its start.
    out += fieldPath.size() > 200 ? fieldPath.substr(0, 197) + "..." : fieldPath;
    out += ": ";
  }
  out += summary;
  return out;
}

bool Diagnostics::hasErrors() const {
  return std::any_of(items_.begin(), items_.end(),
                     [](const Diagnostic& d) { return d.severity == Severity::Error; });
}

std::string Diagnostics::format() const {
  std::vector<const Diagnostic*> sorted;
  sorted.reserve(items_.size());
  for (const auto& d : items_) {
    sorted.push_back(&d);
  }
  std::stable_sort(sorted.begin(), sorted.end(), [](const Diagnostic* a, const Diagnostic* b) {
    return std::tie(a->where.file, a->where.line, a->where.column) <
           std::tie(b->where.file, b->where.line, b->where.column);
  });
  std::string out;
  for (const auto* d : sorted) {
    out += d->format();
    out += '\n';
  }
  return out;
}

}  // namespace hyper
