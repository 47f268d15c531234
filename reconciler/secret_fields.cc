#include "reconciler/secret_fields.h"

#include <cctype>
#include <optional>

namespace hyper {

namespace {

struct PathSegment {
  std::string key;
  long index = -1;  // for an index segment (key empty); -1 only in patterns: "[*]"
};

bool keyChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; }

// "spec.env[2].value" -> spec, env, [2], value. Also parses patterns ("[*]"). Nullopt when the
// text is not such a path.
std::optional<std::vector<PathSegment>> splitPath(const std::string& path, bool wildcards) {
  std::vector<PathSegment> out;
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
      PathSegment s;
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

}  // namespace

Result<SecretFields> SecretFields::parse(const std::vector<std::string>& paths) {
  SecretFields out;
  for (const auto& p : paths) {
    auto split = splitPath(p, /*wildcards=*/true);
    if (!split) {
      return Status::error("secret field \"" + p +
                           "\" is not a field path under spec (expected names joined "
                           "by '.', each optionally followed by [*] or [N])");
    }
    Pattern pattern{{"spec", -1}};
    for (auto& s : *split) {
      pattern.push_back({std::move(s.key), s.index});
    }
    out.patterns_.push_back(std::move(pattern));
  }
  return out;
}

bool SecretFields::redactIn(Json& value, const Segment* rest, const Segment* end) {
  if (rest == end) {
    if (value.is_null()) {
      return false;  // absent: nothing to hide
    }
    value = kRedacted;
    return true;
  }
  if (!rest->key.empty()) {
    if (!value.is_object()) {
      return false;
    }
    auto it = value.find(rest->key);
    return it != value.end() && redactIn(*it, rest + 1, end);
  }
  if (!value.is_array()) {
    return false;
  }
  if (rest->index >= 0) {
    return static_cast<size_t>(rest->index) < value.size() &&
           redactIn(value[static_cast<size_t>(rest->index)], rest + 1, end);
  }
  bool any = false;
  for (auto& item : value) {
    any = redactIn(item, rest + 1, end) || any;
  }
  return any;
}

void SecretFields::redact(FieldChange& change) const {
  if (patterns_.empty() || change.sensitive) {
    if (change.sensitive) {
      change.before = Json();
      change.after = Json();
    }
    return;
  }
  auto path = splitPath(change.path, /*wildcards=*/false);
  if (!path) {
    // A path hyper's diff never makes: without knowing where it points, assume the worst.
    change.sensitive = true;
    change.before = Json();
    change.after = Json();
    return;
  }
  bool redacted = false;
  for (const auto& pattern : patterns_) {
    // Walk the common prefix: the change path and the pattern agree while keys are equal and
    // indices match (a "[*]" matches any).
    size_t n = 0;
    while (n < path->size() && n < pattern.size()) {
      const PathSegment& p = (*path)[n];
      const Segment& s = pattern[n];
      bool same =
          s.key.empty() ? (p.key.empty() && (s.index < 0 || s.index == p.index)) : p.key == s.key;
      if (!same) {
        break;
      }
      ++n;
    }
    if (n == pattern.size()) {  // at or under the secret field
      change.sensitive = true;
      change.before = Json();
      change.after = Json();
      return;
    }
    if (n == path->size()) {  // above it: hide the secret inside the values
      const Segment* rest = pattern.data() + n;
      const Segment* end = pattern.data() + pattern.size();
      redacted = redactIn(change.before, rest, end) || redacted;
      redacted = redactIn(change.after, rest, end) || redacted;
    }
  }
  if (redacted && change.before == change.after) {
    // Only a secret differed: say so without the values, which would look unchanged.
    change.sensitive = true;
    change.before = Json();
    change.after = Json();
  }
}

Json SecretFields::redactSpec(const Json& spec) const {
  Json out = spec;
  for (const auto& pattern : patterns_) {
    redactIn(out, pattern.data() + 1, pattern.data() + pattern.size());
  }
  return out;
}

}  // namespace hyper
