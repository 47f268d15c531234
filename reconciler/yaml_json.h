#pragma once

#include <memory>
#include <string>
#include <vector>

#include "reconciler/diagnostic.h"
#include "reconciler/object.h"

namespace hyper {

// One YAML document converted to JSON, with where each field was written.
struct YamlDocument {
  Json value;
  SourceMap sourceMap;
  SourceLocation where;    // first line of the document
  int index = 0;           // 0-based position in its file
  bool hasErrors = false;  // conversion reported an error (duplicate key, bad tag)
};

// Parses a (multi-document) YAML stream into JSON documents. Scalars follow the YAML 1.2 core
// schema for plain scalars (null, true/false, integers, floats); quoted scalars stay strings.
// Duplicate mapping keys, anchors that alias to non-scalars of unknown shape, and non-string keys
// are reported as errors. Empty documents are skipped. On a syntax error the whole file is
// reported and no document of it is returned.
std::vector<YamlDocument> parseYamlDocuments(const std::string& content,
                                             std::shared_ptr<const std::string> fileName,
                                             Diagnostics& diagnostics);

}  // namespace hyper
