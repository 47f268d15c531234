// The content-addressed artifact store (store/artifact_store.h).

#include "store/artifact_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

namespace hyper::store {
namespace {

class ArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hyper-store-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(ArtifactStoreTest, PutNamesBytesByTheirDigestReadOnly) {
  ArtifactStore store(dir_ + "/store");
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/store")) << "nothing made before it is used";
  auto d = store.put("hello\n");
  ASSERT_TRUE(d.isOk()) << d.status().message();
  // sha256("hello\n")
  EXPECT_EQ(*d, "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
  EXPECT_TRUE(store.has(*d));
  struct stat st {};
  ASSERT_EQ(::stat(store.pathOf(*d).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  auto again = store.put("hello\n");
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(*again, *d);
  size_t files = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir_ + "/store/sha256")) {
    ++files;
  }
  EXPECT_EQ(files, 1u);
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/store/tmp")) << "no temporary file left";
  auto back = store.read(*d, 1024);
  ASSERT_TRUE(back.isOk()) << back.status().message();
  EXPECT_EQ(*back, "hello\n");
}

TEST_F(ArtifactStoreTest, DigestsAreCheckedAndAChangedArtifactIsReported) {
  ArtifactStore store(dir_);
  for (const char* bad :
       {"", "sha256:", "sha256:XYZ", "md5:5891b5b522d5df086d0ff0b110fbd9d2",
        "sha256:../../etc/passwd",
        "sha256:5891B5B522D5DF086D0FF0B110FBD9D21BB4FC7163AF34D08286A2E846F6BE03"}) {
    EXPECT_FALSE(isDigest(bad)) << bad;
    EXPECT_EQ(store.pathOf(bad), "") << bad;
    EXPECT_FALSE(store.has(bad)) << bad;
    EXPECT_FALSE(store.read(bad, 10).isOk()) << bad;
  }
  auto d = store.put("original");
  ASSERT_TRUE(d.isOk());
  std::string path = store.pathOf(*d);
  ::chmod(path.c_str(), 0644);
  { std::ofstream(path) << "tampered"; }
  auto r = store.read(*d, 1024);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("changed on disk"), std::string::npos)
      << r.status().message();
  EXPECT_FALSE(store.read(*d, 3).isOk()) << "over the limit";
}

TEST_F(ArtifactStoreTest, AKeyIsAHitOnlyWhileEveryArtifactIsThere) {
  ArtifactStore store(dir_);
  const std::string key(64, 'a');
  EXPECT_FALSE(store.lookupKey(key).has_value());
  auto a = store.put("one");
  auto b = store.put("two");
  ASSERT_TRUE(a.isOk() && b.isOk());
  nlohmann::json record = {{"artifacts", {{"x", {{"digest", *a}}}, {"y", {{"digest", *b}}}}}};
  ASSERT_TRUE(store.recordKey(key, record).isOk());
  auto hit = store.lookupKey(key);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ((*hit)["artifacts"]["y"]["digest"], *b);
  std::filesystem::remove(store.pathOf(*b));
  EXPECT_FALSE(store.lookupKey(key).has_value()) << "an artifact was removed: build again";
  EXPECT_FALSE(store.recordKey("../x", record).isOk());
  EXPECT_FALSE(store.lookupKey("../x").has_value());
}

TEST_F(ArtifactStoreTest, GarbageCollectionRemovesWhatIsNotKeptAndItsRecords) {
  ArtifactStore store(dir_);
  auto kept = store.put("kept");
  auto dropped = store.put("dropped");
  ASSERT_TRUE(kept.isOk() && dropped.isOk());
  const std::string keptKey(64, '1');
  const std::string droppedKey(64, '2');
  ASSERT_TRUE(store.recordKey(keptKey, {{"artifacts", {{"x", {{"digest", *kept}}}}}}).isOk());
  ASSERT_TRUE(store.recordKey(droppedKey, {{"artifacts", {{"x", {{"digest", *dropped}}}}}}).isOk());
  { std::ofstream(dir_ + "/tmp/123.0.half-written") << "partial"; }
  { std::ofstream(dir_ + "/sha256/README") << "not an artifact"; }

  auto dry = store.collectGarbage({*kept}, /*dryRun=*/true);
  ASSERT_TRUE(dry.isOk()) << dry.status().message();
  EXPECT_EQ(dry->removed, (std::vector<std::string>{*dropped}));
  EXPECT_EQ(dry->recordsRemoved, 1u);
  EXPECT_TRUE(store.has(*dropped)) << "a dry run removes nothing";
  EXPECT_TRUE(store.lookupKey(droppedKey).has_value());

  auto real = store.collectGarbage({*kept});
  ASSERT_TRUE(real.isOk()) << real.status().message();
  EXPECT_EQ(real->kept, 1u);
  EXPECT_EQ(real->removed, (std::vector<std::string>{*dropped}));
  EXPECT_EQ(real->removedBytes, 7u);
  EXPECT_EQ(real->recordsRemoved, 1u);
  EXPECT_TRUE(store.has(*kept));
  EXPECT_FALSE(store.has(*dropped));
  EXPECT_TRUE(store.lookupKey(keptKey).has_value());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/keys/" + droppedKey + ".json"));
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/tmp"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/sha256/README")) << "not the store's to remove";

  ArtifactStore never(dir_ + "/never-used");
  auto empty = never.collectGarbage({});
  ASSERT_TRUE(empty.isOk());
  EXPECT_TRUE(empty->removed.empty());
}

TEST_F(ArtifactStoreTest, AdoptMovesAScratchFileIntoPlaceByItsDigest) {
  ArtifactStore store(dir_ + "/store");
  auto scratch = store.makeScratchDir("build");
  ASSERT_TRUE(scratch.isOk()) << scratch.status().message();
  EXPECT_EQ(scratch->rfind(dir_ + "/store/tmp/build.", 0), 0u) << *scratch;
  // Larger than one read block, so the digest is computed over several.
  std::string bytes(3u << 20, 'x');
  bytes += "end";
  {
    std::ofstream out(*scratch + "/big");
    out << bytes;
  }
  auto fileDigest = digestOfFile(*scratch + "/big");
  ASSERT_TRUE(fileDigest.isOk());
  EXPECT_EQ(*fileDigest, digestOf(bytes));
  auto d = store.adopt(*scratch + "/big");
  ASSERT_TRUE(d.isOk()) << d.status().message();
  EXPECT_EQ(*d, digestOf(bytes));
  EXPECT_FALSE(std::filesystem::exists(*scratch + "/big")) << "consumed";
  struct stat st {};
  ASSERT_EQ(::stat(store.pathOf(*d).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  auto back = store.read(*d, 8u << 20);
  ASSERT_TRUE(back.isOk());
  EXPECT_EQ(*back, bytes);

  // The same bytes again: nothing new, and the scratch copy is removed.
  {
    std::ofstream out(*scratch + "/again");
    out << bytes;
  }
  auto again = store.adopt(*scratch + "/again");
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(*again, *d);
  EXPECT_FALSE(std::filesystem::exists(*scratch + "/again"));

  // Not a regular file: refused.
  std::filesystem::create_directory(*scratch + "/dir");
  auto dir = store.adopt(*scratch + "/dir");
  ASSERT_FALSE(dir.isOk());
  EXPECT_NE(dir.status().message().find("not a regular file"), std::string::npos)
      << dir.status().message();
  std::filesystem::create_symlink(store.pathOf(*d), *scratch + "/link");
  EXPECT_FALSE(store.adopt(*scratch + "/link").isOk()) << "a symlink is not followed";

  // gc removes a scratch directory a crash left behind, with what it holds.
  ASSERT_TRUE(store.collectGarbage({*d}).isOk());
  EXPECT_FALSE(std::filesystem::exists(*scratch));
  EXPECT_TRUE(store.has(*d));
}

}  // namespace
}  // namespace hyper::store
