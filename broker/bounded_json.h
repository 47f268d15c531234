#pragma once

#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hyper::broker {

// How much JSON a parser of untrusted text accepts.
struct JsonLimits {
  size_t maxBytes = 256 * 1024;
  int maxDepth = 16;  // nesting of objects and arrays; 1 for a flat object
};

// Parses `text` as one JSON value within `limits`. The depth is checked by a SAX pass that stops
// at the first container past `maxDepth`, before any value is built, so a document nested a
// hundred thousand levels deep costs neither stack nor memory (and nothing built from it is ever
// destroyed or dumped recursively). Errors name the byte offset and what was expected, never the
// text itself: the text is the caller's and may be anything. No global state; safe to call from
// any thread (and from a fuzz target).
Result<nlohmann::json> parseBoundedJson(std::string_view text, const JsonLimits& limits);

}  // namespace hyper::broker
