#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "reconciler/diagnostic.h"
#include "reconciler/object.h"

namespace hyper {

// What one manifest file may cost while it is converted, checked before any schema runs. The
// defaults are far beyond a real manifest; each is reported by its name when exceeded
// (docs/design.md, "Limits"), and the document is rejected, never truncated.
struct YamlLimits {
  int maxDepth = 64;                     // nesting of mappings and lists
  size_t maxNodesPerDocument = 100000;   // values produced, counting an alias at every use
  size_t maxBytesPerDocument = 4 << 20;  // bytes of keys and strings produced, aliases counted
  size_t maxStringBytes = 256 << 10;     // one key or scalar
  size_t maxDocumentsPerFile = 10000;
  size_t maxErrorsPerFile = 50;  // later errors are counted in one closing line
};

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
// reported and no document of it is returned. Aliases are allowed, but every use of one counts
// against `limits` as if it were written out, so a "billion laughs" document is an error after
// maxNodesPerDocument values, not an exhausted host. `linesBefore`: the lines of the file before
// `content` when it is a part of one (splitYamlStreamByContent), added to every line reported.
// `documentStarts` (when given and the stream parses) gets the number of documents
// maxDocumentsPerFile counts: every document, empty ones too.
std::vector<YamlDocument> parseYamlDocuments(const std::string& content,
                                             std::shared_ptr<const std::string> fileName,
                                             Diagnostics& diagnostics,
                                             const YamlLimits& limits = YamlLimits{},
                                             int linesBefore = 0, size_t* documentStarts = nullptr);

// A piece of a YAML stream (splitYamlStreamByContent), cut at document starts: lines that are
// "---" alone (and trailing blanks). A `---` at the start of a line always starts a document
// (YAML 1.2 forbids it inside a scalar; yaml-cpp ends a block or plain scalar there and refuses
// it in a quoted one), so when each piece parses without a diagnostic, their documents are the
// whole's. A stream with directives (a line starting with '%') is not cut: they belong to the
// document after them; nor is one that yaml-cpp could read as UTF-16 or UTF-32 (a zero byte, a
// BOM of 0xFE or 0xFF). Every piece but the last is to be parsed with kYamlPieceEnd after it
// (parseText), so that it reads as the whole does up to the next piece: yaml-cpp takes the end
// of the input as the end of an unclosed quoted scalar, but refuses a `---` line inside one.
struct YamlPiece {
  static constexpr const char* kYamlPieceEnd = "---\n";
  std::string text;
  int linesBefore = 0;
  bool last = true;
  std::string parseText() const { return last ? text : text + kYamlPieceEnd; }
};
// The pieces of a stream, cut by content: a piece ends after a document chosen by its text's
// hash once it holds `minBytes`, or at the first document start past `maxBytes` (1 and 1: a cut
// at every document start). An edit to one document moves at most the cuts around it, so the
// other pieces are the same text as before: the loader parses only the pieces it has not seen
// (ManifestLoader).
std::vector<YamlPiece> splitYamlStreamByContent(std::string_view content, size_t minBytes,
                                                size_t maxBytes);

}  // namespace hyper
