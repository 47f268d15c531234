#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hyper::broker {

// Connects to the broker's socket. The error is one line a person can act on: the socket is
// missing, the connection is refused, or permission is denied.
Result<int> connectBroker(const std::string& socketPath);

// Sends {"admin": action} ("rules" or "reload") and returns the broker's rules report (see
// BrokerDaemon::rulesReport). Only root is answered.
Result<nlohmann::json> adminRequest(const std::string& socketPath, const std::string& action);

// Reads one '\n'-terminated line from `fd` into `line`, keeping what follows in `buffer`.
// False at end of stream or on an error, with `line` empty.
bool readFrameLine(int fd, std::string& buffer, std::string& line);

}  // namespace hyper::broker
