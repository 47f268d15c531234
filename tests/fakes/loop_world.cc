#include "tests/fakes/loop_world.h"

#include <stdlib.h>

#include <filesystem>

#include "reconciler/schema.h"

namespace hyper::test {

Result<std::unique_ptr<LoopWorld>> LoopWorld::create(const std::string& tag,
                                                     const std::vector<std::string>& fakeKinds) {
  std::unique_ptr<LoopWorld> world(new LoopWorld());
  std::string tmpl = "/tmp/hyper-" + tag + ".XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Status::error("mkdtemp " + tmpl + " failed");
  }
  world->dir_ = tmpl;
  auto schemas = embeddedSchemas();
  schemas.push_back({"fake.schema.json", R"({"x-hyper-kind":"FakeThing","type":"object"})"});
  HYPER_ASSIGN_OR_RETURN(auto registry, SchemaRegistry::fromSchemas(schemas));
  auto provider = std::make_unique<testing::FakeProvider>("fake", fakeKinds);
  world->fake_ = provider.get();
  std::vector<std::unique_ptr<Provider>> providers;
  providers.push_back(std::move(provider));
  world->engine_ = std::make_unique<Engine>(std::move(providers), registry);
  HYPER_ASSIGN_OR_RETURN(world->inventory_, Inventory::open(world->dir_));
  HYPER_ASSIGN_OR_RETURN(world->events_, controller::EventLog::open(world->dir_));
  return world;
}

LoopWorld::~LoopWorld() {
  events_.reset();
  inventory_.reset();
  engine_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace hyper::test
