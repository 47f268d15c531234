#pragma once

#include <string>
#include <vector>

#include "reconciler/object.h"

namespace hyper {

enum class ActionType { Create, Update, Replace, Delete };

const char* actionTypeName(ActionType t);  // "create", "update", "replace", "delete"

// How disruptive an action is for a running workload, where the provider says (VMs); None for
// kinds where it means nothing. Apply branches on it, so it is a value, not display text.
enum class Disruption { None, InPlace, Start, Stop, Restart, Replace };

// "in-place", "start", "stop", "restart", "replace"; "" for None.
const char* disruptionName(Disruption d);

// One field that differs between desired and observed (or last-applied) state.
// A null `before` means the field is absent on the host; a null `after` means it goes away.
struct FieldChange {
  std::string path;  // "spec.mtu"
  Json before;
  Json after;
  bool forcesReplace = false;  // this field cannot be changed in place
  bool sensitive = false;      // values are never printed, serialised or hashed
};

struct PlanAction {
  ActionType type = ActionType::Create;
  ObjectId id;
  std::string provider;
  std::string reason;  // why: "not on the host", "spec changed", "bridge deleted by hand"
  bool drift = false;  // the host changed, not the source
  std::vector<FieldChange> changes;
  std::vector<ObjectId> dependsOn;  // objects this one references (edges of the graph)
  Disruption disruption = Disruption::None;
  // What plan worked out that apply needs (a VM's placement, the VMs a policy selects), like
  // Terraform's private plan data: apply reads it from the action instead of from provider
  // members, so plan stays pure. Part of the plan's JSON and hash; not rendered. Never a secret.
  Json privateData;
};

// The plan is a value (Terraform's plan/apply split). `hyperctl diff` prints the same Plan that
// apply executes. Invariants:
//  - at most one action per object;
//  - actions are sorted by execution stage (deletes first, children before parents; then creates,
//    updates and replaces, parents before children), in the dependency graph's topological order,
//    whose ties are broken by kind, then name;
//  - it never holds a secret value: sensitive changes carry no before/after;
//  - hash() depends only on the actions and the revision, so the same input gives the same hash
//    on every run and every machine.
struct Plan {
  std::string revision;
  std::vector<PlanAction> actions;
  std::vector<ObjectId> orphans;  // managed, gone from the source, kept because prune was off

  bool empty() const { return actions.empty(); }
  Json toJson() const;
  std::string hash() const;  // sha256 of the canonical JSON of the actions and revision
  // Human text like `terraform plan`; `color` adds ANSI colours.
  std::string render(bool color = false) const;
};

// Field-level diff of two JSON values under `path`; objects recurse, arrays and scalars compare
// whole. Appends one FieldChange per differing leaf.
void diffJson(const std::string& path, const Json& before, const Json& after,
              std::vector<FieldChange>& out);

}  // namespace hyper
