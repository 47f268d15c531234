#include "reconciler/yaml_json.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
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

// The scalar's text (or a key's) is not a node: it is checked against the string, UTF-8 and
// byte limits; a node (any value) against depth and count. Keys are not nodes.
struct Budget {
  size_t nodes = 0;
  size_t bytes = 0;
};

// One pass of yaml-cpp's parser builds the JSON documents straight from its events: no node
// graph (YAML::LoadAll) and no second parse. Until 2026-12-07 the stream was parsed twice (a
// first pass over the events for the checks below, then LoadAll) and the nodes then walked:
// yaml-cpp's scanner was half of `hyperctl validate`'s time, and ran twice.
//
// What the events are turned into is what walking LoadAll's nodes gave: an alias is its anchor's
// events played again where it is used (with the anchor's marks, as the node it stands for has),
// so every use counts against the budget (nodes, bytes) as if it were written out, and once the
// budget runs out the document is dropped at once: an alias bomb costs at most the budget, not
// its expansion. yaml-cpp 0.7 (Debian 12) consumes nothing at a token that cannot start a node at
// the top of a document (a lone ','): its parser then reports one empty document after another
// at the same place; a document that starts where the previous one started is a syntax error.
// Documents are counted (empty ones too) against maxDocumentsPerFile as they start. On a syntax
// error, nothing of the file is kept: the documents and diagnostics so far are dropped.
struct TooManyDocuments : YAML::Exception {
  using YAML::Exception::Exception;
};

class DocumentBuilder : public YAML::EventHandler {
 public:
  DocumentBuilder(std::shared_ptr<const std::string> file, Diagnostics& diags,
                  const YamlLimits& limits, int linesBefore)
      : file_(std::move(file)), diags_(diags), limits_(limits), linesBefore_(linesBefore) {}

  std::vector<YamlDocument>& documents() { return docs_; }
  size_t documentStarts() const { return starts_; }

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

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (starts_ > 0 && mark.pos == lastStart_.pos) {
      throw YAML::ParserException(mark, "unexpected token at the start of a document");
    }
    if (++starts_ > limits_.maxDocumentsPerFile) {
      throw TooManyDocuments(mark, limitMessage("maxDocumentsPerFile", limits_.maxDocumentsPerFile,
                                                "the file has more documents (empty ones "
                                                "counted)"));
    }
    lastStart_ = mark;
    ++index_;
    doc_.reset();
    frames_.clear();
    anchors_.clear();
    recordings_.clear();
    budget_ = Budget{};
    exhausted_ = false;
    skipDepth_ = 0;
    skipNodes_ = 0;
  }

  void OnDocumentEnd() override {
    if (!doc_ || exhausted_) {
      return;
    }
    doc_->sourceMap.seal();
    doc_->hasErrors = diags_.size() != errorsAtStart_;
    docs_.push_back(std::move(*doc_));
    doc_.reset();
  }

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Event e{Event::Null, mark, anchor, &kNone, &kNone};
    record(e);
    dispatch(e);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Event e{Event::Alias, mark, anchor, &kNone, &kNone};
    record(e);
    dispatch(e);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    Event e{Event::Scalar, mark, anchor, &tag, &value};
    record(e);
    dispatch(e);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Event e{Event::SeqStart, mark, anchor, &kNone, &kNone};
    record(e);
    dispatch(e);
  }
  void OnSequenceEnd() override {
    Event e{Event::End, {}, 0, &kNone, &kNone};
    record(e);
    dispatch(e);
  }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Event e{Event::MapStart, mark, anchor, &kNone, &kNone};
    record(e);
    dispatch(e);
  }
  void OnMapEnd() override {
    Event e{Event::End, {}, 0, &kNone, &kNone};
    record(e);
    dispatch(e);
  }

 private:
  // An event as it is handled: the tag and the scalar are yaml-cpp's strings (or a kept
  // event's), not copies.
  struct Event {
    enum Type : uint8_t { Null, Alias, Scalar, SeqStart, MapStart, End } type;
    YAML::Mark mark;
    YAML::anchor_t anchor;
    const std::string* tag;
    const std::string* value;
    bool starts() const { return type == SeqStart || type == MapStart; }
  };
  // An event kept for the aliases of its anchor.
  struct KeptEvent {
    explicit KeptEvent(const Event& e)
        : type(e.type), mark(e.mark), anchor(e.anchor), tag(*e.tag), value(*e.value) {}
    Event view() const { return {type, mark, anchor, &tag, &value}; }
    Event::Type type;
    YAML::Mark mark;
    YAML::anchor_t anchor;
    std::string tag;
    std::string value;
  };
  // An anchored node's events, kept until its end and then by anchor for its aliases.
  struct Recording {
    YAML::anchor_t anchor;
    int depth = 0;
    std::vector<KeptEvent> events;
  };
  static inline const std::string kNone;
  // An open mapping or sequence. A mapping alternates between a key and its value.
  struct Frame {
    bool isMap;
    Json value;
    std::string path;
    size_t items = 0;      // a sequence's items so far
    bool haveKey = false;  // a mapping's key was read, its value comes next
    std::string key;
  };

  void record(const Event& e) {
    if (replaying_ > 0) {
      return;  // an alias's events are its anchor's, already kept
    }
    for (auto& r : recordings_) {
      r.events.emplace_back(e);
      r.depth += e.starts() ? 1 : (e.type == Event::End ? -1 : 0);
    }
    if (e.anchor != 0 && e.type != Event::Alias) {
      recordings_.push_back({e.anchor, e.starts() ? 1 : 0, {KeptEvent(e)}});
    }
    // A recording is done when its node is: kept for the aliases that follow.
    while (!recordings_.empty() && recordings_.back().depth == 0) {
      anchors_[recordings_.back().anchor] = std::move(recordings_.back().events);
      recordings_.pop_back();
    }
  }

  // An alias of a node still open (`&a [*a]`) plays what that node has so far, the alias again
  // among it: the node contains itself, and its nesting runs into maxDepth, as walking the node
  // graph LoadAll makes of it did.
  void replay(YAML::anchor_t anchor) {
    const std::vector<KeptEvent>* events = nullptr;
    if (auto it = anchors_.find(anchor); it != anchors_.end()) {
      events = &it->second;
    } else {
      for (const auto& r : recordings_) {
        if (r.anchor == anchor) {
          events = &r.events;
        }
      }
    }
    if (events == nullptr) {
      return;  // yaml-cpp refuses an unknown anchor before it gets here
    }
    // Nothing is recorded while playing (record()), so `events` does not move under the loop.
    ++replaying_;
    for (size_t i = 0; i < events->size() && !exhausted_; ++i) {
      dispatch((*events)[i].view());
    }
    --replaying_;
  }

  // Whether the node starting with `e` is skipped: inside a skipped node, or one of the nodes to
  // skip (a mapping entry whose key is not a string: the key and its value).
  bool skipped(const Event& e) {
    if (skipDepth_ > 0) {
      skipDepth_ += e.starts() ? 1 : (e.type == Event::End ? -1 : 0);
      return true;
    }
    if (skipNodes_ > 0 && e.type != Event::End) {
      --skipNodes_;
      if (e.starts()) {
        skipDepth_ = 1;
      }
      return true;
    }
    return false;
  }

  void dispatch(const Event& e) {
    if (exhausted_) {
      return;
    }
    if (e.type == Event::Alias) {
      // One node, however large its anchor: skipped whole, without playing it.
      if (skipDepth_ > 0) {
        return;
      }
      if (skipNodes_ > 0) {
        --skipNodes_;
        return;
      }
      replay(e.anchor);
      // The alias is one whole node: a skip it started (a key that is not a string) ends with it,
      // even when its anchor is still open and its events have no end.
      skipDepth_ = 0;
      return;
    }
    if (skipped(e)) {
      return;
    }
    if (e.type == Event::End) {
      end();
      return;
    }
    if (frames_.empty()) {
      startDocument(e);
      if (!doc_) {
        return;
      }
      node(e, "");
      return;
    }
    Frame& parent = frames_.back();
    if (parent.isMap && !parent.haveKey) {
      key(e);
      return;
    }
    std::string path = parent.isMap ? appendKey(parent.path, parent.key)
                                    : appendIndex(parent.path, parent.items++);
    if (!parent.isMap) {
      if (!chargeBytes(e.mark, path, path.size())) {
        return;
      }
      recordPosition(path, e.mark);
    }
    parent.haveKey = false;
    node(e, path);
  }

  // The root of a document: an empty one (a null root) is skipped.
  void startDocument(const Event& e) {
    if (e.type == Event::Null) {
      return;
    }
    doc_.emplace();
    doc_->index = index_;
    doc_->sourceMap = SourceMap(file_);
    doc_->where = {*file_, linesBefore_ + (e.mark.is_null() ? 1 : e.mark.line + 1),
                   e.mark.is_null() ? 1 : e.mark.column + 1};
    errorsAtStart_ = diags_.size();
  }

  // A mapping's key: a string, charged, not a duplicate; anything else skips the entry.
  void key(const Event& e) {
    Frame& map = frames_.back();
    if (e.type != Event::Scalar) {
      error(e.mark, map.path, "a mapping key is not a plain string (expected a field name)");
      // This key (the rest of it, when it is a mapping or a sequence) and its value.
      skipDepth_ = e.starts() ? 1 : 0;
      skipNodes_ = 1;
      return;
    }
    const std::string& name = *e.value;
    if (!charge(e.mark, map.path, name)) {
      return;
    }
    std::string keyPath = appendKey(map.path, name);
    if (!chargeBytes(e.mark, keyPath, keyPath.size())) {
      return;
    }
    if (map.value.contains(name)) {
      error(e.mark, keyPath,
            "duplicate key \"" + shorten(name) + "\" (expected each field once per mapping)");
      skipNodes_ = 1;
      return;
    }
    recordPosition(keyPath, e.mark);
    map.key = name;
    map.haveKey = true;
  }

  // A value at `path`: counted, then a scalar or null is put in its parent, a mapping or a
  // sequence opened.
  void node(const Event& e, const std::string& path) {
    if (static_cast<int>(frames_.size()) > limits_.maxDepth) {
      error(e.mark, path,
            limitMessage("maxDepth", static_cast<size_t>(limits_.maxDepth),
                         "nesting deeper than " + std::to_string(limits_.maxDepth) + " levels"));
      exhausted_ = true;
      return;
    }
    if (++budget_.nodes > limits_.maxNodesPerDocument) {
      error(e.mark, path,
            limitMessage("maxNodesPerDocument", limits_.maxNodesPerDocument,
                         "the document has more values than that, counting each use of an "
                         "alias"));
      exhausted_ = true;
      return;
    }
    switch (e.type) {
      case Event::Null:
        put(nullptr);
        return;
      case Event::Scalar:
        if (!charge(e.mark, path, *e.value)) {
          return;
        }
        put(scalar(e, path));
        return;
      case Event::SeqStart:
        frames_.push_back({false, Json::array(), path});
        return;
      case Event::MapStart:
        frames_.push_back({true, Json::object(), path});
        return;
      default:
        return;
    }
  }

  void end() {
    if (frames_.empty()) {
      return;
    }
    Json value = std::move(frames_.back().value);
    frames_.pop_back();
    put(std::move(value));
  }

  // A finished value into its parent (or as the document).
  void put(Json value) {
    if (frames_.empty()) {
      if (doc_) {
        doc_->value = std::move(value);
      }
      return;
    }
    Frame& parent = frames_.back();
    if (parent.isMap) {
      parent.value[parent.key] = std::move(value);
    } else {
      parent.value.push_back(std::move(value));
    }
  }

  // Counts a key's or a scalar's bytes against the string and document limits.
  bool charge(const YAML::Mark& mark, const std::string& path, const std::string& text) {
    if (text.size() > limits_.maxStringBytes) {
      error(mark, path,
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
      error(mark, path,
            "not valid UTF-8 (byte " + std::to_string(bad) + " of this " +
                std::to_string(text.size()) + "-byte string is 0x" + hexByte(text[bad]) +
                "); manifests must be UTF-8 text");
      exhausted_ = true;  // the document goes, like one past a limit: no schema error on a hole
      return false;
    }
    return chargeBytes(mark, path, text.size());
  }

  // Every value's field path is kept (the source map), so paths are charged too: a wide mapping
  // under a long key must not cost its width times the key.
  bool chargeBytes(const YAML::Mark& mark, const std::string& path, size_t n) {
    budget_.bytes += n;
    if (budget_.bytes > limits_.maxBytesPerDocument) {
      error(mark, path,
            limitMessage("maxBytesPerDocument", limits_.maxBytesPerDocument,
                         "the document's keys, strings and field paths add up to more, "
                         "counting each use of an alias"));
      exhausted_ = true;
      return false;
    }
    return true;
  }

  Json scalar(const Event& e, const std::string& path) {
    const std::string& text = *e.value;
    const std::string& tag = *e.tag;
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
    error(e.mark, path,
          "unsupported or mismatched tag " + shorten(tag) + " on \"" + shorten(text) +
              "\" (expected a plain, quoted, !!str, !!int, !!float, !!bool or !!null scalar)");
    return text;
  }

  void recordPosition(const std::string& path, const YAML::Mark& mark) {
    if (mark.is_null() || !doc_) {
      return;
    }
    doc_->sourceMap.add(path, linesBefore_ + mark.line + 1, mark.column + 1);
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
  std::vector<YamlDocument> docs_;
  size_t starts_ = 0;
  YAML::Mark lastStart_;
  int index_ = -1;
  // The document being built: none for an empty one or one a limit stopped.
  std::optional<YamlDocument> doc_;
  size_t errorsAtStart_ = 0;
  std::vector<Frame> frames_;
  std::map<YAML::anchor_t, std::vector<KeptEvent>> anchors_;
  std::vector<Recording> recordings_;
  int replaying_ = 0;
  Budget budget_;
  bool exhausted_ = false;
  int skipDepth_ = 0;
  int skipNodes_ = 0;
  size_t reported_ = 0;
  size_t suppressed_ = 0;
};

}  // namespace

std::vector<YamlDocument> parseYamlDocuments(const std::string& content,
                                             std::shared_ptr<const std::string> fileName,
                                             Diagnostics& diagnostics, const YamlLimits& limits,
                                             int linesBefore, size_t* documentStarts) {
  // The documents' own diagnostics are kept aside until the stream has parsed: on a syntax error
  // the file is that error alone.
  Diagnostics converted;
  DocumentBuilder builder(fileName, converted, limits, linesBefore);
  try {
    std::istringstream in(content);
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(builder)) {
    }
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
  if (documentStarts != nullptr) {
    *documentStarts = builder.documentStarts();
  }
  builder.finish();
  diagnostics.append(converted);
  return std::move(builder.documents());
}

namespace {

// Where the documents of a stream that may be cut start (see YamlPiece), in order; nullopt
// when the stream must stay whole.
std::optional<std::vector<size_t>> documentStarts(std::string_view content) {
  auto lineEnd = [&](size_t at) {
    size_t end = content.find('\n', at);
    return end == std::string_view::npos ? content.size() : end;
  };
  // yaml-cpp reads the encoding from the first bytes (a BOM, or where the zero bytes of UTF-16
  // or UTF-32 are): a stream that could be other than UTF-8 stays whole, since its later pieces
  // would be read as UTF-8. So does one with a directive anywhere.
  if (content.find('\0') != std::string_view::npos ||
      (content.size() >= 2 && static_cast<unsigned char>(content[0]) >= 0xfe)) {
    return std::nullopt;
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
  std::vector<size_t> starts;
  for (size_t at = 0; at < content.size(); at = lineEnd(at) + 1) {
    if (content[at] == '%') {
      return std::nullopt;
    }
    if (at > 0 && startsDocument(at)) {
      starts.push_back(at);
    }
  }
  return starts;
}

// The pieces between `cuts` (document starts, increasing, none at 0).
std::vector<YamlPiece> piecesAt(std::string_view content, const std::vector<size_t>& cuts) {
  std::vector<YamlPiece> out;
  size_t from = 0;
  int lines = 0;
  for (size_t at : cuts) {
    std::string_view piece = content.substr(from, at - from);
    out.push_back({std::string(piece), lines, false});
    lines += static_cast<int>(std::count(piece.begin(), piece.end(), '\n'));
    from = at;
  }
  out.push_back({std::string(content.substr(from)), lines});
  return out;
}

}  // namespace

std::vector<YamlPiece> splitYamlStreamByContent(std::string_view content, size_t minBytes,
                                                size_t maxBytes) {
  std::optional<std::vector<size_t>> starts = documentStarts(content);
  if (!starts) {
    return {{std::string(content), 0}};
  }
  // A cut follows a document whose text hashes to 0 modulo kSpread, once the piece has
  // minBytes: which documents those are depends on their text only, so an edit moves the cuts
  // next to it and no others (content-defined chunking, as rsync and backup tools cut files).
  constexpr size_t kSpread = 16;
  std::vector<size_t> cuts;
  size_t from = 0;
  size_t document = 0;  // where the document before the start looked at begins
  for (size_t at : *starts) {
    size_t size = at - from;
    bool chosen =
        size >= minBytes &&
        std::hash<std::string_view>()(content.substr(document, at - document)) % kSpread == 0;
    if (chosen || size >= maxBytes) {
      cuts.push_back(at);
      from = at;
    }
    document = at;
  }
  return piecesAt(content, cuts);
}

}  // namespace hyper
