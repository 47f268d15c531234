#include "tests/fakes/engine_harness.h"

#include "reconciler/schema.h"

namespace hyper::test {

EngineHarness::EngineHarness(std::vector<std::unique_ptr<Provider>> providers,
                             const std::string& stateDir) {
  auto schemas = SchemaRegistry::builtin();
  if (!schemas.isOk()) {
    error_ = schemas.status().message();
    return;
  }
  engine_ = std::make_unique<Engine>(std::move(providers), *schemas);
  auto inventory = Inventory::open(stateDir);
  if (!inventory.isOk()) {
    error_ = inventory.status().message();
    return;
  }
  inventory_ = std::move(*inventory);
}

std::string EngineHarness::converge(const std::vector<SourceFile>& files,
                                    const ApplyOptions& options) {
  RevisionResult loaded = engine_->load(files);
  if (!loaded.revision) {
    return "error: " + loaded.diagnostics.format();
  }
  auto managed = inventory_->list();
  if (!managed.isOk()) {
    return "error: " + managed.status().message();
  }
  PlanResult planned = engine_->plan(*loaded.revision, *managed, PlanOptions{true});
  if (planned.diagnostics.hasErrors()) {
    return "error: " + planned.diagnostics.format();
  }
  lastReport_ = engine_->apply(planned.plan, *loaded.revision, *managed, *inventory_, options);
  for (const auto& o : lastReport_.outcomes) {
    if (!o.status.isOk()) {
      return "error: " + o.status.message();
    }
  }
  return planned.plan.render();
}

}  // namespace hyper::test
