#include "broker/output.h"

#include <array>

namespace hyper::broker {

using Json = nlohmann::json;

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The length of the UTF-8 sequence that starts with `lead`, or 0 for a byte that cannot start one.
size_t sequenceLength(unsigned char lead) {
  if (lead < 0x80) {
    return 1;
  }
  if (lead >= 0xc2 && lead <= 0xdf) {
    return 2;
  }
  if (lead >= 0xe0 && lead <= 0xef) {
    return 3;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    return 4;
  }
  return 0;
}

// Whether bytes[1..n) are valid continuations of the sequence starting at bytes[0] (only the
// first `available` bytes are checked).
bool validContinuation(const unsigned char* s, size_t n, size_t available) {
  for (size_t k = 1; k < n && k < available; ++k) {
    unsigned char c = s[k];
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    if (k == 1) {
      if (s[0] == 0xe0) {
        lo = 0xa0;  // overlong
      } else if (s[0] == 0xed) {
        hi = 0x9f;  // surrogates
      } else if (s[0] == 0xf0) {
        lo = 0x90;  // overlong
      } else if (s[0] == 0xf4) {
        hi = 0x8f;  // above U+10FFFF
      }
    }
    if (c < lo || c > hi) {
      return false;
    }
  }
  return true;
}

std::string dumpLine(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace

bool isValidUtf8(std::string_view data) {
  const auto* s = reinterpret_cast<const unsigned char*>(data.data());
  size_t i = 0;
  while (i < data.size()) {
    size_t n = sequenceLength(s[i]);
    if (n == 0 || i + n > data.size() || !validContinuation(s + i, n, n)) {
      return false;
    }
    i += n;
  }
  return true;
}

size_t incompleteUtf8Tail(std::string_view data) {
  const auto* s = reinterpret_cast<const unsigned char*>(data.data());
  size_t size = data.size();
  for (size_t back = 1; back <= 3 && back <= size; ++back) {
    size_t start = size - back;
    unsigned char c = s[start];
    if ((c & 0xc0) == 0x80) {
      continue;  // a continuation byte; the lead is further back
    }
    size_t n = sequenceLength(c);
    if (n > back && validContinuation(s + start, n, back)) {
      return back;
    }
    return 0;
  }
  return 0;
}

std::string base64Encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  const auto* s = reinterpret_cast<const unsigned char*>(data.data());
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    unsigned v = (s[i] << 16) | (s[i + 1] << 8) | s[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == data.size()) {
    unsigned v = s[i] << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    unsigned v = (s[i] << 16) | (s[i + 1] << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

Result<std::string> base64Decode(std::string_view text) {
  std::array<int, 256> value;
  value.fill(-1);
  for (int k = 0; k < 64; ++k) {
    value[static_cast<unsigned char>(kAlphabet[k])] = k;
  }
  if (text.size() % 4 != 0) {
    return Status::error("base64: length " + std::to_string(text.size()) +
                         " is not a multiple of 4");
  }
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = text[i + k];
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0 || value[static_cast<unsigned char>(c)] < 0) {
        return Status::error("base64: invalid character at offset " + std::to_string(i + k));
      }
      v[k] = value[static_cast<unsigned char>(c)];
    }
    unsigned bits = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out += static_cast<char>((bits >> 16) & 0xff);
    if (pad < 2) {
      out += static_cast<char>((bits >> 8) & 0xff);
    }
    if (pad < 1) {
      out += static_cast<char>(bits & 0xff);
    }
  }
  return out;
}

std::string OutputFramer::frame(std::string_view bytes) const {
  Json j = {{"type", stream_}};
  if (isValidUtf8(bytes)) {
    j["data"] = std::string(bytes);
  } else {
    j["data"] = base64Encode(bytes);
    j["encoding"] = "base64";
  }
  return dumpLine(j);
}

std::string OutputFramer::feed(std::string_view bytes) {
  pending_.append(bytes);
  size_t tail = incompleteUtf8Tail(pending_);
  std::string_view head(pending_.data(), pending_.size() - tail);
  if (!isValidUtf8(head)) {
    // Not text anyway: send everything, the tail included, as base64.
    std::string out = frame(pending_);
    pending_.clear();
    return out;
  }
  if (head.empty()) {
    return "";
  }
  std::string out = frame(head);
  pending_.erase(0, head.size());
  return out;
}

std::string OutputFramer::flush() {
  if (pending_.empty()) {
    return "";
  }
  std::string out = frame(pending_);
  pending_.clear();
  return out;
}

std::string exitFrame(int code, bool timedOut) {
  return dumpLine({{"type", "exit"}, {"code", code}, {"timedOut", timedOut}});
}

std::string errorFrame(const std::string& message) {
  return dumpLine({{"type", "error"}, {"message", message}});
}

std::string queuedFrame(const std::string& rule) {
  return dumpLine({{"type", "queued"}, {"rule", rule}});
}

Result<std::string> frameData(const Json& frame) {
  auto data = frame.find("data");
  if (data == frame.end() || !data->is_string()) {
    return Status::error("output frame without a string \"data\"");
  }
  auto encoding = frame.find("encoding");
  if (encoding == frame.end() || *encoding == "utf-8") {
    return data->get<std::string>();
  }
  if (*encoding == "base64") {
    return base64Decode(data->get<std::string>());
  }
  return Status::error("output frame with unknown encoding " + encoding->dump());
}

}  // namespace hyper::broker
