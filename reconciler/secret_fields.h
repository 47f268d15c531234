#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "reconciler/field_path.h"
#include "reconciler/object.h"
#include "reconciler/plan.h"

namespace hyper {

// The fields of a kind whose values are secret (KindRecord::secretFields): paths under spec
// such as "token" or "env[*].value", where "[*]" stands for every item of an array. The engine
// passes every planned change through redact(), so a secret value never reaches a plan, its
// JSON or hash, `hyperctl diff`, hyperd's events or status, whatever the provider put in the
// change; `hyperctl get -o json` shows specs through redactSpec().
class SecretFields {
 public:
  // Checks the syntax: segments of [A-Za-z0-9_-]+ joined by '.', each optionally followed by
  // "[*]" or "[N]"; the error names the bad path.
  static Result<SecretFields> parse(const std::vector<std::string>& paths);
  SecretFields() = default;

  bool empty() const { return patterns_.empty(); }

  // A change at or under a secret field becomes sensitive and loses its values. A change above
  // one (a create's whole array, an object that appears) keeps its values with every secret in
  // them replaced by kRedacted, and becomes sensitive too when nothing but secrets differed.
  void redact(FieldChange& change) const;
  // `spec` with every secret value in it replaced by kRedacted.
  Json redactSpec(const Json& spec) const;

  static constexpr const char* kRedacted = "(sensitive value)";

 private:
  using Segment = FieldPathSegment;
  using Pattern = FieldPattern;  // starts with the "spec" key

  // Replaces what `rest` names inside `value` by kRedacted; true when something was replaced.
  static bool redactIn(Json& value, const Segment* rest, const Segment* end);

  std::vector<Pattern> patterns_;
};

}  // namespace hyper
