#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "controller/event_log.h"
#include "reconciler/engine.h"
#include "reconciler/inventory.h"
#include "tests/fakes/fake_provider.h"

namespace hyper::test {

// What the loop's and the API's unit tests stand on: a temporary state dir (removed with the
// world), a FakeProvider for `fakeKinds` behind a real engine (the built-in schemas plus one for
// FakeThing that takes any spec), and the SQLite inventory and event log in that dir.
class LoopWorld {
 public:
  static Result<std::unique_ptr<LoopWorld>> create(const std::string& tag,
                                                   const std::vector<std::string>& fakeKinds = {
                                                       "FakeThing"});
  ~LoopWorld();
  LoopWorld(const LoopWorld&) = delete;
  LoopWorld& operator=(const LoopWorld&) = delete;

  const std::string& dir() const { return dir_; }
  testing::FakeProvider& fake() { return *fake_; }
  Engine& engine() { return *engine_; }
  Inventory& inventory() { return *inventory_; }
  controller::EventLog& events() { return *events_; }

 private:
  LoopWorld() = default;
  std::string dir_;
  testing::FakeProvider* fake_ = nullptr;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Inventory> inventory_;
  std::unique_ptr<controller::EventLog> events_;
};

}  // namespace hyper::test
