#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "broker/request.h"

namespace hyper::broker {

// The protocol as hyper-broker-cli speaks it, without a JSON library. The client is started once
// for every make a sandboxed caller runs, so its start-up is on the critical path of each build
// step (issue 5: under 2 ms added over make); nlohmann::json, iostreams and locales cost it
// page faults and start-up work that this small codec does not. The daemon keeps nlohmann::json;
// the unit tests hold the two to the same bytes.

// The request line for `req`, without the newline: the same bytes as
// runRequestToJson(req).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), i.e.
// invalid UTF-8 in any string becomes U+FFFD exactly where nlohmann puts it.
std::string encodeRunRequest(const RunRequest& req);

// The fields of one frame the client acts on. A field of another JSON type than the one listed is
// left out (as if absent), except "encoding"; unknown fields are skipped.
struct ClientFrame {
  std::string type;
  std::optional<std::string> data;
  std::optional<std::string> encoding;  // its JSON text when it is not a string
  bool encodingIsString = false;
  std::optional<std::string> message;
  bool hasCode = false;           // "code" is present, whatever its type
  std::optional<long long> code;  // "code" is an integer
  bool timedOut = false;          // "timedOut" is true
};

// Parses one frame line. An error when the line is not one JSON object or has no string "type".
Result<ClientFrame> parseClientFrame(std::string_view line);

// The bytes of a stdout/stderr frame: its data, base64-decoded when "encoding" is "base64". The
// errors are frameData's (broker/output.h).
Result<std::string> clientFrameData(const ClientFrame& frame);

}  // namespace hyper::broker
