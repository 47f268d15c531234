#include "reconciler/secret_fields.h"

namespace hyper {

Result<SecretFields> SecretFields::parse(const std::vector<std::string>& paths) {
  SecretFields out;
  for (const auto& p : paths) {
    auto split = parseFieldPath(p, /*wildcards=*/true);
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
  auto path = parseFieldPath(change.path, /*wildcards=*/false);
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
      const FieldPathSegment& p = (*path)[n];
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
