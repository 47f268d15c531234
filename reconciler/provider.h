#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "reconciler/diagnostic.h"
#include "reconciler/managed_record.h"
#include "reconciler/object.h"
#include "reconciler/plan.h"

namespace hyper {

// The provider contract (see docs/design.md). A provider owns some kinds and is asked, never
// tells. Every call takes a request struct and fills a response that carries diagnostics, so a
// field added later breaks no provider (terraform-plugin-framework). Providers never throw: any
// exception from a library is caught inside and becomes a diagnostic.

struct ValidateRequest {
  // Every desired object of this provider's kinds, already schema-valid. Cross-object checks
  // (overlapping CIDRs, duplicate bridge names) happen here.
  std::vector<const Object*> objects;
  // Every object of the revision, of every kind (read-only), for checks across kinds: a VM's
  // address must lie in its Network's cidr.
  const std::vector<std::shared_ptr<const Object>>* revision = nullptr;
};
struct ValidateResponse {
  Diagnostics diagnostics;  // fieldPath set, location filled in by the engine
};

// A reference from one object to another, found in its spec: an edge of the dependency graph.
struct Reference {
  std::string fieldPath;  // "spec.network"
  ObjectId target;
};

struct ObserveRequest {
  std::vector<const Object*> desired;         // this provider's desired objects
  std::vector<const ManagedRecord*> managed;  // this provider's inventory rows
  // Every object of the revision (read-only; null when observing without one, as `get` does).
  const std::vector<std::shared_ptr<const Object>>* revision = nullptr;
  // Every inventory record of every kind (read-only): what other providers applied (a VM's
  // allocated address, for the policies that select it).
  const std::vector<ManagedRecord>* inventory = nullptr;
};

// What the host has for one object.
struct ObservedState {
  bool exists = false;
  Json fields;               // observed values, shaped like the spec where they can be compared
  std::string fingerprint;   // digest of what is on the host (compared with the inventory's)
  std::string foreignOwner;  // non-empty: something hyper does not own holds the name/address
  std::string note;          // human detail ("bridge is down")
};

struct ObserveResponse {
  std::map<ObjectId, ObservedState> observed;  // one per desired or managed object
  Diagnostics diagnostics;
};

struct PlanRequest {
  ObjectId id;
  const Object* desired = nullptr;  // null: not in the source (prune candidate)
  const ObservedState* observed = nullptr;
  const ManagedRecord* managed = nullptr;  // null: hyper never applied it
};
struct PlanResponse {
  std::optional<PlanAction> action;  // empty when in sync
  Diagnostics diagnostics;           // e.g. a collision with something hyper does not own
};

struct ApplyRequest {
  const PlanAction* action = nullptr;
  const Object* desired = nullptr;         // null for Delete
  const ManagedRecord* managed = nullptr;  // null when hyper never applied it
};
struct ApplyResponse {
  Json handles;             // stored in the inventory
  std::string fingerprint;  // of the host state as this action left it
  Diagnostics diagnostics;  // any error means the action failed
};

class Provider {
 public:
  virtual ~Provider() = default;

  virtual std::string name() const = 0;
  virtual std::vector<std::string> kinds() const = 0;

  // Semantic checks the schema cannot express. Pure: no host I/O.
  virtual void validate(const ValidateRequest& req, ValidateResponse& resp) const = 0;

  // The objects `object` refers to. Pure. Also called on a ManagedRecord's spec for deletes.
  virtual std::vector<Reference> references(const Object& object) const = 0;

  // Observes every requested object in one batch (one dump per host facility, never one system
  // call per object). Called once per reconcile, before plan.
  virtual void observe(const ObserveRequest& req, ObserveResponse& resp) = 0;

  // The action needed for one object, or none. Pure given the request: Fields the host fills in
  // are normalised so that apply followed by plan is empty.
  virtual void plan(const PlanRequest& req, PlanResponse& resp) const = 0;

  // Idempotent: applying an action twice equals applying it once, and applying after a crash
  // mid-way converges. May be called concurrently for independent objects.
  virtual void apply(const ApplyRequest& req, ApplyResponse& resp) = 0;

  // A provider that learns of host changes by itself (a VM process exited) offers a file
  // descriptor that becomes readable then; hyperd polls it with its host events and observes.
  // -1: none. drainEvents() is called when it is readable; true when something changed.
  virtual int eventFd() const { return -1; }
  virtual bool drainEvents() { return false; }
};

}  // namespace hyper
