#include "base/log_context.h"

#include <utility>

namespace hyper {
namespace {
thread_local std::string t_reconcileId;
}  // namespace

const std::string& currentReconcileId() { return t_reconcileId; }

ReconcileIdScope::ReconcileIdScope(std::string id) : previous_(std::move(t_reconcileId)) {
  t_reconcileId = std::move(id);
}

ReconcileIdScope::~ReconcileIdScope() { t_reconcileId = std::move(previous_); }

}  // namespace hyper
