#include "reconciler/field_path.h"

#include <cctype>

namespace hyper {

namespace {

bool keyChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; }

void visitFrom(const nlohmann::json& value, FieldPattern::const_iterator at,
               FieldPattern::const_iterator end, const std::string& path,
               const std::function<void(const std::string&, const nlohmann::json&)>& visit) {
  if (at == end) {
    visit(path, value);
    return;
  }
  if (!at->key.empty()) {
    if (!value.is_object()) {
      return;
    }
    auto it = value.find(at->key);
    if (it != value.end()) {
      visitFrom(*it, at + 1, end, path.empty() ? at->key : path + "." + at->key, visit);
    }
    return;
  }
  if (!value.is_array()) {
    return;
  }
  if (at->index >= 0) {
    auto i = static_cast<size_t>(at->index);
    if (i < value.size()) {
      visitFrom(value[i], at + 1, end, path + "[" + std::to_string(i) + "]", visit);
    }
    return;
  }
  for (size_t i = 0; i < value.size(); ++i) {
    visitFrom(value[i], at + 1, end, path + "[" + std::to_string(i) + "]", visit);
  }
}

}  // namespace

std::optional<FieldPattern> parseFieldPath(const std::string& path, bool wildcards) {
  FieldPattern out;
  size_t i = 0;
  while (i < path.size()) {
    if (!out.empty()) {
      if (path[i] != '.') {
        return std::nullopt;
      }
      ++i;
    }
    size_t start = i;
    while (i < path.size() && keyChar(path[i])) {
      ++i;
    }
    if (i == start) {
      return std::nullopt;
    }
    out.push_back({path.substr(start, i - start), -1});
    while (i < path.size() && path[i] == '[') {
      size_t close = path.find(']', i);
      if (close == std::string::npos || close == i + 1) {
        return std::nullopt;
      }
      std::string inner = path.substr(i + 1, close - i - 1);
      FieldPathSegment s;
      if (inner == "*") {
        if (!wildcards) {
          return std::nullopt;
        }
      } else {
        if (inner.size() > 9) {
          return std::nullopt;
        }
        for (char c : inner) {
          if (!std::isdigit(static_cast<unsigned char>(c))) {
            return std::nullopt;
          }
        }
        s.index = std::stol(inner);
      }
      out.push_back(std::move(s));
      i = close + 1;
    }
  }
  if (out.empty()) {
    return std::nullopt;
  }
  return out;
}

void forEachField(const nlohmann::json& value, const FieldPattern& pattern, const std::string& path,
                  const std::function<void(const std::string&, const nlohmann::json&)>& visit) {
  visitFrom(value, pattern.begin(), pattern.end(), path, visit);
}

}  // namespace hyper
