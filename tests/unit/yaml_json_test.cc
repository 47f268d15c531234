// reconciler/yaml_json.h: what the one-pass, event-driven conversion does with aliases, which
// it plays again where they are used, and with mapping keys that are not strings. (The rest of
// its behaviour is covered through the loader: loader_test, loader_limits_test.)
#include "reconciler/yaml_json.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace hyper {
namespace {

struct Parsed {
  std::vector<YamlDocument> docs;
  Diagnostics diagnostics;
};

Parsed parse(const std::string& text, const YamlLimits& limits = YamlLimits{}) {
  Parsed out;
  out.docs = parseYamlDocuments(text, std::make_shared<const std::string>("t.yaml"),
                                out.diagnostics, limits);
  return out;
}

// An alias is its anchor written out again: same value, and the anchor's positions.
TEST(YamlJsonTest, AnAliasIsItsAnchorAgainWhereItIsUsed) {
  Parsed p = parse("base: &b {mtu: 1400, tags: [x, y]}\ncopy: *b\nkey: &k name\n*k : 7\n");
  ASSERT_EQ(p.docs.size(), 1u) << p.diagnostics.format();
  EXPECT_TRUE(p.diagnostics.empty()) << p.diagnostics.format();
  EXPECT_EQ(p.docs[0].value, Json::parse(R"({"base": {"mtu": 1400, "tags": ["x", "y"]},
                                             "copy": {"mtu": 1400, "tags": ["x", "y"]},
                                             "key": "name", "name": 7})"));
  // copy.mtu is where the anchor's mtu was written.
  EXPECT_EQ(p.docs[0].sourceMap.locate("copy.mtu").str(), "t.yaml:1:11");
  EXPECT_EQ(p.docs[0].sourceMap.locate("copy").str(), "t.yaml:2:1");
}

// A key that is not a string is an error and its entry is left out, the rest of the mapping
// kept. An alias used as such a key is one node, however large its anchor, and is not played:
// here the anchors of a "billion laughs" are defined inside a key (left out, so never played
// either), and the largest is then used as a key: 10^8 values if it were played.
TEST(YamlJsonTest, AKeyThatIsNotAStringLeavesOutItsEntryOnly) {
  std::string laughs = "? [&l0 [a, a, a, a, a, a, a, a, a, a]";
  for (int i = 1; i <= 8; ++i) {
    laughs += ", &l" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) {
      laughs += (j ? ", *l" : "*l") + std::to_string(i - 1);
    }
    laughs += "]";
  }
  laughs += "]\n: left out\n";
  Parsed p = parse(laughs + "c: 2\n? *l8\n: v\n? {x: 1}\n: 3\nd: 4\n");
  ASSERT_EQ(p.docs.size(), 1u) << p.diagnostics.format();
  EXPECT_EQ(p.docs[0].value, Json::parse(R"({"c": 2, "d": 4})"));
  EXPECT_TRUE(p.docs[0].hasErrors);
  EXPECT_EQ(p.diagnostics.size(), 3u) << p.diagnostics.format();
  EXPECT_NE(p.diagnostics.format().find("t.yaml:1:3: error: a mapping key is not a plain string"),
            std::string::npos)
      << p.diagnostics.format();
}

// A node that contains itself (an alias inside its own anchor) nests without end: maxDepth
// stops it and the document is dropped. Used as a key of itself, it is a key that is not a
// string.
TEST(YamlJsonTest, ANodeThatContainsItselfRunsIntoMaxDepth) {
  Parsed p = parse("a: &x [1, *x]\n");
  EXPECT_TRUE(p.docs.empty());
  EXPECT_NE(p.diagnostics.format().find("limit maxDepth exceeded"), std::string::npos)
      << p.diagnostics.format();
  p = parse("&a {k: 1, *a : 2}\n");
  ASSERT_EQ(p.docs.size(), 1u) << p.diagnostics.format();
  EXPECT_EQ(p.docs[0].value, Json::parse(R"({"k": 1})"));
  EXPECT_NE(p.diagnostics.format().find("a mapping key is not a plain string"), std::string::npos)
      << p.diagnostics.format();
}

}  // namespace
}  // namespace hyper
