// Hostile and mistaken manifests: every limit of LoaderLimits / YamlLimits is an ordinary error
// with a location and the limit's name, one step past the limit, and nothing at the limit.

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <stdlib.h>

#include <gtest/gtest.h>

#include "hyperd/config_schema.h"
#include "reconciler/loader.h"
#include "reconciler/schema.h"
#include "reconciler/yaml_json.h"

namespace hyper {
namespace {

std::shared_ptr<const SchemaRegistry> schemas() {
  auto r = SchemaRegistry::builtin();
  EXPECT_TRUE(r.isOk()) << r.status().message();
  return *r;
}

std::string network(const std::string& name, const std::string& extraMetadata = "",
                    const std::string& extraSpec = "") {
  return "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: " + name + "\n" +
         extraMetadata + "spec:\n  cidr: 10.77.0.0/24\n" + extraSpec;
}

// `levels` nested anchors, each a list of `width` uses of the one before: width^levels values.
std::string aliasBomb(int levels, int width) {
  std::string out = "a0: &a0 \"x\"\n";
  for (int i = 1; i < levels; ++i) {
    out += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < width; ++j) {
      out += (j ? ", *a" : "*a") + std::to_string(i - 1);
    }
    out += "]\n";
  }
  return out;
}

std::string nested(int depth) {
  std::string out;
  for (int i = 0; i < depth; ++i) {
    out += "[";
  }
  for (int i = 0; i < depth; ++i) {
    out += "]";
  }
  return out;
}

struct LimitCase {
  std::string name;
  std::function<LoaderLimits()> limits;
  std::function<std::vector<SourceFile>()> files;
  std::string error;  // a substring of one error's formatted text; empty: no error expected
};

class LoaderLimitTest : public ::testing::TestWithParam<LimitCase> {};

TEST_P(LoaderLimitTest, RefusesPastTheLimitAndNotAtIt) {
  const auto& c = GetParam();
  ManifestLoader loader(schemas(), c.limits());
  LoadResult r = loader.load(c.files());
  std::string text = r.diagnostics.format();
  if (c.error.empty()) {
    EXPECT_FALSE(r.diagnostics.hasErrors()) << text;
    EXPECT_FALSE(r.objects.empty());
  } else {
    EXPECT_NE(text.find(c.error), std::string::npos) << "expected ~ " << c.error << ", got:\n"
                                                     << text;
    EXPECT_TRUE(r.diagnostics.hasErrors());
  }
}

LoaderLimits defaults() { return LoaderLimits{}; }

LoaderLimits with(const std::function<void(LoaderLimits&)>& set) {
  LoaderLimits l;
  set(l);
  return l;
}

std::vector<SourceFile> filesOf(size_t n, size_t docsEach = 1) {
  std::vector<SourceFile> out;
  for (size_t i = 0; i < n; ++i) {
    std::string text;
    for (size_t d = 0; d < docsEach; ++d) {
      text += "---\n" + network("n" + std::to_string(i) + "-" + std::to_string(d));
    }
    out.push_back({"m/f" + std::to_string(i) + ".yaml", text});
  }
  return out;
}

std::string errorsFile(int duplicates) {
  std::string text = network("lab");
  for (int i = 0; i < duplicates; ++i) {
    text += "  mtu: 1500\n";
  }
  return text;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LoaderLimitTest,
    ::testing::Values(
        // The crash of issue 11: a 200000-character label key ran std::regex into the stack.
        LimitCase{"HugeLabelKeyIsAnErrorNotACrash", defaults,
                  [] {
                    return std::vector<SourceFile>{
                        {"m/a.yaml",
                         // An explicit key: yaml-cpp refuses an implicit one over 1024 characters.
                         network("lab",
                                 "  labels:\n    ? " + std::string(200000, 'k') + "\n    : v\n")}};
                  },
                  "...: invalid key \"kkkkk"},
        LimitCase{"HugePatternedValueIsAnErrorNotACrash", defaults,
                  [] {
                    return std::vector<SourceFile>{
                        {"m/a.yaml", network("lab", "", "  bridge: " + std::string(200000, 'b'))}};
                  },
                  "spec.bridge: invalid value \"bbbb"},
        LimitCase{"StringAtTheLimit",
                  [] { return with([](LoaderLimits& l) { l.yaml.maxStringBytes = 20; }); },
                  [] {
                    return std::vector<SourceFile>{
                        {"m/a.yaml", network("lab", "  labels: {k: '12345678901234567890'}\n")}};
                  },
                  ""},
        LimitCase{"StringOneByteOver",
                  [] { return with([](LoaderLimits& l) { l.yaml.maxStringBytes = 20; }); },
                  [] {
                    return std::vector<SourceFile>{
                        {"m/a.yaml", network("lab", "  labels: {k: '123456789012345678901'}\n")}};
                  },
                  "m/a.yaml:5:15: error: metadata.labels.k: limit maxStringBytes exceeded: a "
                  "string of 21 bytes (expected at most 20"},
        LimitCase{"AliasBombStopsAtTheNodeBudget", defaults,
                  [] {
                    return std::vector<SourceFile>{{"m/bomb.yaml", aliasBomb(10, 10)}};
                  },
                  "limit maxNodesPerDocument exceeded"},
        LimitCase{"AliasesOfALongStringStopAtTheByteBudget",
                  [] { return with([](LoaderLimits& l) { l.yaml.maxBytesPerDocument = 100000; }); },
                  [] {
                    std::string text = "a: &s \"" + std::string(10000, 'x') + "\"\nb: [";
                    for (int i = 0; i < 11; ++i) {
                      text += i ? ", *s" : "*s";
                    }
                    return std::vector<SourceFile>{{"m/long.yaml", text + "]\n"}};
                  },
                  "limit maxBytesPerDocument exceeded"},
        LimitCase{"NodesAtTheLimit",
                  [] {
                    // 7 values: the root mapping, apiVersion, kind, metadata, name, spec, cidr.
                    return with([](LoaderLimits& l) { l.yaml.maxNodesPerDocument = 7; });
                  },
                  [] {
                    return std::vector<SourceFile>{{"m/a.yaml", network("lab")}};
                  },
                  ""},
        LimitCase{"NodesOneOver",
                  [] { return with([](LoaderLimits& l) { l.yaml.maxNodesPerDocument = 6; }); },
                  [] {
                    return std::vector<SourceFile>{{"m/a.yaml", network("lab")}};
                  },
                  "limit maxNodesPerDocument exceeded"},
        LimitCase{
            "DepthAtTheLimit", [] { return with([](LoaderLimits& l) { l.yaml.maxDepth = 3; }); },
            [] {
              // The root is depth 0; metadata.labels.k, the deepest value, is 3.
              return std::vector<SourceFile>{{"m/a.yaml", network("lab", "  labels: {k: v}\n")}};
            },
            ""},
        LimitCase{
            "DepthOneOver", [] { return with([](LoaderLimits& l) { l.yaml.maxDepth = 2; }); },
            [] {
              return std::vector<SourceFile>{{"m/a.yaml", network("lab", "  labels: {k: v}\n")}};
            },
            "metadata.labels.k: limit maxDepth exceeded"},
        LimitCase{"DeepFlowNestingIsAnError", defaults,
                  [] {
                    return std::vector<SourceFile>{{"m/deep.yaml", "a: " + nested(100000) + "\n"}};
                  },
                  "m/deep.yaml:"},
        LimitCase{
            "FileAtTheLimit",
            [] { return with([](LoaderLimits& l) { l.maxFileBytes = network("lab").size(); }); },
            [] {
              return std::vector<SourceFile>{{"m/a.yaml", network("lab")}};
            },
            ""},
        LimitCase{"FileOneByteOver",
                  [] {
                    return with(
                        [](LoaderLimits& l) { l.maxFileBytes = network("lab").size() - 1; });
                  },
                  [] {
                    return std::vector<SourceFile>{{"m/a.yaml", network("lab")}};
                  },
                  "m/a.yaml: error: limit maxFileBytes exceeded: the file has"},
        LimitCase{"FilesAtTheLimit", [] { return with([](LoaderLimits& l) { l.maxFiles = 3; }); },
                  [] { return filesOf(3); }, ""},
        LimitCase{"FilesOneOver", [] { return with([](LoaderLimits& l) { l.maxFiles = 3; }); },
                  [] { return filesOf(4); },
                  "m/f3.yaml: error: limit maxFiles exceeded: the revision has 4 manifest files "
                  "(expected at most 3"},
        LimitCase{"RevisionBytesAtTheLimit",
                  [] {
                    return with([](LoaderLimits& l) {
                      l.maxRevisionBytes = filesOf(1)[0].content.size() * 3;
                    });
                  },
                  [] { return filesOf(3); }, ""},
        LimitCase{"RevisionBytesOneOver",
                  [] {
                    return with([](LoaderLimits& l) {
                      l.maxRevisionBytes = filesOf(1)[0].content.size() * 3 - 1;
                    });
                  },
                  [] { return filesOf(3); }, "m/f2.yaml: error: limit maxRevisionBytes exceeded"},
        LimitCase{"DocumentsAtTheLimit",
                  [] { return with([](LoaderLimits& l) { l.maxDocuments = 6; }); },
                  [] { return filesOf(3, 2); }, ""},
        LimitCase{"DocumentsOneOver",
                  [] { return with([](LoaderLimits& l) { l.maxDocuments = 5; }); },
                  [] { return filesOf(3, 2); }, "m/f2.yaml: error: limit maxDocuments exceeded"},
        LimitCase{"DocumentsPerFileAtTheLimit",
                  [] { return with([](LoaderLimits& l) { l.yaml.maxDocumentsPerFile = 2; }); },
                  [] { return filesOf(1, 2); }, ""},
        LimitCase{"DocumentsPerFileOneOver",
                  [] { return with([](LoaderLimits& l) { l.yaml.maxDocumentsPerFile = 2; }); },
                  [] { return filesOf(1, 3); },
                  "limit maxDocumentsPerFile exceeded: the file has more documents"},
        LimitCase{"EmptyDocumentsCountTowardsTheFileLimit",
                  [] { return with([](LoaderLimits& l) { l.yaml.maxDocumentsPerFile = 3; }); },
                  [] {
                    return std::vector<SourceFile>{{"m/a.yaml", "---\n---\n---\n---\n"}};
                  },
                  "m/a.yaml:4:1: error: limit maxDocumentsPerFile exceeded: the file has more "
                  "documents (empty ones counted)"},
        LimitCase{"ErrorsPerFileAreCountedNotListed",
                  [] { return with([](LoaderLimits& l) { l.yaml.maxErrorsPerFile = 3; }); },
                  [] {
                    return std::vector<SourceFile>{{"m/a.yaml", errorsFile(8)}};
                  },
                  "m/a.yaml: error: 4 more error(s) in this file not shown (limit "
                  "maxErrorsPerFile 3)"}),
    [](const ::testing::TestParamInfo<LimitCase>& info) { return info.param.name; });

TEST(LoaderLimitTest, ALimitErrorAppliesNothingOfTheRevision) {
  LoaderLimits limits;
  limits.maxFiles = 2;
  ManifestLoader loader(schemas(), limits);
  LoadResult r = loader.load(filesOf(3));
  EXPECT_TRUE(r.diagnostics.hasErrors());
  EXPECT_TRUE(r.objects.empty());
  EXPECT_EQ(r.diagnostics.size(), 1u) << r.diagnostics.format();
}

TEST(LoaderLimitTest, ErrorsQuoteHugeInputShortened) {
  ManifestLoader loader(schemas());
  LoadResult r = loader.load(
      {{"m/a.yaml", network("lab", "", "  bridge: !!binary " + std::string(100000, 'z') + "\n")}});
  ASSERT_TRUE(r.diagnostics.hasErrors());
  for (const auto& d : r.diagnostics.items()) {
    EXPECT_LT(d.format().size(), 600u) << d.format().substr(0, 300);
  }
}

// Found by fuzzing (tests/fuzz/corpus/plan/utf8-continuation-run): valijson's maxLength decodes
// a run of UTF-8 continuation bytes by indexing a six-entry table with the run's length, an
// out-of-bounds read that a long enough run turns into a crash. Invalid UTF-8 is refused while
// converting, with where it is; valid UTF-8 of any script passes.
TEST(LoaderLimitTest, InvalidUtf8IsRefusedWithItsPlaceBeforeTheSchemaSeesIt) {
  ManifestLoader loader(schemas());
  const std::string run(100000, '\xaa');
  LoadResult r = loader.load({{"m/a.yaml", network("lab", "  labels: {env: \"" + run + "\"}\n")}});
  ASSERT_TRUE(r.diagnostics.hasErrors());
  EXPECT_TRUE(r.objects.empty());
  const std::string all = r.diagnostics.format();
  EXPECT_NE(all.find("m/a.yaml:5:"), std::string::npos) << all.substr(0, 600);
  EXPECT_NE(all.find("metadata.labels.env"), std::string::npos) << all.substr(0, 600);
  EXPECT_NE(all.find("not valid UTF-8 (byte 0 of this 100000-byte string is 0xaa)"),
            std::string::npos)
      << all.substr(0, 600);
  EXPECT_LT(all.size(), 1000u) << "the bad bytes are not quoted back";

  for (const std::string& bad : {std::string("\xc3"), std::string("\xc0\xaf"),
                                 std::string("\xed\xa0\x80"), std::string("\xf4\x90\x80\x80")}) {
    r = loader.load({{"m/a.yaml", network("lab", "  labels: {env: \"x" + bad + "\"}\n")}});
    EXPECT_NE(r.diagnostics.format().find("not valid UTF-8 (byte 1 "), std::string::npos)
        << r.diagnostics.format();
  }
  // In a key too.
  r = loader.load({{"m/a.yaml", network("lab", "  labels: {\"k\xff\": v}\n")}});
  EXPECT_NE(r.diagnostics.format().find("not valid UTF-8"), std::string::npos)
      << r.diagnostics.format();
  // Valid UTF-8 is not touched by this check (the label pattern may refuse it on its own).
  r = loader.load(
      {{"m/a.yaml",
        network("lab", "  annotations: {note: \"caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x99\x82\"}\n")}});
  EXPECT_EQ(r.diagnostics.format().find("UTF-8"), std::string::npos) << r.diagnostics.format();
}

// Near misses of the patterns, now that RE2 checks them: one character off each way.
struct PatternCase {
  std::string name;
  std::string metadata;
  std::string spec;
  bool valid;
};

class LoaderPatternTest : public ::testing::TestWithParam<PatternCase> {};

TEST_P(LoaderPatternTest, MatchesExactlyWhatThePatternSays) {
  const auto& c = GetParam();
  ManifestLoader loader(schemas());
  LoadResult r = loader.load({{"m/a.yaml", network("lab", c.metadata, c.spec)}});
  EXPECT_EQ(!r.diagnostics.hasErrors(), c.valid) << r.diagnostics.format();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LoaderPatternTest,
    ::testing::Values(
        PatternCase{"LabelKeyPlain", "  labels: {role: web}\n", "", true},
        PatternCase{"LabelKeyWithPrefix", "  labels: {hyper.dev/role: web}\n", "", true},
        PatternCase{"LabelKeyPrefixEndsInDash", "  labels: {hyper-/role: web}\n", "", false},
        PatternCase{"LabelKeyNameStartsWithDash", "  labels: {-role: web}\n", "", false},
        PatternCase{"LabelKeyName63", "  labels: {" + std::string(63, 'r') + ": web}\n", "", true},
        PatternCase{"LabelKeyName64", "  labels: {" + std::string(64, 'r') + ": web}\n", "", false},
        PatternCase{"BridgeOf15", "", "  bridge: hb-abcdefghijkl\n", true},
        PatternCase{"BridgeOf16", "", "  bridge: hb-abcdefghijklm\n", false},
        PatternCase{"BridgeStartsWithDash", "", "  bridge: -hb\n", false},
        PatternCase{"GatewayAddress", "", "  gateway: 10.77.0.1\n", true},
        PatternCase{"GatewayWithTrailingDot", "", "  gateway: 10.77.0.1.\n", false},
        PatternCase{"GatewayWithNewline", "", "  gateway: \"10.77.0.1\\n\"\n", false}),
    [](const ::testing::TestParamInfo<PatternCase>& info) { return info.param.name; });

// Every string with a pattern has a maxLength, so a person reads "too long" before anything else,
// and the pattern only ever sees short strings.
void expectMaxLengthBesidePattern(const Json& node, const std::string& where,
                                  std::vector<std::string>& missing) {
  if (node.is_object()) {
    if (node.contains("pattern") && !node.contains("maxLength")) {
      missing.push_back(where);
    }
    for (const auto& [key, child] : node.items()) {
      expectMaxLengthBesidePattern(child, where + "/" + key, missing);
    }
  } else if (node.is_array()) {
    for (size_t i = 0; i < node.size(); ++i) {
      expectMaxLengthBesidePattern(node[i], where + "/" + std::to_string(i), missing);
    }
  }
}

TEST(SchemaPatternTest, EveryPatternHasAMaxLength) {
  std::vector<std::string> missing;
  for (const auto& s : embeddedSchemas()) {
    expectMaxLengthBesidePattern(Json::parse(s.text), s.fileName, missing);
  }
  expectMaxLengthBesidePattern(Json::parse(controller::hyperdConfigSchema()), "hyperd config",
                               missing);
  EXPECT_TRUE(missing.empty()) << ::testing::PrintToString(missing);
}

TEST(SchemaPatternTest, APatternWhereTheCheckDoesNotWalkIsRefusedAtLoad) {
  const char* schema = R"({"x-hyper-kind": "Thing", "type": "object",
    "properties": {"a": {"anyOf": [{"type": "string", "maxLength": 3, "pattern": "^a"}]}}})";
  const char* envelope = R"({"x-hyper-kind": "*", "type": "object"})";
  auto r = SchemaRegistry::fromSchemas({{"thing.json", schema}, {"object.json", envelope}});
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("#/properties/a/anyOf/0"), std::string::npos)
      << r.status().message();
}

TEST(SchemaPatternTest, APatternRe2CannotCompileIsRefusedAtLoad) {
  const char* schema = R"({"x-hyper-kind": "Thing", "type": "object",
    "properties": {"a": {"type": "string", "maxLength": 3, "pattern": "(unclosed"}}})";
  const char* envelope = R"({"x-hyper-kind": "*", "type": "object"})";
  auto r = SchemaRegistry::fromSchemas({{"thing.json", schema}, {"object.json", envelope}});
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("load schema thing.json <- pattern at #/properties/a"),
            std::string::npos)
      << r.status().message();
}

TEST(SchemaPatternTest, ConfigSchemaPatternsAreCheckedToo) {
  SourceMap map(std::make_shared<const std::string>("hyperd.yaml"));
  Diagnostics diags;
  Json config = {{"listen", std::string(100000, 'h') + ":7400"}};
  ASSERT_TRUE(
      validateWithSchema(std::string(controller::hyperdConfigSchema()), config, map, diags).isOk());
  EXPECT_NE(diags.format().find("listen: invalid value"), std::string::npos) << diags.format();
  Diagnostics good;
  ASSERT_TRUE(validateWithSchema(std::string(controller::hyperdConfigSchema()),
                                 {{"listen", "127.0.0.1:7400"}}, map, good)
                  .isOk());
  EXPECT_EQ(good.format().find("listen"), std::string::npos) << good.format();
}

}  // namespace
}  // namespace hyper

namespace hyper {
namespace {

// A file over maxFileBytes in a directory is sized, not read: the directory source and
// `hyperctl -f` never hold it in memory, and the loader reports it like a git blob over it.
TEST(LoaderLimitTest, ADirectoryFileOverTheLimitIsSizedNotRead) {
  char tmpl[] = "/tmp/hyper-limits.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  const size_t limit = LoaderLimits{}.maxFileBytes;
  std::string small = network("lab");
  {
    std::ofstream(dir + "/a.yaml") << small;
    std::ofstream big(dir + "/b.yaml");
    big << small << "#" << std::string(limit - small.size(), 'x');  // limit + 1 bytes
  }
  auto files = readManifestFiles({dir});
  ASSERT_TRUE(files.isOk()) << files.status().message();
  ASSERT_EQ(files->size(), 2u);
  EXPECT_EQ((*files)[0].content, small);
  EXPECT_EQ((*files)[1].content, "");
  EXPECT_EQ((*files)[1].unreadBytes, limit + 1);
  ManifestLoader loader(schemas());
  LoadResult r = loader.load(*files);
  EXPECT_NE(
      r.diagnostics.format().find("b.yaml: error: limit maxFileBytes exceeded: the file has " +
                                  std::to_string(limit + 1) + " bytes"),
      std::string::npos)
      << r.diagnostics.format();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hyper
