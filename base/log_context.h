#pragma once

#include <string>

namespace hyper {

// The reconcile id of the work the calling thread is doing, so that every log line written on its
// behalf — by the loop, the engine, a provider, an executor worker — carries it (hyperd's log
// pattern prints it). Empty outside a reconcile. Worker threads started for a reconcile take the
// starting thread's id (Executor does).
const std::string& currentReconcileId();

// Sets the calling thread's reconcile id for its lifetime and restores the previous one after.
class ReconcileIdScope {
 public:
  explicit ReconcileIdScope(std::string id);
  ~ReconcileIdScope();
  ReconcileIdScope(const ReconcileIdScope&) = delete;
  ReconcileIdScope& operator=(const ReconcileIdScope&) = delete;

 private:
  std::string previous_;
};

}  // namespace hyper
