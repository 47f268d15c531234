#include "netmodel/placement.h"

#include <gtest/gtest.h>

namespace hyper::netmodel {
namespace {

std::shared_ptr<const Object> object(const std::string& kind, const std::string& name,
                                     const char* spec,
                                     std::map<std::string, std::string> labels = {}) {
  auto o = std::make_shared<Object>();
  o->id = {kind, name};
  o->spec = Json::parse(spec);
  o->labels = std::move(labels);
  return o;
}

// Two networks; VMs with near-miss labels and networks around the one a policy selects.
std::vector<std::shared_ptr<const Object>> revision() {
  return {
      object("Network", "lab", R"({"cidr": "10.77.0.0/24"})"),
      object("Network", "dmz", R"({"cidr": "10.78.0.0/24"})"),
      object("VM", "web-1", R"({"network": {"name": "lab", "ip": "10.77.0.10"}})",
             {{"role", "web"}, {"tier", "front"}}),
      object("VM", "web-2", R"({"network": {"name": "lab", "mac": "52:54:00:aa:bb:cc"}})",
             {{"role", "web"}}),
      object("VM", "webx", R"({"network": {"name": "lab"}})", {{"role", "webx"}}),
      object("VM", "db", R"({"network": {"name": "lab"}})", {{"role", "db"}}),
      object("VM", "web-dmz", R"({"network": {"name": "dmz"}})", {{"role", "web"}}),
      object("VM", "web-off", R"({})", {{"role", "web"}}),
  };
}

TEST(PlacementTest, EachVmGetsItsTapAndMac) {
  auto placed = placeRevisionVms(revision(), nullptr);
  ASSERT_EQ(placed.count("web-1"), 1u);
  EXPECT_EQ(placed["web-1"].tap, "hv-web-1");
  EXPECT_EQ(placed["web-1"].mac, vmDefaultMac("web-1"));
  EXPECT_EQ(placed["web-1"].ipString(), "10.77.0.10");
  // A MAC written in the manifest is the one the tap carries, not the derived one.
  EXPECT_EQ(placed["web-2"].mac, "52:54:00:aa:bb:cc");
  EXPECT_NE(vmDefaultMac("web-1"), vmDefaultMac("web-2"));
  EXPECT_EQ(placed["web-dmz"].network, "dmz");
  EXPECT_EQ(placed.count("web-off"), 0u) << "a VM without a network has no tap";
  // A long name still gives an interface name (IFNAMSIZ), the same each time.
  std::string longName(63, 'a');
  EXPECT_LE(vmTapName(longName).size(), 15u);
  EXPECT_EQ(vmTapName(longName), vmTapName(longName));
}

// A placement travels as JSON from observe to plan to apply: it comes back as it went, and
// anything apply could be misled by (a missing field, an address or prefix that is not one) is
// refused rather than booted with.
TEST(PlacementTest, JsonRoundTripsAndRefusesWhatItDidNotWrite) {
  auto placed = placeRevisionVms(revision(), nullptr);
  ASSERT_EQ(placed.count("web-2"), 1u);
  const Placement& p = placed["web-2"];
  Json json = p.toJson();
  EXPECT_EQ(json["ip"], p.ipString());
  EXPECT_EQ(json["gateway"], "10.77.0.1");
  auto back = Placement::fromJson(json);
  ASSERT_TRUE(back.isOk()) << back.status().message();
  EXPECT_EQ(*back, p);
  EXPECT_EQ(back->cmdlineArgs(), p.cmdlineArgs());

  for (const char* key : {"network", "ip", "prefix", "gateway", "bridge", "tap", "mac"}) {
    Json missing = json;
    missing.erase(key);
    EXPECT_FALSE(Placement::fromJson(missing).isOk()) << "without " << key;
  }
  Json badIp = json;
  badIp["ip"] = "10.77.0.300";
  EXPECT_FALSE(Placement::fromJson(badIp).isOk());
  Json badPrefix = json;
  badPrefix["prefix"] = 33;
  EXPECT_FALSE(Placement::fromJson(badPrefix).isOk());
  EXPECT_FALSE(Placement::fromJson(Json()).isOk());
}

struct SelectCase {
  std::string name;
  const char* policy;
  std::vector<std::string> expected;
};

class SelectVmsTest : public ::testing::TestWithParam<SelectCase> {};

TEST_P(SelectVmsTest, SelectsExactlyTheMatchingVmsOfItsNetwork) {
  auto rev = revision();
  auto policy = parsePolicySpec("p", Json::parse(GetParam().policy));
  ASSERT_TRUE(policy.isOk()) << policy.status().message();
  EXPECT_EQ(selectVms(*policy, rev, placeRevisionVms(rev, nullptr)), GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SelectVmsTest,
    ::testing::Values(
        // webx (role: webx) and web-dmz (other network) are the near misses.
        SelectCase{"OneLabel",
                   R"({"network": "lab", "selector": {"matchLabels": {"role": "web"}}})",
                   {"web-1", "web-2"}},
        SelectCase{"EveryLabelMustMatch",
                   R"({"network": "lab", "selector": {"matchLabels": {"role": "web",
                       "tier": "front"}}})",
                   {"web-1"}},
        SelectCase{"OtherNetwork",
                   R"({"network": "dmz", "selector": {"matchLabels":
                       {"role": "web"}}})",
                   {"web-dmz"}},
        SelectCase{
            "NoMatch", R"({"network": "lab", "selector": {"matchLabels": {"role": "we"}}})", {}},
        SelectCase{"NoSelector", R"({"network": "lab"})", {}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace hyper::netmodel
