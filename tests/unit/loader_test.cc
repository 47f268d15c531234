#include "reconciler/loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <string>

#include "reconciler/yaml_json.h"

namespace hyper {
namespace {

std::shared_ptr<const SchemaRegistry> schemas() {
  auto r = SchemaRegistry::builtin();
  EXPECT_TRUE(r.isOk()) << r.status().message();
  return *r;
}

const char* kHeader =
    "apiVersion: hyper.dev/v1alpha1\n"
    "kind: Network\n"
    "metadata:\n"
    "  name: lab\n"
    "spec:\n";

struct BadInputCase {
  std::string name;
  std::string yaml;
  std::string where;      // "file:line:col"
  std::string fieldPath;  // expected field path
  std::string message;    // a substring of the summary
};

class LoaderBadInputTest : public ::testing::TestWithParam<BadInputCase> {};

TEST_P(LoaderBadInputTest, ReportsLocationFieldAndExpectation) {
  const auto& c = GetParam();
  ManifestLoader loader(schemas());
  LoadResult r = loader.load({{"m/net.yaml", c.yaml}});
  ASSERT_TRUE(r.diagnostics.hasErrors()) << "no error for:\n" << c.yaml;
  bool matched = false;
  for (const auto& d : r.diagnostics.items()) {
    if (d.where.str() == c.where && d.fieldPath == c.fieldPath &&
        d.summary.find(c.message) != std::string::npos) {
      matched = true;
    }
  }
  EXPECT_TRUE(matched) << "expected " << c.where << " " << c.fieldPath << " ~ \"" << c.message
                       << "\", got:\n"
                       << r.diagnostics.format();
  // A document with an error never becomes an object.
  EXPECT_TRUE(r.objects.empty()) << r.diagnostics.format();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LoaderBadInputTest,
    ::testing::Values(
        BadInputCase{"UnknownSpecField",
                     std::string(kHeader) + "  cidr: 10.77.0.0/24\n  colour: blue\n",
                     "m/net.yaml:7:3", "spec.colour", "unknown field \"colour\" (expected one of:"},
        BadInputCase{"WrongType", std::string(kHeader) + "  cidr: 10.77.0.0/24\n  mtu: \"big\"\n",
                     "m/net.yaml:7:3", "spec.mtu", "wrong type: found a string \"big\""},
        BadInputCase{"QuotedNumberIsAString",
                     std::string(kHeader) + "  cidr: 10.77.0.0/24\n  mtu: '1500'\n",
                     "m/net.yaml:7:3", "spec.mtu", "expected an integer from 68 to 65535"},
        BadInputCase{"MtuTooSmall", std::string(kHeader) + "  cidr: 10.77.0.0/24\n  mtu: 12\n",
                     "m/net.yaml:7:3", "spec.mtu", "found 12"},
        BadInputCase{"BadCidrShape", std::string(kHeader) + "  cidr: 10.77.0/24\n",
                     "m/net.yaml:6:3", "spec.cidr",
                     "invalid value \"10.77.0/24\" (expected an IPv4 network in CIDR"},
        BadInputCase{"MissingRequired", std::string(kHeader) + "  nat: true\n", "m/net.yaml:5:1",
                     "spec.cidr", "missing required field \"cidr\""},
        BadInputCase{"NameNotDnsLabel",
                     "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: Lab_1\n"
                     "spec:\n  cidr: 10.0.0.0/24\n",
                     "m/net.yaml:4:3", "metadata.name", "has 'L' at position 1"},
        BadInputCase{"NameTooLong",
                     "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: " +
                         std::string(64, 'a') + "\nspec:\n  cidr: 10.0.0.0/24\n",
                     "m/net.yaml:4:3", "metadata.name", "64 characters long (expected at most 63)"},
        BadInputCase{"NameTrailingDash",
                     "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: lab-\n"
                     "spec:\n  cidr: 10.0.0.0/24\n",
                     "m/net.yaml:4:3", "metadata.name", "must not start or end with '-'"},
        BadInputCase{"UnknownKind",
                     "apiVersion: hyper.dev/v1alpha1\nkind: Netwrk\nmetadata:\n  name: lab\n"
                     "spec:\n  cidr: 10.0.0.0/24\n",
                     "m/net.yaml:2:1", "kind", "unknown kind \"Netwrk\" (expected one of:"},
        BadInputCase{"WrongApiVersion",
                     "apiVersion: hyper.dev/v2\nkind: Network\nmetadata:\n  name: lab\n"
                     "spec:\n  cidr: 10.0.0.0/24\n",
                     "m/net.yaml:1:1", "apiVersion", "expected hyper.dev/v1alpha1"},
        BadInputCase{"StatusFromGit", std::string(kHeader) + "  cidr: 10.0.0.0/24\nstatus: {}\n",
                     "m/net.yaml:7:1", "status", "unknown field \"status\""},
        BadInputCase{"DuplicateKey",
                     std::string(kHeader) + "  cidr: 10.0.0.0/24\n  cidr: 10.1.0.0/24\n",
                     "m/net.yaml:7:3", "spec.cidr", "duplicate key \"cidr\""},
        BadInputCase{"SyntaxError", std::string(kHeader) + "  cidr: [10.0.0.0/24\n",
                     "m/net.yaml:7:1", "", "YAML syntax error"},
        BadInputCase{"PolicyModeEnum",
                     "apiVersion: hyper.dev/v1alpha1\nkind: NetworkPolicy\nmetadata:\n  name: p\n"
                     "spec:\n  network: lab\n  egress:\n    mode: some\n",
                     "m/net.yaml:8:5", "spec.egress.mode", "expected one of none, allowlist, any"},
        BadInputCase{"PolicyPortRange",
                     "apiVersion: hyper.dev/v1alpha1\nkind: NetworkPolicy\nmetadata:\n  name: p\n"
                     "spec:\n  network: lab\n  egress:\n    mode: allowlist\n    allow:\n"
                     "      - {cidr: 1.2.3.0/24, ports: [443, 70000]}\n",
                     "m/net.yaml:10:41", "spec.egress.allow[0].ports[1]", "found 70000"},
        BadInputCase{"DocumentNotAMapping", "- a\n- b\n", "m/net.yaml:1:1", "",
                     "the document is a list"}),
    [](const auto& info) { return info.param.name; });

TEST(LoaderTest, DuplicateKindNameAcrossFilesNamesBoth) {
  ManifestLoader loader(schemas());
  std::string doc = std::string(kHeader) + "  cidr: 10.0.0.0/24\n";
  LoadResult r = loader.load({{"a.yaml", doc}, {"b.yaml", "---\n" + doc}});
  ASSERT_TRUE(r.diagnostics.hasErrors());
  const auto& d = r.diagnostics.items().front();
  EXPECT_EQ(d.where.str(), "b.yaml:2:1");
  EXPECT_NE(d.summary.find("defined twice (first at a.yaml:1:1"), std::string::npos) << d.summary;
}

TEST(LoaderTest, MultiDocumentFileKeepsLinesAndSkipsEmptyDocuments) {
  ManifestLoader loader(schemas());
  std::string text = "---\n---\n" + std::string(kHeader) +
                     "  cidr: 10.0.0.0/24\n  nat: yes\n---\n"
                     "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: b\n"
                     "  labels: {env: dev}\nspec:\n  cidr: 10.1.0.0/24\n  mtu: 1400\n";
  LoadResult r = loader.load({{"x.yaml", text}});
  // "yes" is a string under YAML 1.2, so nat: yes is a type error on line 9.
  ASSERT_EQ(r.diagnostics.size(), 1u) << r.diagnostics.format();
  EXPECT_EQ(r.diagnostics.items()[0].where.str(), "x.yaml:9:3");
  ASSERT_EQ(r.objects.size(), 1u);
  const Object& b = *r.objects[0];
  EXPECT_EQ(b.id.str(), "Network/b");
  EXPECT_EQ(b.where.str(), "x.yaml:11:1");
  EXPECT_EQ(b.labels.at("env"), "dev");
  EXPECT_EQ(b.spec["mtu"], 1400);
  EXPECT_EQ(b.locate("spec.mtu").str(), "x.yaml:18:3");
  EXPECT_EQ(b.locate("spec.gateway").str(), "x.yaml:16:1");  // absent: falls back to spec
}

TEST(LoaderTest, UnchangedRevisionIsDetectedAndChangedContentIsNot) {
  ManifestLoader loader(schemas());
  std::string doc = std::string(kHeader) + "  cidr: 10.0.0.0/24\n";
  LoadResult first = loader.load({{"a.yaml", doc}});
  ASSERT_FALSE(first.diagnostics.hasErrors()) << first.diagnostics.format();
  EXPECT_FALSE(first.unchanged);
  LoadResult second = loader.load({{"a.yaml", doc}});
  EXPECT_TRUE(second.unchanged);
  EXPECT_EQ(first.revision, second.revision);
  // The cached object is shared, not re-parsed.
  EXPECT_EQ(first.objects[0].get(), second.objects[0].get());
  LoadResult third = loader.load({{"a.yaml", doc + "  mtu: 1400\n"}});
  EXPECT_FALSE(third.unchanged);
  EXPECT_NE(third.revision, first.revision);
}

TEST(LoaderTest, AnObjectWhoseSpecIsItsRecordsHoldsTheRecordsTree) {
  ManifestLoader loader(schemas());
  std::string lab = std::string(kHeader) + "  cidr: 10.0.0.0/24\n";
  std::string b =
      "---\napiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: b\n"
      "spec:\n  cidr: 10.1.0.0/24\n  mtu: 1400\n";
  std::vector<ManagedRecord> records(3);  // sorted by kind, then name, as the inventory's
  records[0].id = {"Network", "b"};
  records[0].spec = Json{{"cidr", "10.1.0.0/24"}, {"mtu", 1500}};  // changed since
  records[1].id = {"Network", "gone"};
  records[1].spec = Json::object();
  records[2].id = {"Network", "lab"};
  records[2].spec = Json{{"cidr", "10.0.0.0/24"}};
  auto byName = [](const LoadResult& r, const std::string& name) -> const Object& {
    for (const auto& o : r.objects) {
      if (o->id.name == name) {
        return *o;
      }
    }
    throw std::runtime_error("no object " + name);
  };
  const RecordList shared(records);  // copies hold the same trees
  LoadResult r = loader.load({{"x.yaml", lab + b}}, nullptr, &shared);
  ASSERT_FALSE(r.diagnostics.hasErrors()) << r.diagnostics.format();
  ASSERT_EQ(r.objects.size(), 2u);
  EXPECT_TRUE(byName(r, "lab").spec.sharesWith(records[2].spec));
  EXPECT_FALSE(byName(r, "b").spec.sharesWith(records[0].spec));
  EXPECT_EQ(byName(r, "b").spec["mtu"], 1400);
  // Without records every object has its own tree.
  ManifestLoader alone(schemas());
  LoadResult own = alone.load({{"x.yaml", lab + b}});
  ASSERT_EQ(own.objects.size(), 2u);
  EXPECT_FALSE(byName(own, "lab").spec.sharesWith(records[2].spec));
  EXPECT_EQ(byName(own, "lab").spec, records[2].spec);
}

// The inventory's specHash is a hash of canonicalJson(spec): YAML style must not change it.
TEST(LoaderTest, CanonicalSpecIgnoresFormattingButNotValues) {
  ManifestLoader loader(schemas());
  LoadResult a = loader.load({{"a.yaml", std::string(kHeader) + "  cidr: 10.0.0.0/24\n"}});
  LoadResult b =
      loader.load({{"a.yaml",
                    "{apiVersion: hyper.dev/v1alpha1, kind: Network, metadata: {name: lab}, "
                    "spec: {cidr: \"10.0.0.0/24\"}}\n"}});
  LoadResult c = loader.load({{"a.yaml", std::string(kHeader) + "  cidr: 10.9.0.0/24\n"}});
  ASSERT_EQ(a.objects.size(), 1u);
  ASSERT_EQ(b.objects.size(), 1u);
  ASSERT_EQ(c.objects.size(), 1u);
  EXPECT_EQ(canonicalJson(a.objects[0]->spec), canonicalJson(b.objects[0]->spec));
  EXPECT_NE(canonicalJson(a.objects[0]->spec), canonicalJson(c.objects[0]->spec));
}

TEST(LoaderTest, ReadManifestFilesWalksDirectoriesSortedAndSkipsHidden) {
  char tmpl[] = "/tmp/hyper-loader-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string root = tmpl;
  std::string cmd = "mkdir -p " + root + "/b " + root + "/.git && echo 'x: 1' > " + root +
                    "/b/z.yaml && echo 'x: 2' > " + root + "/a.yml && echo 'x: 3' > " + root +
                    "/.git/c.yaml && echo 'no' > " + root + "/README.md";
  ASSERT_EQ(system(cmd.c_str()), 0);
  auto files = readManifestFiles({root});
  ASSERT_TRUE(files.isOk()) << files.status().message();
  ASSERT_EQ(files->size(), 2u);
  EXPECT_EQ((*files)[0].path, root + "/a.yml");
  EXPECT_EQ((*files)[1].path, root + "/b/z.yaml");
  auto missing = readManifestFiles({root + "/nope"});
  ASSERT_FALSE(missing.isOk());
  EXPECT_NE(missing.status().message().find("no such file"), std::string::npos);
  ASSERT_EQ(system(("rm -rf " + root).c_str()), 0);
}

TEST(LoaderTest, ReadManifestFilesNeverFollowsALinkOutOfTheRoot) {
  char tmpl[] = "/tmp/hyper-loader-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string root = tmpl;
  // The sibling's path starts with the root's: a string-prefix check would let it through.
  std::string sibling = root + "-x";
  std::string cmd = "mkdir -p " + root + "/in " + sibling + " && echo 'x: 1' > " + root +
                    "/in/a.yaml && echo 'x: 2' > " + sibling + "/b.yaml && ln -s in/a.yaml " +
                    root + "/inside.yaml && ln -s in " + root + "/indir";
  ASSERT_EQ(system(cmd.c_str()), 0);
  auto files = readManifestFiles({root});
  ASSERT_TRUE(files.isOk()) << files.status().message();
  ASSERT_EQ(files->size(), 3u);  // in/a.yaml, indir/a.yaml and inside.yaml: links inside are read
  EXPECT_EQ((*files)[2].path, root + "/inside.yaml");

  ASSERT_EQ(system(("ln -s " + sibling + "/b.yaml " + root + "/in/out.yaml").c_str()), 0);
  auto out = readManifestFiles({root});
  ASSERT_FALSE(out.isOk());
  EXPECT_NE(out.status().message().find("/out.yaml is a symlink to " + sibling + "/b.yaml"),
            std::string::npos)
      << out.status().message();
  ASSERT_EQ(
      system(("rm " + root + "/in/out.yaml && ln -s " + sibling + " " + root + "/outdir").c_str()),
      0);
  out = readManifestFiles({root});
  ASSERT_FALSE(out.isOk());
  EXPECT_NE(out.status().message().find(root + "/outdir is a symlink"), std::string::npos)
      << out.status().message();
  ASSERT_EQ(system(("rm -rf " + root + " " + sibling).c_str()), 0);
}

// Enough files to be parsed on several threads give what loading them one at a time gives: the
// same diagnostics in file order, the same objects, every time; a name defined twice across
// files is reported at the second file, naming the first.
TEST(LoaderParallelTest, ManyFilesGiveWhatOneFileAtATimeGives) {
  std::vector<SourceFile> files;
  for (int i = 0; i < 300; ++i) {
    char path[32];
    std::snprintf(path, sizeof path, "m/f%03d.yaml", i);
    std::string name = "n" + std::to_string(i == 250 ? 10 : i);  // f250 redefines n10
    std::string spec =
        "  cidr: 10." + std::to_string(i / 200) + "." + std::to_string(i % 200) + ".0/24\n";
    if (i % 37 == 5) {
      spec += "  mtu: \"big\"\n";  // a schema error
    } else if (i % 53 == 7) {
      spec += "  mtu: [1500\n";  // a YAML syntax error
    }
    files.push_back({path, "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: " +
                               name + "\nspec:\n" + spec});
  }
  std::vector<std::string> expected;
  size_t valid = 0;
  for (const auto& f : files) {
    ManifestLoader one(schemas());
    LoadResult r = one.load({f});
    for (const auto& d : r.diagnostics.items()) {
      expected.push_back(d.where.str() + " " + d.summary);
    }
    valid += r.objects.size();
  }
  ASSERT_GT(expected.size(), 10u);  // both kinds of error are there

  std::string first;
  for (int round = 0; round < 3; ++round) {
    ManifestLoader all(schemas());
    LoadResult r = all.load(files);
    std::vector<std::string> got;
    std::string twice;
    for (const auto& d : r.diagnostics.items()) {
      if (d.summary.find("is defined twice") != std::string::npos) {
        twice = d.where.str() + " " + d.summary;
      } else {
        got.push_back(d.where.str() + " " + d.summary);
      }
    }
    EXPECT_EQ(got, expected);
    EXPECT_NE(twice.find("m/f250.yaml"), std::string::npos) << twice;
    EXPECT_NE(twice.find("first at m/f010.yaml"), std::string::npos) << twice;
    EXPECT_EQ(r.objects.size(), valid - 1);
    if (round == 0) {
      first = r.diagnostics.format();
    } else {
      EXPECT_EQ(r.diagnostics.format(), first);
    }
  }
}

// One file of `n` Networks, "---" between them; `lines[i]` is where document i starts and
// `cidrLines[i]` the line of its spec.cidr. Document `bad` (if any) has a schema error.
struct BigFile {
  std::string text;
  std::vector<int> lines;
  std::vector<int> cidrLines;
};
BigFile bigFile(int n, int bad = -1) {
  BigFile f;
  int line = 1;
  for (int i = 0; i < n; ++i) {
    if (i > 0) {
      f.text += "---\n";
      ++line;
    }
    if (i % 7 == 3) {
      f.text += "# network " + std::to_string(i) + "\n";
      ++line;
    }
    f.lines.push_back(line);
    std::string doc = "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: n" +
                      std::to_string(i) +
                      "\n  annotations:\n    note: |\n      a block scalar\n      --- not a "
                      "document start\nspec:\n";
    doc += i == bad ? "  mtu: \"big\"\n" : "  mtu: 1400\n";
    f.cidrLines.push_back(line + static_cast<int>(std::count(doc.begin(), doc.end(), '\n')));
    doc += "  cidr: 10." + std::to_string(i / 200) + "." + std::to_string(i % 200) + ".0/24\n";
    f.text += doc;
    line += static_cast<int>(std::count(doc.begin(), doc.end(), '\n'));
  }
  return f;
}

TEST(SplitYamlStreamTest, CutsOnlyAtDocumentStartsAndCountsTheLinesBefore) {
  BigFile f = bigFile(300);
  std::vector<YamlPiece> pieces = splitYamlStreamByContent(f.text, 1024, 4096);
  ASSERT_GT(pieces.size(), 3u);
  std::string joined;
  int lines = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    EXPECT_EQ(pieces[i].linesBefore, lines);
    if (i > 0) {
      EXPECT_EQ(pieces[i].text.rfind("---\n", 0), 0u) << pieces[i].text.substr(0, 80);
    }
    EXPECT_EQ(pieces[i].last, i + 1 == pieces.size());
    joined += pieces[i].text;
    lines += static_cast<int>(std::count(pieces[i].text.begin(), pieces[i].text.end(), '\n'));
  }
  EXPECT_EQ(joined, f.text);
  // With a cut at every document start where cutting is allowed (1, 1): a directive keeps the
  // stream whole; so does a stream with nowhere to cut.
  EXPECT_EQ(splitYamlStreamByContent("%YAML 1.2\n" + f.text, 1, 1).size(), 1u);
  // As does one yaml-cpp could take for UTF-16 or UTF-32 (found by the yaml_json fuzz target: a
  // leading zero byte made the whole one document and its pieces two).
  EXPECT_EQ(splitYamlStreamByContent(std::string(1, '\0') + f.text, 1, 1).size(), 1u);
  EXPECT_EQ(splitYamlStreamByContent("\xff\xfe" + f.text, 1, 1).size(), 1u);
  // A lone "\r" is no line break to yaml-cpp: "---\r" does not start a document (fuzzer).
  EXPECT_EQ(splitYamlStreamByContent("a:a  -!\n---\r", 1, 1).size(), 1u);
  EXPECT_EQ(splitYamlStreamByContent("a: 1\nb: 2\nc: 3\n---\rd: 4\n", 1, 1).size(), 1u);
  // A quoted scalar left open before a cut is an error, as in the whole (yaml-cpp takes the end
  // of its input as its end): both pieces alone are clean, so the whole is parsed.
  const std::string open = "a: \"open\n---\nb: 1\n";
  std::vector<YamlPiece> cut = splitYamlStreamByContent(open, 1, 1);
  ASSERT_EQ(cut.size(), 2u);
  Diagnostics whole;
  (void)parseYamlDocuments(open, std::make_shared<const std::string>("o.yaml"), whole);
  EXPECT_TRUE(whole.hasErrors());
  Diagnostics first;
  (void)parseYamlDocuments(cut[0].parseText(), std::make_shared<const std::string>("o.yaml"),
                           first);
  EXPECT_TRUE(first.hasErrors());
  // Empty documents count towards maxDocumentsPerFile in the pieces as in the whole (fuzzer):
  // 150 document starts, 76 in the larger piece, are over a limit of 100.
  std::string empties;
  for (int i = 0; i < 75; ++i) {
    empties += "---\n";
  }
  const std::string many = empties + "#" + std::string(140 << 10, ' ') + "\n" + empties;
  ASSERT_GE(
      splitYamlStreamByContent(many, ManifestLoader::kPieceMinBytes, ManifestLoader::kPieceMaxBytes)
          .size(),
      2u);
  LoaderLimits few;
  few.yaml.maxDocumentsPerFile = 100;
  ManifestLoader counting(schemas(), few);
  LoadResult counted = counting.load({{"e.yaml", many}});
  EXPECT_NE(counted.diagnostics.format().find("limit maxDocumentsPerFile exceeded"),
            std::string::npos)
      << counted.diagnostics.format();

  // In the loader, at a size where it cuts: the error is the whole file's.
  const std::string padded = "#" + std::string(150 << 10, ' ') + "\n" + open;
  ASSERT_EQ(splitYamlStreamByContent(padded, ManifestLoader::kPieceMinBytes,
                                     ManifestLoader::kPieceMaxBytes)
                .size(),
            2u);
  ManifestLoader loader(schemas());
  LoadResult r = loader.load({{"o.yaml", padded}});
  Diagnostics alone;
  (void)parseYamlDocuments(padded, std::make_shared<const std::string>("o.yaml"), alone);
  ASSERT_TRUE(alone.hasErrors());
  EXPECT_EQ(r.diagnostics.format(), alone.format());
  EXPECT_EQ(splitYamlStreamByContent("a: 1\n--- b\n---x\n  ---\n", 1, 1).size(), 1u);
  std::vector<YamlPiece> blanks =
      splitYamlStreamByContent("a: 1\nb: 2\nc: 3\n--- \t\r\nd: 4\n", 1, 1);
  ASSERT_EQ(blanks.size(), 2u);
  EXPECT_EQ(blanks[1].text, "--- \t\r\nd: 4\n");
  EXPECT_EQ(blanks[1].linesBefore, 3);
}

// A file large enough to be parsed in pieces gives the objects and lines it gives whole, and an
// error anywhere is reported as the whole file reports it.
TEST(LoaderParallelTest, ALargeFileParsedInPiecesKeepsItsLinesAndErrors) {
  const int n = 1500;
  BigFile f = bigFile(n);
  ASSERT_GT(f.text.size(), 128u << 10);  // at least two pieces on two cores
  ManifestLoader loader(schemas());
  LoadResult r = loader.load({{"m/all.yaml", f.text}});
  ASSERT_FALSE(r.diagnostics.hasErrors()) << r.diagnostics.format();
  ASSERT_EQ(r.objects.size(), static_cast<size_t>(n));
  for (const auto& o : r.objects) {
    int i = std::stoi(o->id.name.substr(1));
    EXPECT_EQ(o->where.str(), "m/all.yaml:" + std::to_string(f.lines[i]) + ":1") << o->id.str();
    EXPECT_EQ(o->sourceMap.locate("spec.cidr").line, f.cidrLines[i]) << o->id.str();
    EXPECT_EQ(o->annotations.at("note"), "a block scalar\n--- not a document start\n");
    EXPECT_EQ(o->spec["mtu"], 1400);
  }

  BigFile broken = bigFile(n, n - 2);
  ManifestLoader again(schemas());
  LoadResult b = again.load({{"m/all.yaml", broken.text}});
  ASSERT_EQ(b.diagnostics.items().size(), 1u) << b.diagnostics.format();
  EXPECT_EQ(b.diagnostics.items()[0].where.str(),
            "m/all.yaml:" + std::to_string(broken.cidrLines[n - 2] - 1) + ":3");
  EXPECT_EQ(b.objects.size(), static_cast<size_t>(n - 1));
}

TEST(SplitYamlStreamTest, ByContentAnEditMovesOnlyTheCutsNextToIt) {
  BigFile f = bigFile(3000);
  std::vector<YamlPiece> pieces = splitYamlStreamByContent(f.text, 8 << 10, 64 << 10);
  ASSERT_GT(pieces.size(), 10u);
  std::string joined;
  int lines = 0;
  std::set<std::string> before;
  for (size_t i = 0; i < pieces.size(); ++i) {
    EXPECT_EQ(pieces[i].linesBefore, lines);
    if (i > 0) {
      EXPECT_EQ(pieces[i].text.rfind("---\n", 0), 0u) << pieces[i].text.substr(0, 80);
    }
    if (i + 1 < pieces.size()) {
      EXPECT_GE(pieces[i].text.size(), 8u << 10);
      EXPECT_LT(pieces[i].text.size(), (64u << 10) + 1024);  // a document past the maximum
    }
    EXPECT_EQ(pieces[i].last, i + 1 == pieces.size());
    joined += pieces[i].text;
    lines += static_cast<int>(std::count(pieces[i].text.begin(), pieces[i].text.end(), '\n'));
    before.insert(pieces[i].text);
  }
  EXPECT_EQ(joined, f.text);
  // One document's value changed in the middle: every piece but the one or two around it is the
  // same text as before.
  std::string edited = f.text;
  size_t at = edited.find("name: n1500\n");
  ASSERT_NE(at, std::string::npos);
  at = edited.find("mtu: 1400", at);
  edited.replace(at, 9, "mtu: 9000");
  std::vector<YamlPiece> after = splitYamlStreamByContent(edited, 8 << 10, 64 << 10);
  size_t changed = 0;
  for (const auto& piece : after) {
    changed += before.count(piece.text) == 0 ? 1 : 0;
  }
  EXPECT_GE(changed, 1u);
  EXPECT_LE(changed, 2u);
  // The streams that stay whole stay whole here too.
  EXPECT_EQ(splitYamlStreamByContent("%YAML 1.2\n" + f.text, 8 << 10, 64 << 10).size(), 1u);
  EXPECT_EQ(splitYamlStreamByContent(std::string(1, '\0') + f.text, 8 << 10, 64 << 10).size(), 1u);
}

// Loaded again with one document changed, a large file re-parses only the pieces around the
// change, and gives what a loader that never saw it gives: the same objects at the same lines,
// also when the change moves every later line.
TEST(LoaderParallelTest, AnEditedLargeFileReparsesOnlyThePiecesAroundTheEdit) {
  const int n = 3000;
  BigFile f = bigFile(n);
  ManifestLoader loader(schemas());
  LoadResult first = loader.load({{"m/all.yaml", f.text}});
  ASSERT_FALSE(first.diagnostics.hasErrors()) << first.diagnostics.format();
  const size_t pieces = loader.piecesParsed();
  ASSERT_GT(pieces, 10u);
  EXPECT_EQ(loader.piecesReused(), 0u);

  auto sameAsFresh = [&](const std::string& text, const LoadResult& got) {
    ManifestLoader fresh(schemas());
    LoadResult want = fresh.load({{"m/all.yaml", text}});
    ASSERT_FALSE(got.diagnostics.hasErrors()) << got.diagnostics.format();
    ASSERT_EQ(got.objects.size(), want.objects.size());
    EXPECT_EQ(got.revision, want.revision);
    for (size_t i = 0; i < got.objects.size(); ++i) {
      const Object& a = *got.objects[i];
      const Object& b = *want.objects[i];
      ASSERT_EQ(a.id, b.id);
      EXPECT_EQ(a.spec.get(), b.spec.get()) << a.id.str();
      EXPECT_EQ(a.where.str(), b.where.str()) << a.id.str();
      EXPECT_EQ(a.sourceMap.locate("spec.cidr").str(), b.sourceMap.locate("spec.cidr").str())
          << a.id.str();
    }
  };

  // A value changed, the lines kept.
  std::string edited = f.text;
  size_t at = edited.find("mtu: 1400", edited.find("name: n1500\n"));
  edited.replace(at, 9, "mtu: 9000");
  LoadResult second = loader.load({{"m/all.yaml", edited}});
  EXPECT_LE(loader.piecesParsed() - pieces, 2u);
  EXPECT_GE(loader.piecesReused(), pieces - 2);
  sameAsFresh(edited, second);

  // A line added near the start: the pieces after it are at other lines, so parsed again.
  std::string moved = edited;
  moved.insert(moved.find("spec:\n", moved.find("name: n3\n")), "# one more line\n");
  LoadResult third = loader.load({{"m/all.yaml", moved}});
  sameAsFresh(moved, third);
  int line = 0;
  for (const auto& o : third.objects) {
    if (o->id.name == "n2999") {
      line = o->where.line;
    }
  }
  EXPECT_EQ(line, f.lines[2999] + 1);
}

}  // namespace
}  // namespace hyper
