#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hyper::broker {

// True when `data` is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
bool isValidUtf8(std::string_view data);

// The length of a trailing sequence that is a valid but incomplete start of a UTF-8 character
// (0 to 3): bytes that may be completed by the next read.
size_t incompleteUtf8Tail(std::string_view data);

std::string base64Encode(std::string_view data);
Result<std::string> base64Decode(std::string_view text);

// Turns the bytes of one output stream (stdout or stderr) into NDJSON frames without losing any:
// text that is valid UTF-8 goes as a JSON string, anything else as base64. A character split
// across two reads is held back until its end arrives, so ordinary text never turns into base64
// just because of where a read stopped.
class OutputFramer {
 public:
  explicit OutputFramer(std::string stream) : stream_(std::move(stream)) {}

  // The frame(s) for `bytes` ("{...}\n" lines; empty when everything was held back).
  std::string feed(std::string_view bytes);
  // Whatever was held back, at end of stream.
  std::string flush();

 private:
  std::string frame(std::string_view bytes) const;

  std::string stream_;
  std::string pending_;
};

// {"type":"exit","code":N,"timedOut":B}
std::string exitFrame(int code, bool timedOut);
// {"type":"error","message":M}: the request was rejected or failed to start; an exit frame with
// code 1 follows.
std::string errorFrame(const std::string& message);
// {"type":"queued","rule":R}: every slot of the rule is taken; the run starts when one frees up.
std::string queuedFrame(const std::string& rule);

// Decodes the data of a stdout/stderr frame.
Result<std::string> frameData(const nlohmann::json& frame);

}  // namespace hyper::broker
