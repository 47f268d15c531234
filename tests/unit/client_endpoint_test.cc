// hyperd's endpoint and token files in the state dir: a symlink planted in their place is
// refused, never followed (reading) nor written through (writing).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "controller/client.h"

namespace hyper::controller {
namespace {

namespace fs = std::filesystem;

class ClientEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hyper-endpoint-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    target_ = dir_ + "/precious";
    std::ofstream(target_) << "keep me\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string read(const std::string& path) const {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_, target_;
};

TEST_F(ClientEndpointTest, WritingReplacesAPlantedSymlinkAndLeavesItsTarget) {
  ASSERT_EQ(::symlink(target_.c_str(), (dir_ + "/" + kTokenFile).c_str()), 0);
  ASSERT_EQ(::symlink(target_.c_str(), (dir_ + "/" + kEndpointFile + ".tmp").c_str()), 0);
  Status s = writeEndpoint(dir_, "http://127.0.0.1:7400", "t0ken");
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(read(target_), "keep me\n") << "the token was written through a symlink";
  struct stat st {};
  ASSERT_EQ(::lstat((dir_ + "/" + kTokenFile).c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(read(dir_ + "/" + kTokenFile), "t0ken\n");
}

TEST_F(ClientEndpointTest, ASymlinkedTokenIsRefused) {
  ASSERT_TRUE(writeEndpoint(dir_, "http://127.0.0.1:7400", "t0ken").isOk());
  const std::string token = dir_ + "/" + kTokenFile;
  // Near miss first: the regular file is read.
  auto ok = discoverEndpoint(dir_, "http://127.0.0.1:7400", "");
  ASSERT_TRUE(ok.isOk()) << ok.status().message();
  ASSERT_TRUE(ok->has_value());
  EXPECT_EQ((*ok)->token, "t0ken");

  ASSERT_EQ(::unlink(token.c_str()), 0);
  ASSERT_EQ(::symlink(target_.c_str(), token.c_str()), 0);
  auto refused = discoverEndpoint(dir_, "http://127.0.0.1:7400", "");
  ASSERT_FALSE(refused.isOk()) << "a symlinked token was followed";
  EXPECT_NE(refused.status().message().find("read " + token +
                                            ": is a symbolic link; refused (expected a regular "
                                            "file)"),
            std::string::npos)
      << refused.status().message();
}

TEST_F(ClientEndpointTest, ASymlinkedEndpointIsRefused) {
  ASSERT_EQ(::symlink(target_.c_str(), (dir_ + "/" + kEndpointFile).c_str()), 0);
  auto refused = discoverEndpoint(dir_, "", "");
  ASSERT_FALSE(refused.isOk()) << "a symlinked endpoint file was followed";
  EXPECT_NE(refused.status().message().find(kEndpointFile + std::string(": is a symbolic link")),
            std::string::npos)
      << refused.status().message();
}

}  // namespace
}  // namespace hyper::controller
