#pragma once

#include <string>
#include <string_view>

#include "reconciler/kind_registry.h"

namespace hyper::controller {

// The JSON Schema (draft-07) of hyperd's config file. It is not a kind schema, so it does not live
// in schemas/ (every schemas/*.json is compiled in as a manifest kind); config_schema.cc is its
// single source. `hyperd --print-config-schema` and reference docs read it from here.
// `providers` is a bare mapping here; the overload below fills it in from the kind registry
// (each provider's settings schema).
std::string_view hyperdConfigSchema();
std::string hyperdConfigSchema(const KindRegistry& kinds);

}  // namespace hyper::controller
