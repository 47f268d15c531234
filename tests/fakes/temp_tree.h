#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace hyper::test {

// A test fixture with a fresh temporary directory (root_, removed after the test) and write()
// to put files in it: the manifests, sources and trees the source and loader tests read.
class TempTreeTest : public ::testing::Test {
 protected:
  explicit TempTreeTest(std::string prefix = "hyper-tree") : prefix_(std::move(prefix)) {}
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix_ + "-XXXXXX")).string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  // Writes `content` to root_/rel, making the directories on the way.
  void write(const std::string& rel, const std::string& content) {
    std::filesystem::path p = std::filesystem::path(root_) / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
  }

  std::string root_;

 private:
  std::string prefix_;
};

}  // namespace hyper::test
