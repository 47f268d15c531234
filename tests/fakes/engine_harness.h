#pragma once

#include <memory>
#include <string>
#include <vector>

#include "reconciler/engine.h"
#include "reconciler/inventory.h"

namespace hyper::test {

// A real engine over the given providers and the built-in schemas, with a real SQLite inventory
// in a state dir of the caller's: what provider tests that go through the engine share.
class EngineHarness {
 public:
  // The error, when the schemas or the inventory do not open, is in `error()`.
  EngineHarness(std::vector<std::unique_ptr<Provider>> providers, const std::string& stateDir);

  const std::string& error() const { return error_; }
  Engine& engine() { return *engine_; }
  Inventory& inventory() { return *inventory_; }

  // Loads, plans with prune and applies. The rendered plan ("No changes..." when in sync), or
  // "error: " and the first diagnostic or failed action. The report is kept in lastReport().
  std::string converge(const std::vector<SourceFile>& files,
                       const ApplyOptions& options = ApplyOptions{});
  const ApplyReport& lastReport() const { return lastReport_; }

 private:
  std::string error_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Inventory> inventory_;
  ApplyReport lastReport_;
};

}  // namespace hyper::test
