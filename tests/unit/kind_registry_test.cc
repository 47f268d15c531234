// reconciler/kind_registry: records checked at creation, type names, settings, providers made.

#include "reconciler/kind_registry.h"

#include <gtest/gtest.h>

#include "hyperd/config.h"
#include "hyperd/config_schema.h"
#include "providers/builtin.h"
#include "reconciler/loader.h"
#include "tests/fakes/fake_provider.h"

namespace hyper {
namespace {

std::string thingSchema(const std::string& kind) {
  return R"({"$schema": "http://json-schema.org/draft-07/schema#", "x-hyper-kind": ")" + kind +
         R"(", "type": "object", "additionalProperties": false,
            "properties": {"size": {"type": "integer", "description": "an integer"}}})";
}

ProviderRecord fakeRecord(std::string name, std::string kind, std::string plural,
                          std::vector<std::string> shortNames = {}) {
  KindRecord k;
  k.kind = kind;
  k.plural = std::move(plural);
  k.shortNames = std::move(shortNames);
  k.schema = thingSchema(kind);
  k.columns = {fieldColumn("SIZE", "size")};
  ProviderRecord p;
  p.name = name;
  p.kinds = {k};
  p.settingsSchema = R"({"type": "object", "additionalProperties": false,
      "properties": {"dir": {"type": "string", "description": "where things are"}}})";
  p.make = [name, kind](const Json&, const std::string&) -> Result<std::unique_ptr<Provider>> {
    return std::unique_ptr<Provider>(
        std::make_unique<testing::FakeProvider>(name, std::vector<std::string>{kind}));
  };
  return p;
}

TEST(KindRegistryTest, FindsAKindByItsNamePluralAndShortNamesInAnyCase) {
  auto r = KindRegistry::create(
      {fakeRecord("a", "Thing", "things", {"th"}), fakeRecord("b", "OtherThing", "otherthings")});
  ASSERT_TRUE(r.isOk()) << r.status().message();
  for (const char* name : {"Thing", "thing", "THINGS", "th"}) {
    const KindRecord* k = (*r)->find(name);
    ASSERT_NE(k, nullptr) << name;
    EXPECT_EQ(k->kind, "Thing") << name;
  }
  EXPECT_EQ((*r)->find("otherthings")->kind, "OtherThing");
  EXPECT_EQ((*r)->find("thin"), nullptr);
  EXPECT_EQ((*r)->pluralsText(), "things or otherthings");
  EXPECT_TRUE((*r)->schemas()->knowsKind("Thing"));
  EXPECT_TRUE((*r)->schemas()->knowsKind("OtherThing"));
}

TEST(KindRegistryTest, RefusesNamesTwoKindsShare) {
  auto dupKind = KindRegistry::create(
      {fakeRecord("a", "Thing", "things"), fakeRecord("b", "Thing", "thingies")});
  ASSERT_FALSE(dupKind.isOk());
  EXPECT_NE(dupKind.status().message().find("\"thing\" is already another kind's"),
            std::string::npos)
      << dupKind.status().message();
  auto dupShort = KindRegistry::create(
      {fakeRecord("a", "Thing", "things", {"x"}), fakeRecord("b", "Other", "others", {"X"})});
  ASSERT_FALSE(dupShort.isOk());
  auto dupProvider = KindRegistry::create(
      {fakeRecord("a", "Thing", "things"), fakeRecord("a", "Other", "others")});
  ASSERT_FALSE(dupProvider.isOk());
  EXPECT_NE(dupProvider.status().message().find("registered twice"), std::string::npos);
}

TEST(KindRegistryTest, RefusesASchemaOfAnotherKindAndSettingsThatAreNotStrings) {
  ProviderRecord wrong = fakeRecord("a", "Thing", "things");
  wrong.kinds[0].schema = thingSchema("Gadget");
  auto r = KindRegistry::create({wrong});
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("names another kind"), std::string::npos)
      << r.status().message();

  ProviderRecord flags = fakeRecord("a", "Thing", "things");
  flags.settingsSchema = R"({"type": "object", "properties": {"n": {"type": "integer"}}})";
  auto s = KindRegistry::create({flags});
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.status().message().find("property n is not of type string"), std::string::npos)
      << s.status().message();
}

TEST(KindRegistryTest, SettingsBecomeFlagsAndAConfigSchema) {
  auto r = KindRegistry::create({fakeRecord("a", "Thing", "things")});
  ASSERT_TRUE(r.isOk());
  auto settings = (*r)->settings();
  ASSERT_EQ(settings.size(), 1u);
  EXPECT_EQ(settings[0].flag(), "--a-dir");
  EXPECT_EQ(settings[0].description, "where things are");
  Json schema = (*r)->settingsSchema();
  EXPECT_EQ(schema["additionalProperties"], false);
  EXPECT_TRUE(schema["properties"].contains("a"));
}

TEST(KindRegistryTest, MakesProvidersAndChecksTheirKindsAgainstTheRecord) {
  auto r = KindRegistry::create({fakeRecord("a", "Thing", "things")});
  ASSERT_TRUE(r.isOk());
  auto made = (*r)->makeProviders(Json::object());
  ASSERT_TRUE(made.isOk()) << made.status().message();
  ASSERT_EQ(made->size(), 1u);
  EXPECT_EQ((*made)[0]->kinds(), std::vector<std::string>{"Thing"});

  ProviderRecord liar = fakeRecord("a", "Thing", "things");
  liar.make = [](const Json&, const std::string&) -> Result<std::unique_ptr<Provider>> {
    return std::unique_ptr<Provider>(
        std::make_unique<testing::FakeProvider>("a", std::vector<std::string>{"Gadget"}));
  };
  auto lying = KindRegistry::create({liar});
  ASSERT_TRUE(lying.isOk());
  auto refused = (*lying)->makeProviders(Json::object());
  ASSERT_FALSE(refused.isOk());
  EXPECT_NE(refused.status().message().find("differ from the kinds of its registration"),
            std::string::npos);
}

TEST(KindRegistryTest, GetRowFieldsComeFromSpecThenHandlesThenObserved) {
  ManagedRecord rec;
  rec.handles = {{"ip", "10.0.0.2"}};
  ObservedState obs;
  obs.fields = {{"running", true}, {"ip", "ignored"}};
  GetRow row{&rec, &obs, Json{{"cidr", "10.0.0.0/24"}, {"mtu", 1500}}};
  EXPECT_EQ(row.field("cidr"), "10.0.0.0/24");
  EXPECT_EQ(row.field("mtu"), "1500");
  EXPECT_EQ(row.field("ip"), "10.0.0.2");
  EXPECT_EQ(row.field("running"), "true");
  EXPECT_EQ(row.field("none"), "-");
  EXPECT_EQ(row.observedField("running"), "true");
  GetRow unobserved{&rec, nullptr, Json::object()};
  EXPECT_EQ(unobserved.observedField("running"), "-");
}

TEST(KindRegistryTest, TheBuiltinRecordsMatchTheirProviders) {
  auto r = providers::builtinKinds();
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ((*r)->pluralsText(), "networks, networkpolicies, vms, brokerrules, builds or secrets");
  EXPECT_EQ((*r)->find("netpol")->kind, "NetworkPolicy");
  EXPECT_EQ((*r)->find("vm")->kind, "VM");
  auto made = (*r)->makeProviders(Json::object());
  ASSERT_TRUE(made.isOk()) << made.status().message();
  EXPECT_EQ(made->size(), 5u);
}

TEST(KindRegistryTest, HyperdConfigChecksProviderSettingsWithTheRecordsSchemas) {
  const std::string head = "schemaVersion: \"1\"\nsource:\n  url: /srv/src\n";
  auto ok = controller::parseConfig(head + "providers:\n  broker:\n    rules: /r.json\n", "c.yaml");
  ASSERT_TRUE(ok.isOk()) << ok.status().message();
  EXPECT_EQ(ok->providers["broker"]["rules"], "/r.json");
  auto unknownProvider =
      controller::parseConfig(head + "providers:\n  gadget:\n    x: y\n", "c.yaml");
  ASSERT_FALSE(unknownProvider.isOk());
  EXPECT_NE(unknownProvider.status().message().find("c.yaml:5:3"), std::string::npos)
      << unknownProvider.status().message();
  auto badSetting =
      controller::parseConfig(head + "providers:\n  broker:\n    rulez: /r.json\n", "c.yaml");
  ASSERT_FALSE(badSetting.isOk());
  EXPECT_NE(badSetting.status().message().find("providers.broker"), std::string::npos)
      << badSetting.status().message();
}

// spec.driftPolicy is the envelope's: checked once for every kind, taken out of spec.
TEST(KindRegistryTest, DriftPolicyIsTheEnvelopesAndNeverReachesTheKind) {
  auto r = KindRegistry::create({fakeRecord("a", "Thing", "things")});
  ASSERT_TRUE(r.isOk());
  ManifestLoader loader((*r)->schemas());
  const std::string doc =
      "apiVersion: hyper.dev/v1alpha1\nkind: Thing\nmetadata: {name: t}\nspec:\n"
      "  size: 3\n  driftPolicy: alert\n";
  LoadResult loaded = loader.load({{"t.yaml", doc}});
  ASSERT_FALSE(loaded.diagnostics.hasErrors()) << loaded.diagnostics.format();
  ASSERT_EQ(loaded.objects.size(), 1u);
  EXPECT_EQ(loaded.objects[0]->driftPolicy, DriftPolicy::Alert);
  EXPECT_FALSE(loaded.objects[0]->spec->contains("driftPolicy"));
  EXPECT_EQ(loaded.objects[0]->spec["size"], 3);

  LoadResult bad = loader.load({{"t.yaml", doc.substr(0, doc.size() - 6) + "never\n"}});
  ASSERT_TRUE(bad.diagnostics.hasErrors());
  EXPECT_NE(bad.diagnostics.format().find("t.yaml:6:3"), std::string::npos)
      << bad.diagnostics.format();
  EXPECT_NE(bad.diagnostics.format().find("spec.driftPolicy"), std::string::npos)
      << bad.diagnostics.format();
}

}  // namespace
}  // namespace hyper
