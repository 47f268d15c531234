// SourceMap: documents of one layout share their paths and positions, each keeping its lines.

#include <gtest/gtest.h>

#include "reconciler/object.h"
#include "reconciler/yaml_json.h"

namespace hyper {
namespace {

std::vector<YamlDocument> parse(const std::string& text) {
  Diagnostics diags;
  auto docs = parseYamlDocuments(text, std::make_shared<const std::string>("m.yaml"), diags);
  EXPECT_FALSE(diags.hasErrors()) << diags.format();
  return docs;
}

TEST(SourceMapTest, DocumentsOfOneLayoutShareAShapeAndKeepTheirLines) {
  auto docs = parse(
      "kind: Network\nspec:\n  cidr: 10.0.1.0/24\n  mtu: 1500\n"
      "---\nkind: Network\nspec:\n  cidr: 10.0.2.0/24\n  mtu: 9000\n"
      "---\nkind: Network\nspec:\n  mtu: 1500\n  cidr: 10.0.3.0/24\n"
      "---\nkind: Network\nspec: {cidr: 10.0.4.0/24, mtu: 1500}\n");
  ASSERT_EQ(docs.size(), 4u);
  // Same keys at the same columns on the same lines from the start: one shape.
  EXPECT_TRUE(docs[0].sourceMap.sharesShapeWith(docs[1].sourceMap));
  EXPECT_EQ(docs[0].sourceMap.locate("spec.cidr").str(), "m.yaml:3:3");
  EXPECT_EQ(docs[1].sourceMap.locate("spec.cidr").str(), "m.yaml:8:3");
  EXPECT_EQ(docs[1].sourceMap.locate("spec.mtu").str(), "m.yaml:9:3");
  EXPECT_EQ(docs[1].sourceMap.locate("spec.nat").str(), "m.yaml:7:1") << "its nearest ancestor";
  // Other order, other layout: shapes of their own, and still their own lines.
  EXPECT_FALSE(docs[2].sourceMap.sharesShapeWith(docs[0].sourceMap));
  EXPECT_EQ(docs[2].sourceMap.locate("spec.cidr").str(), "m.yaml:14:3");
  EXPECT_FALSE(docs[3].sourceMap.sharesShapeWith(docs[0].sourceMap));
  EXPECT_EQ(docs[3].sourceMap.locate("spec.mtu").str(), "m.yaml:17:27");
}

TEST(SourceMapTest, AddingToASharedShapeLeavesTheOtherMapAlone) {
  auto docs = parse("a: 1\nb: 2\n---\na: 1\nb: 3\n");
  ASSERT_EQ(docs.size(), 2u);
  ASSERT_TRUE(docs[0].sourceMap.sharesShapeWith(docs[1].sourceMap));
  SourceMap grown = docs[1].sourceMap;
  grown.add("c", 6, 1);
  EXPECT_FALSE(grown.sharesShapeWith(docs[0].sourceMap));
  EXPECT_EQ(grown.locate("c").str(), "m.yaml:6:1");
  EXPECT_EQ(grown.locate("b").str(), "m.yaml:5:1");
  EXPECT_EQ(docs[0].sourceMap.locate("c").line, 0) << "not written there";
  EXPECT_EQ(docs[1].sourceMap.locate("c").line, 0);
}

TEST(SourceMapTest, AnEmptyMapLocatesNothing) {
  SourceMap map(std::make_shared<const std::string>("x.yaml"));
  EXPECT_EQ(map.locate("spec").str(), "x.yaml");
  map.seal();
  EXPECT_EQ(map.locate("").line, 0);
}

}  // namespace
}  // namespace hyper
