#pragma once

#include <string>
#include <string_view>

namespace hyper::broker {

// `text` made safe for one log line: backslash, control characters (newline, carriage return,
// escape, ...) and DEL are written as \\, \n, \r, \t or \xNN, so that a caller-supplied string
// (a command, a cwd, a request id, an argument, a reason quoting any of them) cannot start a
// forged log line or drive a terminal. Bytes >= 0x80 pass unchanged (UTF-8 text stays readable).
std::string escapeForLog(std::string_view text);

}  // namespace hyper::broker
