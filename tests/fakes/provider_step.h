#pragma once

#include <optional>

#include "reconciler/provider.h"

namespace hyper::test {

// What one provider said of one object taken the way the engine takes it: validated (optional),
// observed, planned and, when there is an action and `apply`, applied.
struct ProviderStep {
  ObservedState observed;
  std::optional<PlanAction> action;
  ApplyResponse applied;
  Diagnostics diagnostics;
};

struct StepOptions {
  bool validate = true;
  bool apply = true;
  const KeptKeys* keptKeys = nullptr;  // ObserveRequest::keptKeys
};

inline ProviderStep reconcileOne(Provider& p, const Object& o, const ManagedRecord* record,
                                 const StepOptions& options = {}) {
  ProviderStep out;
  if (options.validate) {
    ValidateRequest vreq;
    vreq.objects = {&o};
    ValidateResponse vresp;
    p.validate(vreq, vresp);
    out.diagnostics.append(vresp.diagnostics);
  }
  ObserveRequest oreq;
  oreq.desired = {&o};
  oreq.keptKeys = options.keptKeys;
  if (record) {
    oreq.managed = {record};
  }
  ObserveResponse oresp;
  p.observe(oreq, oresp);
  out.diagnostics.append(oresp.diagnostics);
  out.observed = oresp.observed[o.id];
  PlanRequest preq{o.id, &o, &out.observed, record};
  PlanResponse presp;
  p.plan(preq, presp);
  out.diagnostics.append(presp.diagnostics);
  out.action = presp.action;
  if (options.apply && out.action) {
    ApplyRequest areq;
    areq.action = &*out.action;
    areq.desired = &o;
    areq.managed = record;
    p.apply(areq, out.applied);
    out.diagnostics.append(out.applied.diagnostics);
  }
  return out;
}

// The inventory record an apply of `o` leaves.
inline ManagedRecord recordOf(const Object& o, const ApplyResponse& r) {
  ManagedRecord rec;
  rec.id = o.id;
  rec.spec = o.spec;
  rec.handles = r.handles;
  rec.fingerprint = r.fingerprint;
  return rec;
}

}  // namespace hyper::test
