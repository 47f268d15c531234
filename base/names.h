#pragma once

#include <string>
#include <string_view>

namespace hyper {

// A DNS label (RFC 1123): 1-63 of a-z 0-9 '-', no leading or trailing '-'. Names flow into
// interface names, file paths, nftables identifiers and kernel command lines, so they are checked
// once at load and never normalised. Returns an empty string when valid, else what is wrong.
std::string checkDnsLabel(std::string_view name);

// Linux interface names are at most 15 bytes (IFNAMSIZ - 1). Derives "<prefix><name>" when it fits,
// else "<prefix><head>-<hash>" with a short stable hash of the full name, so two long names that
// share a head never collide.
std::string deriveInterfaceName(std::string_view prefix, std::string_view name);

// Valid Linux interface name: 1-15 bytes, no '/', ':', whitespace, not "." or "..".
std::string checkInterfaceName(std::string_view name);

}  // namespace hyper
