#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace hyper {

// Field paths of a spec as kind records declare them (KindRecord::secretFields, ::fileSources):
// "token", "env[*].value", "initramfs.files[*].source". One parser for every such declaration.
struct FieldPathSegment {
  std::string key;  // empty for an index
  long index = -1;  // for an index segment: the index, or -1 for "[*]" (every item)
};
using FieldPattern = std::vector<FieldPathSegment>;

// "spec.env[2].value" -> spec, env, [2], value: segments of [A-Za-z0-9_-]+ joined by '.', each
// optionally followed by "[N]" or, with `wildcards`, "[*]". Nullopt when the text is not such a
// path.
std::optional<FieldPattern> parseFieldPath(const std::string& path, bool wildcards);

// Calls `visit` with the concrete path ("spec.initramfs.files[0].source") and the value of every
// field of `value` that `pattern` names, in document order; `path` is `value`'s own path. Absent
// fields, and fields of the wrong shape on the way (a string where a list was expected), are
// skipped: the schema has its say on those.
void forEachField(const nlohmann::json& value, const FieldPattern& pattern, const std::string& path,
                  const std::function<void(const std::string&, const nlohmann::json&)>& visit);

}  // namespace hyper
