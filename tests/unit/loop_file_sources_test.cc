// hyperd's loop over a real directory source whose Build names a file source: a change to that
// file alone (no manifest changed) is a new revision, which rebuilds the image with the new
// bytes; an unchanged directory is the same revision and plans nothing. The built-in providers
// over a temporary state dir (the Build provider's store; busybox is not used).

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "controller/client.h"
#include "hyperctl/hyperctl_remote.h"
#include "hyperd/api.h"
#include "hyperd/loop.h"
#include "providers/builtin.h"
#include "reconciler/source_tree.h"
#include "source/dir_source.h"

namespace hyper {
namespace {
namespace fs = std::filesystem;
using namespace controller;

class NoAlerts : public AlertSink {
 public:
  void send(const Alert&) override {}
};

const char* kManifest =
    "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: web}\nspec:\n"
    "  type: initramfs\n  initramfs:\n    busybox: false\n    files:\n"
    "      - {path: /init, mode: \"0755\", source: web/init.sh}\n";

class LoopFileSourcesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hyper-loop-files-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    write("src/build.yaml", kManifest);
    write("src/web/init.sh", "#!/bin/sh\necho one\n");
    auto kinds = providers::builtinKinds();
    ASSERT_TRUE(kinds.isOk()) << kinds.status().message();
    // A stand-in busybox (a Build with busybox: true takes its bytes): an input a test can move.
    write("busybox", "not really busybox");
    auto made =
        (*kinds)->makeProviders(Json{{"build", {{"busybox", dir_ + "/busybox"}}}}, dir_ + "/state");
    ASSERT_TRUE(made.isOk()) << made.status().message();
    fs::create_directories(dir_ + "/state");
    fs::permissions(dir_ + "/state", fs::perms::owner_all);
    engine_ = std::make_unique<Engine>(std::move(*made), **kinds);
    auto inventory = Inventory::open(dir_ + "/state");
    ASSERT_TRUE(inventory.isOk()) << inventory.status().message();
    inventory_ = std::move(*inventory);
    auto events = EventLog::open(dir_ + "/state");
    ASSERT_TRUE(events.isOk()) << events.status().message();
    events_ = std::move(*events);
    auto source = DirSource::open({dir_ + "/src", "", "", ""});
    ASSERT_TRUE(source.isOk()) << source.status().message();
    source_ = std::move(*source);
    controller_ = std::make_unique<Controller>(*engine_, *inventory_, *events_, *source_, alerts_,
                                               metrics_, LoopOptions{});
  }
  void TearDown() override {
    controller_.reset();
    fs::remove_all(dir_);
  }
  void write(const std::string& rel, const std::string& content) {
    fs::path p = fs::path(dir_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
  }
  // Builds run on the Build provider's queue beside the loop: reconciles until nothing is in
  // progress any more, counting what they applied.
  ReconcileSummary settle() {
    ReconcileSummary s = controller_->reconcileOnce("test", true);
    size_t succeeded = s.succeeded;
    for (int i = 0; i < 1000 && s.inProgress > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      ReconcileSummary next = controller_->reconcileOnce("test", false);
      succeeded += next.succeeded;
      next.revision = s.revision;
      next.sourceChanged = s.sourceChanged;
      s = next;
    }
    s.succeeded = succeeded;
    return s;
  }
  std::string builtDigest() {
    auto records = inventory_->list();
    EXPECT_TRUE(records.isOk());
    for (const auto& r : *records) {
      if (r.id == ObjectId{"Build", "web"}) {
        return r.handles["artifacts"]["initrd"].value("digest", "");
      }
    }
    return "";
  }

  std::string dir_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Inventory> inventory_;
  std::unique_ptr<EventLog> events_;
  std::unique_ptr<DirSource> source_;
  NoAlerts alerts_;
  Metrics metrics_;
  std::unique_ptr<Controller> controller_;
};

TEST_F(LoopFileSourcesTest, AChangedFileSourceAloneIsANewRevisionThatRebuilds) {
  ReconcileSummary first = settle();
  ASSERT_EQ(first.error, "");
  ASSERT_EQ(first.succeeded, 1u);
  const std::string digest1 = builtDigest();
  ASSERT_FALSE(digest1.empty());

  ReconcileSummary idle = controller_->reconcileOnce("test", true);
  EXPECT_EQ(idle.revision, first.revision);
  EXPECT_EQ(idle.planned, 0u);

  write("src/web/init.sh", "#!/bin/sh\necho two\n");
  ReconcileSummary changed = settle();
  ASSERT_EQ(changed.error, "");
  EXPECT_NE(changed.revision, first.revision) << "a changed file source was the same revision";
  EXPECT_EQ(changed.succeeded, 1u);
  const std::string digest2 = builtDigest();
  EXPECT_NE(digest2, digest1) << "the Build was not rebuilt";

  // A file source refused: the revision is rejected and the last good one stays in force.
  // (A link inside the tree: the manifest walk refuses one out of it before any load.)
  write("src/web/other.sh", "#!/bin/sh\necho three\n");
  fs::remove(dir_ + "/src/web/init.sh");
  fs::create_symlink("other.sh", dir_ + "/src/web/init.sh");
  ReconcileSummary refused = controller_->reconcileOnce("test", true);
  EXPECT_TRUE(refused.revisionRejected);
  EXPECT_EQ(refused.revision, changed.revision);
  EXPECT_EQ(builtDigest(), digest2);
}

// Content that comes back (a revert; here the directory put back as it was) takes the artifacts
// it was applied with, though an input moved since: the loop applies the kept key (no build, so
// nothing is in progress); while the content stays, the moved input changes nothing.
TEST_F(LoopFileSourcesTest, ContentThatComesBackTakesItsArtifactsThoughAnInputMoved) {
  std::string manifest = kManifest;
  manifest.replace(manifest.find("busybox: false"), 14, "busybox: true");
  write("src/build.yaml", manifest);
  ReconcileSummary first = settle();
  ASSERT_EQ(first.error, "");
  const std::string digest1 = builtDigest();
  ASSERT_FALSE(digest1.empty());

  write("src/web/init.sh", "#!/bin/sh\necho two\n");
  ASSERT_EQ(settle().error, "");
  const std::string digest2 = builtDigest();
  ASSERT_NE(digest2, digest1);

  write("busybox", "a newer busybox");
  ReconcileSummary steady = controller_->reconcileOnce("test", true);
  EXPECT_EQ(steady.planned, 0u) << "the content keeps its key";
  EXPECT_EQ(builtDigest(), digest2);

  write("src/web/init.sh", "#!/bin/sh\necho one\n");
  ReconcileSummary back = controller_->reconcileOnce("test", true);
  EXPECT_EQ(back.revision, first.revision);
  EXPECT_EQ(back.succeeded, 1u);
  EXPECT_EQ(back.inProgress, 0u) << "a kept key is not built";
  EXPECT_EQ(builtDigest(), digest1);
}

// `hyperctl diff` through hyperd: hyperd cannot read the client's files, so the client sends what
// its load read (RecordingTree, as hyperctl's diff does) with the manifests, and hyperd plans
// with those bytes.
TEST_F(LoopFileSourcesTest, ADiffSentToHyperdCarriesTheFileSourcesTheClientRead) {
  ASSERT_EQ(settle().succeeded, 1u);
  ApiOptions options;
  options.port = 0;
  options.token = "t0ken";
  ApiServer api(*controller_, *events_, metrics_, options);
  ASSERT_TRUE(api.start().isOk());
  ApiClient client({"http://127.0.0.1:" + std::to_string(api.port()), "t0ken"});

  write("next/build.yaml", kManifest);
  write("next/web/init.sh", "#!/bin/sh\necho next\n");
  auto files = readManifestFiles({dir_ + "/next"});
  ASSERT_TRUE(files.isOk()) << files.status().message();
  Json body = {{"files", Json::array()}, {"prune", false}};
  for (const auto& f : *files) {
    body["files"].push_back({{"path", f.path}, {"content", f.content}});
  }
  auto kinds = providers::builtinKinds();
  ASSERT_TRUE(kinds.isOk());
  DirectoryTree disk("");
  RecordingTree recording(disk);
  ManifestLoader loader((*kinds)->schemas(), LoaderLimits{}, (*kinds)->fileSources());
  ASSERT_FALSE(loader.load(*files, &recording).diagnostics.hasErrors());

  auto without = client.post("/v1/plan", 30, body);
  ASSERT_TRUE(without.isOk()) << without.status().message();
  EXPECT_FALSE(without->value("ok", true));
  EXPECT_NE(without->value("diagnostics", "").find("\"web/init.sh\" not found"), std::string::npos)
      << without->dump(1);

  for (const auto& [path, read] : recording.reads()) {
    body["sources"].push_back(sourceReadToJson(path, read));
  }
  auto with = client.post("/v1/plan", 30, body);
  ASSERT_TRUE(with.isOk()) << with.status().message();
  ASSERT_TRUE(with->value("ok", false)) << with->dump(1);
  const Json& actions = (*with)["plan"]["actions"];
  ASSERT_EQ(actions.size(), 1u) << with->dump(1);
  EXPECT_EQ(actions[0].value("reason", ""), "an input changed (inputs.source:web/init.sh)")
      << actions.dump(1);

  body["sources"] = Json::array({{{"path", "x"}, {"base64", "%%"}}});
  auto bad = client.post("/v1/plan", 30, body);
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("sources[0]"), std::string::npos) << bad.status().message();
  api.stop();
}

// A diff whose file sources make a plan request over hyperd's limit is planned by hyperctl itself
// (saying so) rather than sent to be refused with a 413; a small one goes to hyperd.
TEST_F(LoopFileSourcesTest, ADiffTooBigForHyperdIsPlannedLocally) {
  ASSERT_EQ(settle().succeeded, 1u);
  ApiOptions options;
  options.port = 0;
  options.token = "t0ken";
  ApiServer api(*controller_, *events_, metrics_, options);
  ASSERT_TRUE(api.start().isOk());
  write("token", "t0ken\n");
  fs::permissions(dir_ + "/token", fs::perms::owner_read | fs::perms::owner_write);
  ctl::RemoteOptions remote;
  remote.server = "http://127.0.0.1:" + std::to_string(api.port());
  remote.tokenFile = dir_ + "/token";
  remote.output = "json";

  write("next/build.yaml", kManifest);
  auto files = readManifestFiles({dir_ + "/next"});
  ASSERT_TRUE(files.isOk()) << files.status().message();
  const std::string init = dir_ + "/next/web/init.sh";
  auto sourcesOf = [&init](size_t bytes) {
    return [&init, bytes] {
      SourceTree::File f;
      f.bytes = std::string(bytes, 'x');
      return std::map<std::string, SourceTree::File>{{init, f}};
    };
  };
  std::optional<int> small = ctl::runRemoteDiff(remote, *files, sourcesOf(100), false);
  ASSERT_TRUE(small.has_value()) << "hyperd did not plan a small diff";
  EXPECT_EQ(*small, 2) << "hyperd's plan: the init changed";
  // 25 MiB of file source is over 33 MiB in base64.
  std::optional<int> big = ctl::runRemoteDiff(remote, *files, sourcesOf(25u << 20), false);
  EXPECT_FALSE(big.has_value()) << "sent to hyperd, answered " << big.value_or(-1);
  api.stop();
}

}  // namespace
}  // namespace hyper
