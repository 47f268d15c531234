#include "reconciler/object.h"

namespace hyper {

const std::string& SourceMap::file() const {
  static const std::string empty;
  return file_ ? *file_ : empty;
}

SourceLocation SourceMap::locate(std::string_view path) const {
  std::string_view probe = path;
  while (true) {
    uint32_t begin = 0;
    for (const auto& e : entries_) {
      if (std::string_view(paths_).substr(begin, e.pathEnd - begin) == probe) {
        return {file(), e.line, e.column};
      }
      begin = e.pathEnd;
    }
    if (probe.empty()) {
      break;
    }
    size_t cut = probe.find_last_of(".[");
    probe = cut == std::string_view::npos ? std::string_view() : probe.substr(0, cut);
  }
  return {file(), 0, 0};
}

SourceLocation Object::locate(std::string_view fieldPath) const {
  SourceLocation loc = sourceMap.locate(fieldPath);
  if (loc.line == 0) {
    return where;
  }
  return loc;
}

std::string appendKey(std::string_view path, std::string_view key) {
  if (path.empty()) {
    return std::string(key);
  }
  std::string out(path);
  out += '.';
  out += key;
  return out;
}

std::string appendIndex(std::string_view path, size_t index) {
  std::string out(path);
  out += '[';
  out += std::to_string(index);
  out += ']';
  return out;
}

std::string canonicalJson(const Json& value) {
  // nlohmann::json objects are std::map-backed, so dump() is already key-sorted.
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace hyper
