#include "reconciler/provider_kit.h"

namespace hyper {

bool planPrune(const PlanRequest& req, PlanResponse& resp) {
  if (req.desired) {
    return false;
  }
  if (req.managed) {
    PlanAction action;
    action.type = ActionType::Delete;
    action.reason = std::string(kPruneReason);
    resp.action = std::move(action);
  }
  return true;
}

void mergeDrift(PlanAction& action, std::vector<FieldChange> specChanges,
                std::vector<FieldChange> drift) {
  action.drift = !drift.empty();
  action.changes = std::move(specChanges);
  const size_t specCount = action.changes.size();
  for (auto& d : drift) {
    bool merged = false;
    for (size_t i = 0; i < specCount; ++i) {
      if (action.changes[i].path == d.path) {
        action.changes[i].before = d.before;
        merged = true;
      }
    }
    if (!merged) {
      action.changes.push_back(std::move(d));
    }
  }
}

}  // namespace hyper
