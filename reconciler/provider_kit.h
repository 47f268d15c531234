#pragma once

#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "reconciler/provider.h"

namespace hyper {

// The plan skeleton every provider shares, so that the rules it encodes are written once:
// nothing throws across the provider boundary, an object gone from the source is deleted only if
// hyper manages it, and host drift is shown against the spec change it meets.

// Runs `body`; a library exception (nlohmann on a reply of unexpected shape, std::bad_alloc)
// becomes an error diagnostic on `object` ("plan <- what()").
template <typename Body>
void guarded(Diagnostics& diagnostics, const ObjectId& object, std::string_view what, Body&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    diagnostics.error(object, "", std::string(what) + " <- " + e.what());
  }
}

inline constexpr std::string_view kPruneReason = "not in the source any more (prune)";

// For a request without a desired object (a prune candidate): a Delete when hyper manages the
// object, nothing otherwise. Returns true when `req` was such a request: plan() is done with it,
// and a provider may refine the Delete in resp.action (its reason, its disruption).
bool planPrune(const PlanRequest& req, PlanResponse& resp);

// Sets `action.changes` to the spec changes plus the host drift: where both touch one path, the
// spec change stays with the host's value as its "before" (what the host has now); other drift
// changes follow. Marks the action as drift when there is any.
void mergeDrift(PlanAction& action, std::vector<FieldChange> specChanges,
                std::vector<FieldChange> drift);

}  // namespace hyper
