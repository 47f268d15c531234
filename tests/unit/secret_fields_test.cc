// Secret fields of a kind (KindRecord::secretFields): parsing, redaction of plan changes and
// specs (reconciler/secret_fields.h), and the engine applying it to every planned change.

#include "reconciler/secret_fields.h"

#include <gtest/gtest.h>

#include "reconciler/engine.h"
#include "reconciler/kind_registry.h"
#include "tests/fakes/fake_provider.h"

namespace hyper {
namespace {

using testing::FakeProvider;

SecretFields parsed(const std::vector<std::string>& paths) {
  auto s = SecretFields::parse(paths);
  EXPECT_TRUE(s.isOk()) << s.status().message();
  return s.isOk() ? *s : SecretFields();
}

TEST(SecretFields, RejectsWhatIsNotAFieldPath) {
  for (const char* bad :
       {"", ".token", "token.", "a..b", "env[", "env[]", "env[x]", "a b", "env[*]x", "[0]"}) {
    auto s = SecretFields::parse({bad});
    EXPECT_FALSE(s.isOk()) << bad;
    if (!s.isOk()) {
      EXPECT_NE(s.status().message().find(std::string("\"") + bad + "\""), std::string::npos)
          << s.status().message();
    }
  }
  EXPECT_TRUE(SecretFields::parse({"token", "env[*].value", "keys[2]", "a_b.c-d"}).isOk());
}

TEST(SecretFields, AChangeAtOrUnderASecretLosesItsValues) {
  SecretFields s = parsed({"token", "auth"});
  FieldChange at{"spec.token", "old-secret", "new-secret"};
  s.redact(at);
  EXPECT_TRUE(at.sensitive);
  EXPECT_TRUE(at.before.is_null());
  EXPECT_TRUE(at.after.is_null());

  FieldChange under{"spec.auth.password", "p1", "p2"};
  s.redact(under);
  EXPECT_TRUE(under.sensitive);
  EXPECT_TRUE(under.after.is_null());

  FieldChange other{"spec.tokens", 1, 2};  // a name that only starts like a secret's
  s.redact(other);
  EXPECT_FALSE(other.sensitive);
  EXPECT_EQ(other.after, 2);
}

TEST(SecretFields, AChangeAboveASecretKeepsEverythingButTheSecret) {
  SecretFields s = parsed({"env[*].value"});
  Json before = Json::parse(R"([{"name":"A","value":"s1"},{"name":"B","value":"s2"}])");
  Json after = Json::parse(R"([{"name":"A","value":"s1"},{"name":"C","value":"s3"}])");
  FieldChange c{"spec.env", before, after};
  s.redact(c);
  EXPECT_FALSE(c.sensitive) << "the names differ: that much can be shown";
  EXPECT_EQ(c.after[1]["name"], "C");
  EXPECT_EQ(c.after[1]["value"], SecretFields::kRedacted);
  EXPECT_EQ(c.before[0]["value"], SecretFields::kRedacted);
  EXPECT_EQ(c.after.dump().find("s3"), std::string::npos) << c.after.dump();

  // Only a value differs: redacted, both sides would look the same; the change says only that
  // something secret changed.
  FieldChange onlySecret{"spec.env", Json::parse(R"([{"name":"A","value":"s1"}])"),
                         Json::parse(R"([{"name":"A","value":"s9"}])")};
  s.redact(onlySecret);
  EXPECT_TRUE(onlySecret.sensitive);
  EXPECT_TRUE(onlySecret.before.is_null());
  EXPECT_TRUE(onlySecret.after.is_null());

  // A create's whole spec, and a concrete index.
  SecretFields indexed = parsed({"keys[1]"});
  FieldChange create{"spec", Json(), Json::parse(R"({"keys":["public","private"],"n":1})")};
  indexed.redact(create);
  EXPECT_FALSE(create.sensitive);
  EXPECT_EQ(create.after["keys"][0], "public");
  EXPECT_EQ(create.after["keys"][1], SecretFields::kRedacted);
  EXPECT_EQ(create.after["n"], 1);
}

TEST(SecretFields, ASensitiveChangeFromTheProviderIsEmptiedToo) {
  FieldChange c{"spec.x", "a", "b", false, /*sensitive=*/true};
  parsed({"token"}).redact(c);
  EXPECT_TRUE(c.before.is_null());
  EXPECT_TRUE(c.after.is_null());
}

TEST(SecretFields, RedactSpecHidesEverySecretAndNothingElse) {
  SecretFields s = parsed({"token", "env[*].value"});
  Json spec = Json::parse(R"({"token":"t","env":[{"name":"A","value":"v"},{"name":"B"}],"n":2})");
  Json out = s.redactSpec(spec);
  EXPECT_EQ(out["token"], SecretFields::kRedacted);
  EXPECT_EQ(out["env"][0]["value"], SecretFields::kRedacted);
  EXPECT_FALSE(out["env"][1].contains("value")) << "absent stays absent";
  EXPECT_EQ(out["n"], 2);
  EXPECT_EQ(spec["token"], "t") << "the input is left alone";
}

// The engine passes every planned change through the kind's secret fields, whatever the provider
// put in it: the plan's JSON, text and hash never see the value.
class EngineSecretFieldsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KindRecord thing;
    thing.kind = "FakeThing";
    thing.plural = "fakethings";
    thing.schema = R"({"x-hyper-kind":"FakeThing","type":"object"})";
    thing.secretFields = {"token"};
    ProviderRecord record;
    record.name = "fake";
    record.kinds = {thing};
    record.make = [](const Json&, const std::string&) -> Result<std::unique_ptr<Provider>> {
      return std::unique_ptr<Provider>(std::make_unique<FakeProvider>());
    };
    auto kinds = KindRegistry::create({record});
    ASSERT_TRUE(kinds.isOk()) << kinds.status().message();
    kinds_ = *kinds;
    auto made = kinds_->makeProviders(Json::object());
    ASSERT_TRUE(made.isOk()) << made.status().message();
    fake_ = dynamic_cast<FakeProvider*>((*made)[0].get());
    engine_ = std::make_unique<Engine>(std::move(*made), *kinds_);
  }

  Plan planOf(const std::string& token, const std::vector<ManagedRecord>& managed = {}) {
    std::string yaml =
        "apiVersion: hyper.dev/v1alpha1\nkind: FakeThing\nmetadata: {name: a}\n"
        "spec:\n  size: 1\n  token: " +
        token + "\n";
    RevisionResult r = engine_->load({{"a.yaml", yaml}});
    EXPECT_NE(r.revision, nullptr) << r.diagnostics.format();
    if (!r.revision) {
      return {};
    }
    PlanResult p = engine_->plan(*r.revision, managed, PlanOptions{});
    EXPECT_FALSE(p.diagnostics.hasErrors()) << p.diagnostics.format();
    return p.plan;
  }

  std::shared_ptr<const KindRegistry> kinds_;
  FakeProvider* fake_ = nullptr;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineSecretFieldsTest, NoPlanHoldsTheValue) {
  Plan create = planOf("hunter2-create");
  ASSERT_EQ(create.actions.size(), 1u);
  std::string all = create.toJson().dump() + create.render();
  EXPECT_EQ(all.find("hunter2"), std::string::npos) << all;
  EXPECT_NE(all.find("spec.size: 1"), std::string::npos) << "the rest is shown: " << all;

  // On the host with the old token: the update says the token changed, and nothing more.
  fake_->setHostState({"FakeThing", "a"}, Json::parse(R"({"size":1,"token":"hunter2-old"})"));
  Plan update = planOf("hunter2-new");
  ASSERT_EQ(update.actions.size(), 1u);
  ASSERT_EQ(update.actions[0].changes.size(), 1u);
  const FieldChange& c = update.actions[0].changes[0];
  EXPECT_EQ(c.path, "spec.token");
  EXPECT_TRUE(c.sensitive);
  std::string text = update.toJson().dump() + update.render();
  EXPECT_EQ(text.find("hunter2"), std::string::npos) << text;
  EXPECT_NE(text.find("(sensitive value)"), std::string::npos) << text;
  // Nor can the hash tell two secret values apart (the revision, a digest of the files, aside).
  Plan other = planOf("hunter2-other");
  other.revision = update.revision;
  EXPECT_EQ(update.hash(), other.hash());
}

}  // namespace
}  // namespace hyper
