#include "broker/client_wire.h"

#include <cstdint>
#include <cstdio>

#include "broker/output.h"

namespace hyper::broker {

namespace {

// The length of the well-formed UTF-8 sequence at s[i] (Unicode table 3-7), or, when there is
// none, -(length of its longest valid prefix, at least 1): the bytes one U+FFFD replaces, which is
// also where nlohmann's decoder resumes.
int sequenceAt(std::string_view s, size_t i) {
  auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) {
    return 1;
  }
  int need;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the first continuation byte
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b == 0xE0) {
    need = 2;
    lo = 0xA0;
  } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
    need = 2;
  } else if (b == 0xED) {
    need = 2;
    hi = 0x9F;
  } else if (b == 0xF0) {
    need = 3;
    lo = 0x90;
  } else if (b >= 0xF1 && b <= 0xF3) {
    need = 3;
  } else if (b == 0xF4) {
    need = 3;
    hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k <= need; ++k) {
    if (i + k >= s.size()) {
      return -k;
    }
    auto c = static_cast<unsigned char>(s[i + k]);
    if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) {
      return -k;
    }
  }
  return need + 1;
}

void appendJsonString(std::string& out, std::string_view s) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    int n = sequenceAt(s, i);
    if (n < 0) {
      out += "\xEF\xBF\xBD";
      i += static_cast<size_t>(-n);
      continue;
    }
    if (n > 1) {
      out.append(s.data() + i, static_cast<size_t>(n));
      i += static_cast<size_t>(n);
      continue;
    }
    char c = s[i++];
    switch (c) {
      case '\b':
        out += "\\b";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\r':
        out += "\\r";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (static_cast<unsigned char>(c) <= 0x1F) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\u%04x", static_cast<unsigned>(c));
          out += hex;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

// A recursive-descent reader of one JSON value, strict about syntax (RFC 8259), that keeps only
// what ClientFrame needs.
class FrameReader {
 public:
  explicit FrameReader(std::string_view text) : s_(text) {}

  Status readObject(ClientFrame& frame) {
    skipSpace();
    if (!eat('{')) {
      return fail("expected an object");
    }
    skipSpace();
    if (eat('}')) {
      return finish();
    }
    while (true) {
      skipSpace();
      std::string key;
      HYPER_RETURN_IF_ERROR(readKey(key));
      HYPER_RETURN_IF_ERROR(readMember(key, frame));
      skipSpace();
      if (eat(',')) {
        continue;
      }
      if (eat('}')) {
        return finish();
      }
      return fail("expected ',' or '}'");
    }
  }

 private:
  Status readMember(const std::string& key, ClientFrame& frame) {
    if (peek() == '"') {
      std::string value;
      if (!readString(value)) {
        return fail("invalid string");
      }
      if (key == "type") {
        frame.type = std::move(value);
        hasType_ = true;
      } else if (key == "data") {
        frame.data = std::move(value);
      } else if (key == "encoding") {
        frame.encoding = std::move(value);
        frame.encodingIsString = true;
      } else if (key == "message") {
        frame.message = std::move(value);
      }
    } else if (key == "code" && (peek() == '-' || isDigit(peek()))) {
      frame.hasCode = true;
      bool integer = false;
      long long value = 0;
      if (!readNumber(&integer, &value)) {
        return fail("invalid number");
      }
      if (integer) {
        frame.code = value;
      }
    } else if (key == "timedOut" && peek() == 't') {
      frame.timedOut = true;
      return skipValue(0);
    } else if (key == "encoding") {
      // Not a string, so not a known encoding either; kept for the error message.
      size_t start = pos_;
      HYPER_RETURN_IF_ERROR(skipValue(0));
      frame.encoding = std::string(s_.substr(start, pos_ - start));
      frame.encodingIsString = false;
    } else {
      frame.hasCode = frame.hasCode || key == "code";
      return skipValue(0);
    }
    return Status::ok();
  }

  Status skipValue(int depth) {
    if (depth > 64) {
      return fail("nested too deeply");
    }
    char c = peek();
    if (c == '"') {
      std::string ignored;
      return readString(ignored) ? Status::ok() : fail("invalid string");
    }
    if (c == '-' || isDigit(c)) {
      return readNumber(nullptr, nullptr) ? Status::ok() : fail("invalid number");
    }
    if (eatWord("true") || eatWord("false") || eatWord("null")) {
      return Status::ok();
    }
    char close = c == '{' ? '}' : (c == '[' ? ']' : '\0');
    if (close == '\0') {
      return fail("expected a value");
    }
    ++pos_;
    skipSpace();
    if (eat(close)) {
      return Status::ok();
    }
    while (true) {
      skipSpace();
      if (close == '}') {
        std::string key;
        HYPER_RETURN_IF_ERROR(readKey(key));
      }
      HYPER_RETURN_IF_ERROR(skipValue(depth + 1));
      skipSpace();
      if (eat(',')) {
        continue;
      }
      if (eat(close)) {
        return Status::ok();
      }
      return fail(close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
  }

  // A JSON number; `integer` tells whether it has neither fraction nor exponent and fits a long
  // long (then `value` holds it).
  bool readNumber(bool* integer, long long* value) {
    size_t start = pos_;
    eat('-');
    if (eat('0')) {
    } else if (isDigit(peek())) {
      while (isDigit(peek())) {
        ++pos_;
      }
    } else {
      return false;
    }
    bool whole = true;
    if (eat('.')) {
      whole = false;
      if (!isDigit(peek())) {
        return false;
      }
      while (isDigit(peek())) {
        ++pos_;
      }
    }
    if (peek() == 'e' || peek() == 'E') {
      whole = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') {
        ++pos_;
      }
      if (!isDigit(peek())) {
        return false;
      }
      while (isDigit(peek())) {
        ++pos_;
      }
    }
    if (integer != nullptr) {
      *integer = false;
      if (whole) {
        std::string_view digits = s_.substr(start, pos_ - start);
        bool negative = digits[0] == '-';
        unsigned long long magnitude = 0;
        bool fits = true;
        for (char d : digits.substr(negative ? 1 : 0)) {
          unsigned long long next = magnitude * 10 + static_cast<unsigned>(d - '0');
          if (magnitude > (~0ULL) / 10 || next < magnitude ||
              next > static_cast<unsigned long long>(INT64_MAX) + (negative ? 1 : 0)) {
            fits = false;
            break;
          }
          magnitude = next;
        }
        if (fits) {
          *integer = true;
          *value =
              negative ? static_cast<long long>(0 - magnitude) : static_cast<long long>(magnitude);
        }
      }
    }
    return true;
  }

  bool readHex4(uint32_t& out) {
    if (pos_ + 4 > s_.size()) {
      return false;
    }
    out = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[pos_++];
      out <<= 4;
      if (isDigit(c)) {
        out |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        out |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        out |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    return true;
  }

  static void appendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // A JSON string: escapes decoded (a \u escape of a lone surrogate is invalid), raw control
  // characters refused, other bytes copied as they are.
  // An object member's `"key" :` and the blanks after it.
  Status readKey(std::string& key) {
    if (!readString(key)) {
      return fail("expected a string key");
    }
    skipSpace();
    if (!eat(':')) {
      return fail("expected ':'");
    }
    skipSpace();
    return Status::ok();
  }

  bool readString(std::string& out) {
    if (!eat('"')) {
      return false;
    }
    while (pos_ < s_.size()) {
      char c = s_[pos_++];
      if (c == '"') {
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) {
        return false;
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) {
        return false;
      }
      char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp;
          if (!readHex4(cp) || (cp >= 0xDC00 && cp <= 0xDFFF)) {
            return false;
          }
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t low;
            if (!eat('\\') || !eat('u') || !readHex4(low) || low < 0xDC00 || low > 0xDFFF) {
              return false;
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          appendUtf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

  Status finish() {
    skipSpace();
    if (pos_ != s_.size()) {
      return fail("text after the object");
    }
    if (!hasType_) {
      return Status::error("no string \"type\"");
    }
    return Status::ok();
  }

  Status fail(const char* what) const {
    return Status::error(std::string(what) + " at offset " + std::to_string(pos_));
  }

  static bool isDigit(char c) { return c >= '0' && c <= '9'; }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool eat(char c) {
    if (peek() != c) {
      return false;
    }
    ++pos_;
    return true;
  }
  bool eatWord(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) {
      return false;
    }
    pos_ += word.size();
    return true;
  }
  void skipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  bool hasType_ = false;
};

}  // namespace

std::string encodeRunRequest(const RunRequest& req) {
  // Keys in nlohmann's order (its objects are sorted maps), so that the bytes are the same.
  std::string out = "{\"args\":[";
  for (size_t i = 0; i < req.args.size(); ++i) {
    if (i > 0) {
      out += ',';
    }
    appendJsonString(out, req.args[i]);
  }
  out += "],\"command\":";
  appendJsonString(out, req.command);
  out += ",\"cwd\":";
  appendJsonString(out, req.cwd);
  out += ",\"env\":{";
  bool first = true;
  for (const auto& [name, value] : req.env) {
    if (!first) {
      out += ',';
    }
    first = false;
    appendJsonString(out, name);
    out += ':';
    appendJsonString(out, value);
  }
  out += "},\"requestId\":";
  appendJsonString(out, req.requestId);
  out += ",\"schemaVersion\":\"1\"";
  if (req.timeoutSec) {
    out += ",\"timeoutSec\":" + std::to_string(*req.timeoutSec);
  }
  out += '}';
  return out;
}

Result<ClientFrame> parseClientFrame(std::string_view line) {
  ClientFrame frame;
  FrameReader reader(line);
  HYPER_RETURN_IF_ERROR(reader.readObject(frame));
  return frame;
}

Result<std::string> clientFrameData(const ClientFrame& frame) {
  if (!frame.data) {
    return Status::error("output frame without a string \"data\"");
  }
  if (!frame.encoding || (frame.encodingIsString && *frame.encoding == "utf-8")) {
    return *frame.data;
  }
  if (frame.encodingIsString && *frame.encoding == "base64") {
    return base64Decode(*frame.data);
  }
  std::string shown = *frame.encoding;
  if (frame.encodingIsString) {
    shown.clear();
    appendJsonString(shown, *frame.encoding);
  }
  return Status::error("output frame with unknown encoding " + shown);
}

}  // namespace hyper::broker
