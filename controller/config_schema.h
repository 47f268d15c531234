#pragma once

#include <string_view>

namespace hyper::controller {

// The JSON Schema (draft-07) of hyperd's config file. It is not a kind schema, so it does not live
// in schemas/ (every schemas/*.json is compiled in as a manifest kind); config_schema.cc is its
// single source. `hyperd --print-config-schema` and reference docs read it from here.
std::string_view hyperdConfigSchema();

}  // namespace hyper::controller
