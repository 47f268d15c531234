#include "reconciler/yaml_json.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string_view>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "base/text_escape.h"

namespace hyper {
namespace {

std::string hexByte(char c) {
  static const char* kHex = "0123456789abcdef";
  const auto b = static_cast<unsigned char>(c);
  return {kHex[b >> 4], kHex[b & 0xf]};
}

constexpr const char* kStrTag = "tag:yaml.org,2002:str";
constexpr const char* kIntTag = "tag:yaml.org,2002:int";
constexpr const char* kFloatTag = "tag:yaml.org,2002:float";
constexpr const char* kBoolTag = "tag:yaml.org,2002:bool";
constexpr const char* kNullTag = "tag:yaml.org,2002:null";

bool isNullWord(const std::string& s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

// YAML 1.2 core schema for plain scalars. Returns false when the text is not of that type.
bool parseBool(const std::string& s, bool& out) {
  if (s == "true" || s == "True" || s == "TRUE") {
    out = true;
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    out = false;
    return true;
  }
  return false;
}

bool allDigits(std::string_view s, int base) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    bool ok = base == 16 ? std::isxdigit(static_cast<unsigned char>(c)) != 0
                         : (c >= '0' && c < static_cast<char>('0' + base));
    if (!ok) {
      return false;
    }
  }
  return true;
}

// Hand-written rather than std::regex: this runs for every scalar of every manifest.
bool parseInt(const std::string& s, Json& out) {
  int base = 10;
  std::string digits = s;
  std::string_view body(s);
  if (!body.empty() && (body[0] == '-' || body[0] == '+')) {
    body.remove_prefix(1);
  }
  if (s.size() > 2 && s[0] == '0' && s[1] == 'x') {
    base = 16;
    digits = s.substr(2);
    body = std::string_view(s).substr(2);
  } else if (s.size() > 2 && s[0] == '0' && s[1] == 'o') {
    base = 8;
    digits = s.substr(2);
    body = std::string_view(s).substr(2);
  }
  if (!allDigits(body, base)) {
    return false;
  }
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(digits.c_str(), &end, base);
  if (errno == ERANGE) {
    return false;  // too large for an integer: kept as a string, the schema reports the type
  }
  out = static_cast<int64_t>(v);
  return true;
}

// [-+]? ( .digits | digits ( . digits? )? ) ( [eE] [-+]? digits )?
bool parseFloat(const std::string& s, Json& out) {
  size_t i = 0;
  auto digitsFrom = [&](size_t& at) {
    size_t begin = at;
    while (at < s.size() && s[at] >= '0' && s[at] <= '9') {
      ++at;
    }
    return at - begin;
  };
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
    ++i;
  }
  size_t intDigits = digitsFrom(i);
  size_t fracDigits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    fracDigits = digitsFrom(i);
  }
  if (intDigits == 0 && fracDigits == 0) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
      ++i;
    }
    if (digitsFrom(i) == 0) {
      return false;
    }
  }
  if (i != s.size()) {
    return false;
  }
  double v = std::strtod(s.c_str(), nullptr);
  if (!std::isfinite(v)) {
    return false;
  }
  out = v;
  return true;
}

// Input quoted in an error is cut short: the message is for a person, and the input may be huge.
std::string shorten(const std::string& text) {
  return text.size() > 60 ? text.substr(0, 57) + "..." : text;
}

std::string limitMessage(const char* limit, size_t value, const std::string& what) {
  return "limit " + std::string(limit) + " exceeded: " + what + " (expected at most " +
         std::to_string(value) + "; see docs/design.md, \"Limits\")";
}

// Converts one document at a time. The budget (nodes, bytes) is per document; once it runs out
// the conversion stops at once, so an alias bomb costs at most the budget, not its expansion.
class Converter {
 public:
  Converter(std::shared_ptr<const std::string> file, Diagnostics& diags, const YamlLimits& limits,
            int linesBefore)
      : file_(std::move(file)), diags_(diags), limits_(limits), linesBefore_(linesBefore) {}

  void startDocument() {
    nodes_ = 0;
    bytes_ = 0;
    exhausted_ = false;
  }

  void convert(const YAML::Node& node, const std::string& path, Json& out, SourceMap& map,
               int depth) {
    if (exhausted_) {
      return;
    }
    if (depth > limits_.maxDepth) {
      error(node.Mark(), path,
            limitMessage("maxDepth", static_cast<size_t>(limits_.maxDepth),
                         "nesting deeper than " + std::to_string(limits_.maxDepth) + " levels"));
      exhausted_ = true;
      return;
    }
    if (++nodes_ > limits_.maxNodesPerDocument) {
      error(node.Mark(), path,
            limitMessage("maxNodesPerDocument", limits_.maxNodesPerDocument,
                         "the document has more values than that, counting each use of an "
                         "alias"));
      exhausted_ = true;
      return;
    }
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        out = nullptr;
        return;
      case YAML::NodeType::Scalar:
        if (!charge(node, path, node.Scalar())) {
          return;
        }
        out = scalar(node, path);
        return;
      case YAML::NodeType::Sequence: {
        out = Json::array();
        size_t i = 0;
        for (const auto& item : node) {
          std::string itemPath = appendIndex(path, i++);
          if (!chargePath(item, itemPath)) {
            return;
          }
          record(map, itemPath, item.Mark());
          Json value;
          convert(item, itemPath, value, map, depth + 1);
          if (exhausted_) {
            return;
          }
          out.push_back(std::move(value));
        }
        return;
      }
      case YAML::NodeType::Map: {
        out = Json::object();
        std::set<std::string> seen;
        for (const auto& kv : node) {
          if (!kv.first.IsScalar()) {
            error(kv.first.Mark(), path,
                  "a mapping key is not a plain string (expected a field name)");
            continue;
          }
          const std::string& key = kv.first.Scalar();
          if (!charge(kv.first, path, key)) {
            return;
          }
          std::string keyPath = appendKey(path, key);
          if (!chargePath(kv.first, keyPath)) {
            return;
          }
          if (!seen.insert(key).second) {
            error(kv.first.Mark(), keyPath,
                  "duplicate key \"" + shorten(key) + "\" (expected each field once per mapping)");
            continue;
          }
          record(map, keyPath, kv.first.Mark());
          Json value;
          convert(kv.second, keyPath, value, map, depth + 1);
          if (exhausted_) {
            return;
          }
          out[key] = std::move(value);
        }
        return;
      }
    }
  }

  // True when a limit stopped the conversion: the document is partial and must not be checked
  // further (its missing fields would only add errors that are not the user's).
  bool exhausted() const { return exhausted_; }

  // Reports that the file has more documents than allowed; the caller stops there.
  void tooManyDocuments(const YAML::Mark& mark) {
    error(mark, "",
          limitMessage("maxDocumentsPerFile", limits_.maxDocumentsPerFile,
                       "the file has more documents than that"));
  }

  // Adds the closing line for errors that were counted but not reported.
  void finish() {
    if (suppressed_ > 0) {
      Diagnostic d;
      d.where = {*file_, 0, 0};
      d.summary = std::to_string(suppressed_) + " more error(s) in this file not shown (limit " +
                  "maxErrorsPerFile " + std::to_string(limits_.maxErrorsPerFile) + ")";
      diags_.add(std::move(d));
    }
  }

 private:
  // Counts a key's or a scalar's bytes against the string and document limits.
  bool charge(const YAML::Node& node, const std::string& path, const std::string& text) {
    if (text.size() > limits_.maxStringBytes) {
      error(node.Mark(), path,
            limitMessage("maxStringBytes", limits_.maxStringBytes,
                         "a string of " + std::to_string(text.size()) + " bytes"));
      exhausted_ = true;
      return false;
    }
    // YAML text is Unicode, and yaml-cpp passes any bytes through: checked here, once, so that
    // nothing downstream meets invalid UTF-8 (valijson's maxLength counts characters with a
    // decoder that reads out of bounds on a run of continuation bytes, found by fuzzing; JSON
    // serialisation throws on it).
    if (size_t bad = firstInvalidUtf8(text); bad != std::string_view::npos) {
      error(node.Mark(), path,
            "not valid UTF-8 (byte " + std::to_string(bad) + " of this " +
                std::to_string(text.size()) + "-byte string is 0x" + hexByte(text[bad]) +
                "); manifests must be UTF-8 text");
      exhausted_ = true;  // the document goes, like one past a limit: no schema error on a hole
      return false;
    }
    return chargeBytes(node, path, text.size());
  }

  // Every value's field path is kept (the source map), so paths are charged too: a wide mapping
  // under a long key must not cost its width times the key.
  bool chargePath(const YAML::Node& node, const std::string& path) {
    return chargeBytes(node, path, path.size());
  }

  bool chargeBytes(const YAML::Node& node, const std::string& path, size_t n) {
    bytes_ += n;
    if (bytes_ > limits_.maxBytesPerDocument) {
      error(node.Mark(), path,
            limitMessage("maxBytesPerDocument", limits_.maxBytesPerDocument,
                         "the document's keys, strings and field paths add up to more, "
                         "counting each use of an alias"));
      exhausted_ = true;
      return false;
    }
    return true;
  }

  Json scalar(const YAML::Node& node, const std::string& path) {
    const std::string& text = node.Scalar();
    const std::string& tag = node.Tag();
    if (tag == "!" || tag == kStrTag) {
      return text;  // quoted or explicitly a string
    }
    bool b = false;
    Json num;
    if (tag == "?" || tag.empty()) {
      if (isNullWord(text)) {
        return nullptr;
      }
      if (parseBool(text, b)) {
        return b;
      }
      if (parseInt(text, num) || parseFloat(text, num)) {
        return num;
      }
      return text;
    }
    if (tag == kIntTag && parseInt(text, num)) {
      return num;
    }
    if (tag == kFloatTag && (parseFloat(text, num) || parseInt(text, num))) {
      return num;
    }
    if (tag == kBoolTag && parseBool(text, b)) {
      return b;
    }
    if (tag == kNullTag && isNullWord(text)) {
      return nullptr;
    }
    error(node.Mark(), path,
          "unsupported or mismatched tag " + shorten(tag) + " on \"" + shorten(text) +
              "\" (expected a plain, quoted, !!str, !!int, !!float, !!bool or !!null scalar)");
    return text;
  }

  void record(SourceMap& map, const std::string& path, const YAML::Mark& mark) {
    if (mark.is_null()) {
      return;
    }
    map.add(path, linesBefore_ + mark.line + 1, mark.column + 1);
  }

  void error(const YAML::Mark& mark, const std::string& path, std::string summary) {
    if (reported_ >= limits_.maxErrorsPerFile) {
      ++suppressed_;
      return;
    }
    ++reported_;
    Diagnostic d;
    d.where = {*file_, mark.is_null() ? 0 : linesBefore_ + mark.line + 1,
               mark.is_null() ? 0 : mark.column + 1};
    d.fieldPath = path.size() > 200 ? path.substr(0, 197) + "..." : path;  // a key may be long
    d.summary = std::move(summary);
    diags_.add(std::move(d));
  }

  std::shared_ptr<const std::string> file_;
  Diagnostics& diags_;
  const YamlLimits& limits_;
  int linesBefore_;
  size_t nodes_ = 0;
  size_t bytes_ = 0;
  bool exhausted_ = false;
  size_t reported_ = 0;
  size_t suppressed_ = 0;
};

// yaml-cpp 0.7 (Debian 12) consumes nothing at a token that cannot start a node at the top of a
// document (a lone ','): its parser then reports one empty document after another at the same
// place, and LoadAll collects them until memory runs out. A first pass over the events alone stops
// at a document that starts where the previous one started, before LoadAll builds anything.
// The same pass counts documents, empty ones included ("---" alone costs LoadAll a node each),
// and stops at maxDocumentsPerFile before LoadAll builds any of them.
struct TooManyDocuments : YAML::Exception {
  using YAML::Exception::Exception;
};

class DocumentStarts : public YAML::EventHandler {
 public:
  explicit DocumentStarts(size_t maxDocuments) : maxDocuments_(maxDocuments) {}

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (seen_ && mark.pos == last_.pos) {
      throw YAML::ParserException(mark, "unexpected token at the start of a document");
    }
    if (++documents_ > maxDocuments_) {
      throw TooManyDocuments(mark, limitMessage("maxDocumentsPerFile", maxDocuments_,
                                                "the file has more documents (empty ones "
                                                "counted)"));
    }
    seen_ = true;
    last_ = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  size_t count() const { return documents_; }

  // Throws YAML::ParserException (as LoadAll would) at the first document that does not advance.
  void check(const std::string& content) {
    std::istringstream in(content);
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(*this)) {
    }
  }

 private:
  size_t maxDocuments_;
  size_t documents_ = 0;
  bool seen_ = false;
  YAML::Mark last_;
};

}  // namespace

std::vector<YamlDocument> parseYamlDocuments(const std::string& content,
                                             std::shared_ptr<const std::string> fileName,
                                             Diagnostics& diagnostics, const YamlLimits& limits,
                                             int linesBefore, size_t* documentStarts) {
  std::vector<YAML::Node> nodes;
  try {
    DocumentStarts starts(limits.maxDocumentsPerFile);
    starts.check(content);
    if (documentStarts != nullptr) {
      *documentStarts = starts.count();
    }
    nodes = YAML::LoadAll(content);
  } catch (const TooManyDocuments& e) {
    diagnostics.add({Severity::Error,
                     {*fileName, linesBefore + e.mark.line + 1, e.mark.column + 1},
                     {},
                     "",
                     e.msg});
    return {};
  } catch (const YAML::Exception& e) {
    Diagnostic d;
    d.where = {*fileName, e.mark.is_null() ? 0 : linesBefore + e.mark.line + 1,
               e.mark.is_null() ? 0 : e.mark.column + 1};
    d.summary = "YAML syntax error: " + e.msg;
    diagnostics.add(std::move(d));
    return {};
  } catch (const std::exception& e) {
    diagnostics.add({Severity::Error,
                     {*fileName, 0, 0},
                     {},
                     "",
                     std::string("cannot parse YAML: ") + e.what()});
    return {};
  }

  std::vector<YamlDocument> docs;
  Converter converter(fileName, diagnostics, limits, linesBefore);
  int index = -1;
  for (const auto& node : nodes) {
    ++index;
    if (node.IsNull() || !node.IsDefined()) {
      continue;  // an empty document between two '---'
    }
    if (docs.size() == limits.maxDocumentsPerFile) {
      converter.tooManyDocuments(node.Mark());
      break;
    }
    YamlDocument doc;
    doc.index = index;
    doc.sourceMap = SourceMap(fileName);
    YAML::Mark mark = node.Mark();
    doc.where = {*fileName, linesBefore + (mark.is_null() ? 1 : mark.line + 1),
                 mark.is_null() ? 1 : mark.column + 1};
    size_t errorsBefore = diagnostics.size();
    try {
      converter.startDocument();
      converter.convert(node, "", doc.value, doc.sourceMap, 0);
      doc.sourceMap.seal();
      if (converter.exhausted()) {
        continue;
      }
      doc.hasErrors = diagnostics.size() != errorsBefore;
    } catch (const std::exception& e) {
      diagnostics.add({Severity::Error,
                       doc.where,
                       {},
                       "",
                       std::string("cannot read YAML document: ") + e.what()});
      continue;
    }
    docs.push_back(std::move(doc));
  }
  converter.finish();
  return docs;
}

std::vector<YamlPiece> splitYamlStream(std::string_view content, size_t parts) {
  auto lineEnd = [&](size_t at) {
    size_t end = content.find('\n', at);
    return end == std::string_view::npos ? content.size() : end;
  };
  // yaml-cpp reads the encoding from the first bytes (a BOM, or where the zero bytes of UTF-16
  // or UTF-32 are): a stream that could be other than UTF-8 stays whole, since its later pieces
  // would be read as UTF-8. So does one with a directive anywhere.
  if (content.find('\0') != std::string_view::npos ||
      (content.size() >= 2 && static_cast<unsigned char>(content[0]) >= 0xfe)) {
    return {{std::string(content), 0}};
  }
  for (size_t at = 0; at < content.size(); at = lineEnd(at) + 1) {
    if (content[at] == '%') {
      return {{std::string(content), 0}};
    }
  }
  auto startsDocument = [&](size_t at) {
    if (content.compare(at, 3, "---") != 0) {
      return false;
    }
    // Blanks, then the end of the line. yaml-cpp's line breaks are "\n" and "\r\n": a lone
    // "\r" is not one, so "---\r" followed by more is a scalar to it, not a document start.
    size_t end = lineEnd(at);
    if (end > at + 3 && content[end - 1] == '\r' && end < content.size()) {
      --end;
    }
    for (size_t i = at + 3; i < end; ++i) {
      if (content[i] != ' ' && content[i] != '\t') {
        return false;
      }
    }
    return true;
  };
  std::vector<YamlPiece> out;
  size_t from = 0;
  int lines = 0;
  for (size_t k = 1; k < parts; ++k) {
    size_t at = std::max(from + 1, content.size() * k / parts);
    // The next line start at or after `at`, then the next document start from there.
    if (at < content.size() && content[at - 1] != '\n') {
      at = lineEnd(at) + 1;
    }
    while (at < content.size() && !startsDocument(at)) {
      at = lineEnd(at) + 1;
    }
    if (at >= content.size()) {
      break;
    }
    std::string_view piece = content.substr(from, at - from);
    out.push_back({std::string(piece), lines, false});
    lines += static_cast<int>(std::count(piece.begin(), piece.end(), '\n'));
    from = at;
  }
  out.push_back({std::string(content.substr(from)), lines});
  return out;
}

}  // namespace hyper
